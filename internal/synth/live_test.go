package synth

import (
	"errors"
	"math"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lightdht/lightdht/krpc"
)

// TestLiveLikeRoles: the preset builds, every entry is found at its
// address although many share an IP, and each role's share is near what
// the Config asks.
func TestLiveLikeRoles(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := LiveLike(20000, 3)
		net := newNet(t, cfg)
		tr := net.Truth()
		perIP := map[[4]byte]int{}
		var answering, silent, rl, rot, poison, sybil, shared int
		malformed := map[string]int{}
		var rtts []time.Duration
		for i, e := range tr.Nodes {
			if j, ok := tr.Index(e.Addr); !ok || j != i {
				t.Fatalf("entry %d at %v: Index gives %d, %v", i, e.Addr, j, ok)
			}
			if e.Bogon {
				continue
			}
			perIP[e.Addr.Addr().As4()]++
			if e.Silent {
				silent++
				continue
			}
			answering++
			rtts = append(rtts, e.RTT)
			for _, c := range []struct {
				on bool
				n  *int
			}{{e.RateLimits, &rl}, {e.Rotates, &rot}, {e.Poisons, &poison}, {e.Sybil, &sybil}, {e.SharedIP, &shared}} {
				if c.on {
					*c.n++
				}
			}
			if e.Malformed != "" {
				malformed[e.Malformed]++
			}
		}
		near := func(name string, got int, of int, want float64) {
			t.Helper()
			share := float64(got) / float64(of)
			if math.Abs(share-want) > 0.25*want+0.005 {
				t.Errorf("%s: %d of %d (%.3f), want about %.3f", name, got, of, share, want)
			}
		}
		near("silent", silent, cfg.N, cfg.SilentShare)
		near("rate-limiting", rl, answering, 1)
		near("rotating", rot, answering, cfg.RotateShare)
		near("poisoning", poison, answering, cfg.PoisonShare)
		for _, k := range []string{"truncated", "port0", "zeroid"} {
			near("malformed "+k, malformed[k], answering, cfg.MalformedShare/3)
		}
		if want := cfg.SybilHosts * cfg.SybilsPerHost; sybil != want {
			t.Errorf("%d sybils answer, want all %d", sybil, want)
		}
		most := 0
		for _, c := range perIP {
			most = max(most, c)
		}
		if most != cfg.SybilsPerHost {
			t.Errorf("the busiest IP has %d nodes, want SybilsPerHost %d", most, cfg.SybilsPerHost)
		}
		if shared == 0 {
			t.Error("no node behind a shared IP")
		}
		slices.Sort(rtts)
		med, p999 := rtts[len(rtts)/2], rtts[len(rtts)*999/1000]
		t.Logf("%d answering; RTT median %v, 99.9th percentile %v, max %v; busiest IP %d nodes", answering, med, p999, rtts[len(rtts)-1], most)
		if base := 2 * cfg.Latency; med < base+80*time.Millisecond || med > base+120*time.Millisecond {
			t.Errorf("median RTT %v, want about %v", med, base+cfg.RTTMedian)
		}
		if p999 < 500*time.Millisecond || rtts[len(rtts)-1] > 2*cfg.Latency+cfg.RTTMax {
			t.Errorf("RTT tail: 99.9th percentile %v, max %v; want a heavy tail capped at RTTMax", p999, rtts[len(rtts)-1])
		}
	})
}

// firstAnswering returns the index of the first answering entry that
// keep accepts.
func firstAnswering(t *testing.T, tr Truth, keep func(NodeTruth) bool) int {
	t.Helper()
	for i, e := range tr.Nodes {
		if e.Answering && keep(e) {
			return i
		}
	}
	t.Fatal("no such node")
	return -1
}

// TestRateLimit: a source that sends a node 50 queries within 10 s is
// ignored until 5 minutes after the 50th, as libtorrent's dos_blocker
// does; one query every 2 s is never blocked.
func TestRateLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net := newNet(t, Config{N: 50, Seed: 1, RateLimitShare: 1})
		tr := net.Truth()
		c := newClient(t, net)
		c.wait = 10 * time.Millisecond
		to := tr.Nodes[firstAnswering(t, tr, func(NodeTruth) bool { return true })].Addr
		answered := 0
		for range 60 {
			if c.query(to, krpc.MethodPing, krpc.Args{}) != nil {
				answered++
			}
		}
		st := net.Stats()
		if answered != 49 || st.RateBans != 1 || st.RateLimited != 11 {
			t.Fatalf("60 fast pings: %d answered, %d bans, %d ignored; want 49, 1, 11", answered, st.RateBans, st.RateLimited)
		}
		time.Sleep(5*time.Minute - time.Second)
		if c.query(to, krpc.MethodPing, krpc.Args{}) != nil {
			t.Fatal("answered inside the 5-minute block")
		}
		time.Sleep(2 * time.Second)
		if c.query(to, krpc.MethodPing, krpc.Args{}) == nil {
			t.Fatal("still blocked after 5 minutes")
		}
		// Polite: one query every 2 s for 10 minutes, to another node.
		other := tr.Nodes[firstAnswering(t, tr, func(e NodeTruth) bool { return e.Addr != to })].Addr
		before := net.Stats().RateBans
		for range 300 {
			if c.query(other, krpc.MethodPing, krpc.Args{}) == nil {
				t.Fatal("a polite source was ignored")
			}
			time.Sleep(2 * time.Second)
		}
		if b := net.Stats().RateBans; b != before {
			t.Errorf("%d bans of a polite source", b-before)
		}
	})
}

// TestRTT: a node answers after its own RTT, as Truth states it.
func TestRTT(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net := newNet(t, Config{N: 200, Seed: 2, Latency: 10 * time.Millisecond, RTTMedian: 200 * time.Millisecond, RTTSigma: 1, RTTMax: 3 * time.Second})
		tr := net.Truth()
		c := newClient(t, net)
		c.wait = 4 * time.Second
		distinct := map[time.Duration]bool{}
		for i, e := range tr.Nodes[:50] {
			start := time.Now()
			if c.query(e.Addr, krpc.MethodPing, krpc.Args{}) == nil {
				t.Fatalf("node %d did not answer", i)
			}
			if got := time.Since(start); got != e.RTT {
				t.Errorf("node %d answered after %v, Truth says %v", i, got, e.RTT)
			}
			distinct[e.RTT] = true
		}
		if len(distinct) < 45 {
			t.Errorf("%d distinct RTTs among 50 nodes", len(distinct))
		}
	})
}

// TestPoison: a poisoner lists K contacts next to any target, at
// addresses where no node lives.
func TestPoison(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net := newNet(t, Config{N: 2000, Seed: 4, PublicIPs: true, PoisonShare: 0.05})
		tr := net.Truth()
		c := newClient(t, net)
		p := firstAnswering(t, tr, func(e NodeTruth) bool { return e.Poisons })
		for _, target := range []krpc.ID{krpc.RandomID(), krpc.RandomID()} {
			r := c.query(tr.Nodes[p].Addr, krpc.MethodFindNode, krpc.Args{Target: target})
			if r == nil || len(r.R.Nodes) != DefaultK {
				t.Fatalf("poisoner's reply: %+v", r)
			}
			for _, ni := range r.R.Nodes {
				if cpl := ni.ID.CommonPrefixLen(target); cpl < 144 {
					t.Errorf("fake contact %x shares %d bits with the target", ni.ID, cpl)
				}
				if _, ok := tr.Index(ni.Addr); ok || !IsPublic(ni.Addr.Addr()) {
					t.Errorf("fake contact at %v: an entry's address, or not public", ni.Addr)
				}
			}
		}
		if st := net.Stats(); st.FakeContacts != 2*DefaultK {
			t.Errorf("FakeContacts %d, want %d", st.FakeContacts, 2*DefaultK)
		}
	})
}

// TestMalformed: each kind of malformed reply carries its bad entry after
// the K good ones.
func TestMalformed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net := newNet(t, Config{N: 3000, Seed: 5, PublicIPs: true, MalformedShare: 0.2})
		tr := net.Truth()
		c := newClient(t, net)
		for _, kind := range []string{"truncated", "port0", "zeroid"} {
			i := firstAnswering(t, tr, func(e NodeTruth) bool { return e.Malformed == kind })
			m := krpc.Msg{T: []byte("xy"), Y: krpc.KindQuery, Q: krpc.MethodFindNode, A: krpc.Args{ID: c.id, Target: krpc.RandomID()}}
			b := c.raw(tr.Nodes[i].Addr, mustMarshal(t, &m))
			var r krpc.Msg
			err := krpc.Unmarshal(b, &r)
			var de *krpc.DecodeError
			switch kind {
			case "truncated":
				if !errors.As(err, &de) || de.Field != "r.nodes" {
					t.Errorf("truncated: decode error %v, want one in r.nodes", err)
				}
			case "port0", "zeroid":
				if err != nil || len(r.R.Nodes) != DefaultK+1 {
					t.Fatalf("%s: %v, %d nodes", kind, err, len(r.R.Nodes))
				}
				bad := r.R.Nodes[DefaultK]
				if kind == "port0" && bad.Addr.Port() != 0 || kind == "zeroid" && !bad.ID.IsZero() {
					t.Errorf("%s: the extra entry is %+v", kind, bad)
				}
			}
		}
		if st := net.Stats(); st.MalformedReplies != 3 {
			t.Errorf("MalformedReplies %d, want 3", st.MalformedReplies)
		}
	})
}

// TestRotate: a rotating node answers with a new ID each period while
// tables keep its first one.
func TestRotate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net := newNet(t, Config{N: 500, Seed: 6, RotateShare: 0.2, RotatePeriod: time.Minute})
		tr := net.Truth()
		i := firstAnswering(t, tr, func(e NodeTruth) bool { return e.Rotates })
		c := newClient(t, net)
		var ids []krpc.ID
		for range 3 {
			r := c.query(tr.Nodes[i].Addr, krpc.MethodPing, krpc.Args{})
			if r == nil {
				t.Fatal("no answer")
			}
			ids = append(ids, r.R.ID)
			time.Sleep(time.Minute)
		}
		if ids[0] != tr.Nodes[i].ListedID || ids[1] == ids[0] || ids[2] == ids[1] {
			t.Errorf("IDs over three periods %x, listed %x", ids, tr.Nodes[i].ListedID)
		}
		if now := net.Truth().Nodes[i]; now.ListedID != tr.Nodes[i].ListedID || now.ID == now.ListedID {
			t.Errorf("Truth after rotation: ID %x, ListedID %x", now.ID, now.ListedID)
		}
	})
}

// TestOnlineThroughout: with churn, the nodes online through an interval
// are those churned out in none of its epochs.
func TestOnlineThroughout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net := newNet(t, Config{N: 5000, Seed: 7, SilentShare: 0.2, ChurnShare: 0.1, ChurnPeriod: time.Minute})
		start := net.Start()
		one, two := 0, 0
		for i := range net.Len() {
			if net.OnlineThroughout(i, start, start.Add(30*time.Second)) {
				one++
			}
			if net.OnlineThroughout(i, start, start.Add(90*time.Second)) {
				two++
			}
		}
		// 80% answer; 90% of them are online in one epoch, 81% in two.
		if math.Abs(float64(one)/5000-0.72) > 0.03 || math.Abs(float64(two)/5000-0.648) > 0.03 {
			t.Errorf("online through one epoch %d, two epochs %d of 5000", one, two)
		}
	})
}
