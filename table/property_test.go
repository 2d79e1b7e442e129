package table

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/lightdht/lightdht/krpc"
)

// TestProperties runs a few thousand random operations against each kind
// and configuration and checks every invariant after each operation.
func TestProperties(t *testing.T) {
	configs := []struct {
		name string
		cfg  Config
	}{
		{"defaults", Config{}},
		{"K2-unlimitedIPs-1failure", Config{K: 2, IPsPerBucket: -1, MaxFailures: 1}},
		{"K4-2IPs", Config{K: 4, IPsPerBucket: 2, QuestionableAfter: 5 * time.Minute, RefreshAfter: 10 * time.Minute}},
		{"K2-extended-unlimitedIPs", Config{K: 2, Extended: true, IPsPerBucket: -1}},
	}
	ops, seeds := uint64(3000), uint64(3)
	if testing.Short() {
		ops, seeds = 800, 1
	}
	for _, kind := range allKinds {
		for ci, c := range configs {
			for seed := uint64(1); seed <= seeds; seed++ {
				t.Run(fmt.Sprintf("%v/%s/seed%d", kind, c.name, seed), func(t *testing.T) {
					t.Parallel()
					runProperty(t, kind, c.cfg, seed*100+uint64(ci), int(ops))
				})
			}
		}
	}
}

func runProperty(t *testing.T, kind Kind, cfg Config, seed uint64, ops int) {
	r := rand.New(rand.NewPCG(seed, uint64(kind)))
	clock := newClock()
	cfg.Self = randID(r)
	cfg.Now = clock.Now
	tb := mustNew(t, kind, cfg)

	// A pool of IDs at all distances from Self, skewed toward near ones so
	// the k-bucket table splits deeply, plus the two forbidden IDs. Each ID
	// has a home address; addresses share IPs, to hit the IP limit.
	type member struct {
		id   krpc.ID
		home netip.AddrPort
	}
	var pool []member
	for i := range 200 {
		cpl := r.IntN(12)
		if r.IntN(4) == 0 {
			cpl = r.IntN(numBits)
		}
		pool = append(pool, member{idAt(r, cfg.Self, cpl), addr4(i % 80)})
	}
	pool = append(pool, member{cfg.Self, addr4(1)}, member{krpc.ID{}, addr4(2)})
	pick := func() member {
		m := pool[r.IntN(len(pool))]
		if r.IntN(10) == 0 {
			m.home = addr4(r.IntN(150)) // moved or spoofed
		}
		return m
	}
	events := []Event{Reported, Queried, Replied}
	for op := range ops {
		var desc string
		switch x := r.IntN(100); {
		case x < 55:
			m := pick()
			ev := events[r.IntN(len(events))]
			res := tb.Update(krpc.NodeInfo{ID: m.id, Addr: m.home}, ev)
			desc = fmt.Sprintf("Update(%v@%v, %v) = %v %v", m.id, m.home, ev, res.Outcome, res.Reason)
			checkUpdateResult(t, tb, cfg, m.id, m.home, ev, res)
			// Play the caller: answer some pings.
			for _, e := range res.Ping {
				switch r.IntN(3) {
				case 0:
					tb.Update(e.NodeInfo, Replied)
				case 1:
					tb.Failed(e.NodeInfo)
				}
			}
		case x < 75:
			m := pick()
			if e, ok := tb.Get(m.id); ok && r.IntN(2) == 0 {
				m.home = e.Addr
			}
			tb.Failed(krpc.NodeInfo{ID: m.id, Addr: m.home})
			desc = fmt.Sprintf("Failed(%v@%v)", m.id, m.home)
		case x < 82:
			m := pick()
			_, had := tb.Get(m.id)
			if got := tb.Remove(m.id); got != had {
				t.Fatalf("op %d: Remove(%v) = %v, Get said %v", op, m.id, got, had)
			}
			if _, ok := tb.Get(m.id); ok {
				t.Fatalf("op %d: %v still present after Remove", op, m.id)
			}
			desc = fmt.Sprintf("Remove(%v)", m.id)
		case x < 94:
			d := time.Duration(r.IntN(20*60)) * time.Second
			clock.Step(d)
			desc = fmt.Sprintf("Step(%v)", d)
		case x < 95:
			// A new own ID: random, or one the table may hold.
			self := randID(r)
			if r.IntN(2) == 0 {
				self = pick().id
			}
			before := tb.Len()
			tb.SetSelf(self)
			if !self.IsZero() {
				cfg.Self = self
			}
			if _, ok := tb.Get(cfg.Self); ok {
				t.Fatalf("op %d: SetSelf(%v) kept an entry with the new ID", op, self)
			}
			if _, isK := tb.(*kbucketTable); !isK && tb.Len() < before-1 {
				t.Fatalf("op %d: SetSelf(%v) dropped %d research entries", op, self, before-tb.Len())
			}
			desc = fmt.Sprintf("SetSelf(%v)", self)
		default:
			targets := tb.Refresh()
			checkRefreshTargets(t, tb, cfg, targets)
			desc = fmt.Sprintf("Refresh() = %d targets", len(targets))
		}
		checkInvariantsOp(t, tb, cfg, r, op, desc)
	}
}

func checkInvariantsOp(t *testing.T, tb Table, cfg Config, r *rand.Rand, op int, desc string) {
	t.Helper()
	defer func() {
		if t.Failed() {
			t.Logf("after op %d: %s", op, desc)
		}
	}()
	checkInvariants(t, tb, cfg, r)
}

// checkUpdateResult checks that the outcome of Update agrees with the table.
func checkUpdateResult(t *testing.T, tb Table, cfg Config, id krpc.ID, addr netip.AddrPort, ev Event, res UpdateResult) {
	t.Helper()
	e, ok := tb.Get(id)
	switch res.Outcome {
	case Added, Updated:
		if !ok {
			t.Fatalf("Update(%v, %v) = %v but Get finds nothing", id, ev, res.Outcome)
		}
		if e.Addr != addr {
			t.Fatalf("Update(%v@%v, %v) = %v but entry is at %v", id, addr, ev, res.Outcome, e.Addr)
		}
		if res.Reason != ReasonNone || res.Ping != nil {
			t.Fatalf("Update = %+v", res)
		}
	case NeedPing:
		if _, isK := tb.(*kbucketTable); !isK {
			t.Fatalf("research table returned NeedPing")
		}
		if len(res.Ping) == 0 || ok {
			t.Fatalf("NeedPing with %d entries; candidate in table: %v", len(res.Ping), ok)
		}
		c := cfg.withDefaults()
		for _, p := range res.Ping {
			if p.state(c.Now(), &c) != Questionable {
				t.Fatalf("NeedPing lists %v entry %v", p.state(c.Now(), &c), p.ID)
			}
		}
	case Rejected:
		if res.Reason == ReasonNone {
			t.Fatalf("Rejected without reason")
		}
		if (id.IsZero() || id == cfg.Self) && ok {
			t.Fatalf("forbidden ID %v stored", id)
		}
		if _, isK := tb.(*kbucketTable); !isK && !id.IsZero() && id != cfg.Self {
			t.Fatalf("research table rejected %v: %v", id, res.Reason)
		}
	default:
		t.Fatalf("Update returned outcome %v", res.Outcome)
	}
}

// checkRefreshTargets checks that the targets fall in distinct buckets.
func checkRefreshTargets(t *testing.T, tb Table, cfg Config, targets []krpc.ID) {
	t.Helper()
	x, ok := tb.(*kbucketTable)
	if !ok {
		return
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	seen := map[int]bool{}
	for _, target := range targets {
		i := x.index(target)
		if seen[i] {
			t.Fatalf("two Refresh targets in bucket %d", i)
		}
		seen[i] = true
	}
}
