package table

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/lightdht/lightdht/krpc"
)

// kbucketFixture is a k-bucket table whose bucket 0 (the half of the ID
// space away from Self) is full of K good nodes, added one second apart
// (nodes[0] oldest). Nothing else is in the table.
type kbucketFixture struct {
	tb    Table
	clock *fakeClock
	nodes []krpc.NodeInfo
	r     *rand.Rand
	next  int // next unused address number
}

func newFixture(t *testing.T, cfg Config) *kbucketFixture {
	t.Helper()
	f := &kbucketFixture{clock: newClock(), r: rand.New(rand.NewPCG(7, 7))}
	cfg.Self, cfg.Now = testSelf, f.clock.Now
	f.tb = mustNew(t, KBucket, cfg)
	k := cfg.withDefaults().K
	for range k {
		n := f.far()
		if res := f.tb.Update(n, Replied); res.Outcome != Added {
			t.Fatalf("filling: Update = %+v", res)
		}
		f.nodes = append(f.nodes, n)
		f.clock.Step(time.Second)
	}
	return f
}

// far returns a new node for bucket 0, with its own IP.
func (f *kbucketFixture) far() krpc.NodeInfo {
	f.next++
	return node(idAt(f.r, testSelf, 0), f.next)
}

func (f *kbucketFixture) buckets() int {
	x := f.tb.(*kbucketTable)
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.buckets)
}

func wantOutcome(t *testing.T, res UpdateResult, o Outcome, r Reason) {
	t.Helper()
	if res.Outcome != o || res.Reason != r {
		t.Fatalf("Update = %v (%v), want %v (%v)", res.Outcome, res.Reason, o, r)
	}
}

func wantPresent(t *testing.T, tb Table, id krpc.ID, present bool) {
	t.Helper()
	if _, ok := tb.Get(id); ok != present {
		t.Fatalf("Get(%v) found = %v, want %v", id, ok, present)
	}
}

func TestKBucketFullOfGoodRejects(t *testing.T) {
	f := newFixture(t, Config{})
	for _, ev := range []Event{Reported, Queried, Replied} {
		n := f.far()
		wantOutcome(t, f.tb.Update(n, ev), Rejected, ReasonFull)
		wantPresent(t, f.tb, n.ID, false)
	}
	if f.tb.Len() != DefaultK {
		t.Fatalf("Len = %d", f.tb.Len())
	}
	// The first rejected node made the own bucket split once; bucket 0 is
	// not the own bucket and never splits.
	if got := f.buckets(); got != 2 {
		t.Fatalf("%d buckets, want 2", got)
	}
}

func TestKBucketFullReplacesBad(t *testing.T) {
	f := newFixture(t, Config{})
	victim := f.nodes[3]
	for range DefaultMaxFailures {
		f.tb.Failed(victim)
	}
	n := f.far()
	wantOutcome(t, f.tb.Update(n, Reported), Added, ReasonNone)
	wantPresent(t, f.tb, victim.ID, false)
	wantPresent(t, f.tb, n.ID, true)
	if f.tb.Len() != DefaultK {
		t.Fatalf("Len = %d", f.tb.Len())
	}
}

func TestKBucketNeedPingThenFailedInsertsCandidate(t *testing.T) {
	f := newFixture(t, Config{})
	f.clock.Step(DefaultQuestionableAfter) // every entry questionable
	for _, n := range f.nodes[4:] {
		f.tb.Update(n, Replied) // nodes 4..7 good again
	}
	cand := f.far()
	res := f.tb.Update(cand, Replied)
	wantOutcome(t, res, NeedPing, ReasonNone)
	if got, want := ids(res.Ping), ids([]Entry{{NodeInfo: f.nodes[0]}, {NodeInfo: f.nodes[1]}, {NodeInfo: f.nodes[2]}, {NodeInfo: f.nodes[3]}}); !slices.Equal(got, want) {
		t.Fatalf("Ping = %v, want the questionable nodes oldest first %v", got, want)
	}
	wantPresent(t, f.tb, cand.ID, false)

	// Asked again while pending: still NeedPing, still not inserted.
	wantOutcome(t, f.tb.Update(cand, Replied), NeedPing, ReasonNone)

	// nodes[1] answers; nodes[0] fails MaxFailures times.
	f.tb.Update(f.nodes[1], Replied)
	for range DefaultMaxFailures {
		wantPresent(t, f.tb, cand.ID, false)
		wantPresent(t, f.tb, f.nodes[0].ID, true)
		f.tb.Failed(f.nodes[0])
	}
	wantPresent(t, f.tb, cand.ID, true)
	wantPresent(t, f.tb, f.nodes[0].ID, false)
	e, _ := f.tb.Get(cand.ID)
	if e.State(f.clock.Now(), Config{}) != Good || e.Addr != cand.Addr {
		t.Fatalf("inserted candidate = %+v", e)
	}
}

func TestKBucketNeedPingAllReplyDropsCandidate(t *testing.T) {
	f := newFixture(t, Config{})
	f.clock.Step(DefaultQuestionableAfter)
	cand := f.far()
	res := f.tb.Update(cand, Queried)
	wantOutcome(t, res, NeedPing, ReasonNone)
	if len(res.Ping) != DefaultK {
		t.Fatalf("Ping lists %d entries, want %d", len(res.Ping), DefaultK)
	}
	for _, e := range res.Ping {
		f.tb.Update(e.NodeInfo, Replied)
	}
	// The candidate is gone: a node turning bad now is not replaced.
	for range DefaultMaxFailures {
		f.tb.Failed(f.nodes[2])
	}
	wantPresent(t, f.tb, cand.ID, false)
	e, ok := f.tb.Get(f.nodes[2].ID)
	if !ok || e.State(f.clock.Now(), Config{}) != Bad {
		t.Fatalf("bad node = %+v, %v; want kept as bad", e, ok)
	}
	if got := f.tb.Closest(f.nodes[2].ID, 100); slices.Contains(ids(got), f.nodes[2].ID) || len(got) != DefaultK-1 {
		t.Fatalf("Closest returned %d entries including the bad one", len(got))
	}
	// The next new node replaces it straight away.
	n := f.far()
	wantOutcome(t, f.tb.Update(n, Reported), Added, ReasonNone)
	wantPresent(t, f.tb, f.nodes[2].ID, false)
}

func TestKBucketRemoveFillsFromPending(t *testing.T) {
	f := newFixture(t, Config{})
	f.clock.Step(DefaultQuestionableAfter)
	older, newer := f.far(), f.far()
	wantOutcome(t, f.tb.Update(older, Reported), NeedPing, ReasonNone)
	f.clock.Step(time.Second)
	wantOutcome(t, f.tb.Update(newer, Reported), NeedPing, ReasonNone)
	if !f.tb.Remove(f.nodes[5].ID) {
		t.Fatal("Remove of an entry returned false")
	}
	if f.tb.Remove(f.nodes[5].ID) {
		t.Fatal("second Remove returned true")
	}
	wantPresent(t, f.tb, newer.ID, true) // most recently seen candidate wins
	wantPresent(t, f.tb, older.ID, false)
	if f.tb.Remove(older.ID) {
		t.Fatal("Remove of a pending candidate returned true")
	}
	// older is no longer a candidate either.
	if !f.tb.Remove(f.nodes[6].ID) {
		t.Fatal("Remove returned false")
	}
	wantPresent(t, f.tb, older.ID, false)
	if f.tb.Len() != DefaultK-1 {
		t.Fatalf("Len = %d", f.tb.Len())
	}
}

func TestKBucketPendingPrefersGoodCandidate(t *testing.T) {
	f := newFixture(t, Config{})
	f.clock.Step(DefaultQuestionableAfter)
	good, heard := f.far(), f.far()
	wantOutcome(t, f.tb.Update(good, Replied), NeedPing, ReasonNone)
	f.clock.Step(time.Second)
	wantOutcome(t, f.tb.Update(heard, Reported), NeedPing, ReasonNone)
	for range DefaultMaxFailures {
		f.tb.Failed(f.nodes[0])
	}
	wantPresent(t, f.tb, good.ID, true)
	wantPresent(t, f.tb, heard.ID, false)
}

func TestKBucketFailedPendingCandidateDropped(t *testing.T) {
	f := newFixture(t, Config{})
	f.clock.Step(DefaultQuestionableAfter)
	cand := f.far()
	wantOutcome(t, f.tb.Update(cand, Reported), NeedPing, ReasonNone)
	for range DefaultMaxFailures {
		f.tb.Failed(cand)
	}
	for range DefaultMaxFailures {
		f.tb.Failed(f.nodes[0])
	}
	wantPresent(t, f.tb, cand.ID, false)
	wantPresent(t, f.tb, f.nodes[0].ID, true) // bad, but nothing to replace it
}

func TestKBucketIPLimit(t *testing.T) {
	sharedIP := netip.MustParseAddr("192.0.2.7")
	tests := []struct {
		name         string
		ipsPerBucket int
		wantAdded    int
	}{
		{"default one per IP", 0, 1},
		{"two per IP", 2, 2},
		{"unlimited", -1, DefaultK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newClock()
			tb := mustNew(t, KBucket, Config{Self: testSelf, Now: clock.Now, IPsPerBucket: tt.ipsPerBucket})
			r := rand.New(rand.NewPCG(1, 1))
			added := 0
			var first krpc.NodeInfo
			for i := range DefaultK {
				n := krpc.NodeInfo{ID: idAt(r, testSelf, 0), Addr: netip.AddrPortFrom(sharedIP, uint16(2000+i))}
				if i == 0 {
					first = n
				}
				res := tb.Update(n, Replied)
				switch res.Outcome {
				case Added:
					added++
				case Rejected:
					if res.Reason != ReasonIPLimit {
						t.Fatalf("rejected for %v", res.Reason)
					}
				default:
					t.Fatalf("Update = %+v", res)
				}
			}
			if added != tt.wantAdded {
				t.Fatalf("added %d nodes sharing an IP, want %d", added, tt.wantAdded)
			}
			if tt.ipsPerBucket < 0 {
				return
			}
			// An IPv4-mapped form of the IP counts as the same IP.
			mapped := krpc.NodeInfo{ID: idAt(r, testSelf, 0), Addr: netip.AddrPortFrom(netip.AddrFrom16(sharedIP.As16()), 9)}
			wantOutcome(t, tb.Update(mapped, Replied), Rejected, ReasonIPLimit)
			// Once an entry with that IP is bad, a newcomer may replace it.
			for range DefaultMaxFailures {
				tb.Failed(first)
			}
			wantOutcome(t, tb.Update(mapped, Replied), Added, ReasonNone)
			wantPresent(t, tb, first.ID, false)
		})
	}
}

func TestKBucketSplitsOnlyOwnBucket(t *testing.T) {
	f := newFixture(t, Config{})
	x := f.tb.(*kbucketTable)
	// Nodes ever nearer to Self: each fills the own bucket and makes it split.
	for cpl := 1; cpl <= 5; cpl++ {
		for range DefaultK {
			f.next++
			wantOutcome(t, f.tb.Update(node(idAt(f.r, testSelf, cpl), f.next), Replied), Added, ReasonNone)
		}
	}
	if got := f.buckets(); got != 6 {
		t.Fatalf("%d buckets, want 6", got)
	}
	for i, b := range x.buckets {
		if len(b.entries) != DefaultK && i < 5 {
			t.Fatalf("bucket %d holds %d entries", i, len(b.entries))
		}
	}
	// Full far buckets do not split.
	for cpl := range 5 {
		f.next++
		wantOutcome(t, f.tb.Update(node(idAt(f.r, testSelf, cpl), f.next), Replied), Rejected, ReasonFull)
	}
	if got := f.buckets(); got != 6 {
		t.Fatalf("%d buckets after rejected far nodes, want 6", got)
	}
	checkInvariants(t, f.tb, Config{Self: testSelf}, f.r)
}

func TestKBucketSplitsAtMostToIDLength(t *testing.T) {
	clock := newClock()
	tb := mustNew(t, KBucket, Config{Self: testSelf, Now: clock.Now, K: 1, IPsPerBucket: -1})
	// With K = 1 every node nearer to Self than all before splits again,
	// down to the single ID sharing 159 bits with Self.
	r := rand.New(rand.NewPCG(3, 3))
	for cpl := range numBits {
		wantOutcome(t, tb.Update(node(idAt(r, testSelf, cpl), cpl), Replied), Added, ReasonNone)
	}
	x := tb.(*kbucketTable)
	if len(x.buckets) != numBits || tb.Len() != numBits {
		t.Fatalf("%d buckets, %d entries; want %d of each", len(x.buckets), tb.Len(), numBits)
	}
	checkInvariants(t, tb, Config{Self: testSelf, K: 1, IPsPerBucket: -1}, r)
	for _, target := range []krpc.ID{testSelf, randID(r)} {
		checkClosest(t, tb, entries(tb), target, numBits, DefaultMaxFailures)
	}
}

func TestKBucketAddressChange(t *testing.T) {
	other := netip.MustParseAddrPort("198.51.100.9:6881")
	tests := []struct {
		name    string
		state   State
		ev      Event
		want    Outcome
		reason  Reason
		moveTo  bool // entry ends at the new address
		newHist bool // and its history restarted
	}{
		{"good/replied", Good, Replied, Rejected, ReasonAddrConflict, false, false},
		{"good/queried", Good, Queried, Rejected, ReasonAddrConflict, false, false},
		{"good/reported", Good, Reported, Rejected, ReasonAddrConflict, false, false},
		{"questionable/reported", Questionable, Reported, Rejected, ReasonAddrConflict, false, false},
		{"questionable/queried", Questionable, Queried, Updated, ReasonNone, true, true},
		{"questionable/replied", Questionable, Replied, Updated, ReasonNone, true, true},
		{"bad/reported", Bad, Reported, Rejected, ReasonAddrConflict, false, false},
		{"bad/queried", Bad, Queried, Updated, ReasonNone, true, true},
		{"bad/replied", Bad, Replied, Updated, ReasonNone, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, Config{})
			victim := f.nodes[0]
			switch tt.state {
			case Questionable:
				f.clock.Step(DefaultQuestionableAfter)
			case Bad:
				for range DefaultMaxFailures {
					f.tb.Failed(victim)
				}
			}
			before, _ := f.tb.Get(victim.ID)
			if got := before.State(f.clock.Now(), Config{}); got != tt.state {
				t.Fatalf("setup: victim is %v, want %v", got, tt.state)
			}
			f.clock.Step(time.Second)
			wantOutcome(t, f.tb.Update(krpc.NodeInfo{ID: victim.ID, Addr: other}, tt.ev), tt.want, tt.reason)
			after, ok := f.tb.Get(victim.ID)
			if !ok {
				t.Fatal("entry vanished")
			}
			if !tt.moveTo {
				if after != before {
					t.Fatalf("entry changed from %+v to %+v", before, after)
				}
				// A failure reported at the spoofed address does not count.
				f.tb.Failed(krpc.NodeInfo{ID: victim.ID, Addr: other})
				if e, _ := f.tb.Get(victim.ID); e.Failures != before.Failures {
					t.Fatalf("Failed at another address counted: %d failures", e.Failures)
				}
				return
			}
			if after.Addr != other || !after.FirstSeen.Equal(f.clock.Now()) || after.Failures != 0 {
				t.Fatalf("moved entry = %+v", after)
			}
			if tt.ev == Queried && !after.LastReply.IsZero() {
				t.Fatalf("moved entry kept the old reply time: %+v", after)
			}
		})
	}
}

func TestKBucketAddressChangeRespectsIPLimit(t *testing.T) {
	f := newFixture(t, Config{})
	f.clock.Step(DefaultQuestionableAfter)
	// Moving nodes[0] onto nodes[1]'s IP would put two entries on one IP.
	taken := netip.AddrPortFrom(f.nodes[1].Addr.Addr(), 1)
	wantOutcome(t, f.tb.Update(krpc.NodeInfo{ID: f.nodes[0].ID, Addr: taken}, Replied), Rejected, ReasonIPLimit)
	// Moving to another port of its own IP is fine.
	own := netip.AddrPortFrom(f.nodes[0].Addr.Addr(), 1)
	wantOutcome(t, f.tb.Update(krpc.NodeInfo{ID: f.nodes[0].ID, Addr: own}, Replied), Updated, ReasonNone)
}

func TestKBucketRefresh(t *testing.T) {
	clock := newClock()
	cfg := Config{Self: testSelf, Now: clock.Now}
	tb := mustNew(t, KBucket, cfg)
	if got := tb.Refresh(); got != nil {
		t.Fatalf("fresh table: Refresh = %v", got)
	}
	clock.Step(DefaultRefreshAfter - time.Second)
	if got := tb.Refresh(); got != nil {
		t.Fatalf("before RefreshAfter: Refresh = %v", got)
	}
	clock.Step(time.Second)
	if got := tb.Refresh(); len(got) != 1 {
		t.Fatalf("stale single bucket: Refresh = %v", got)
	}
	if got := tb.Refresh(); got != nil {
		t.Fatalf("just refreshed: Refresh = %v", got)
	}

	// Buckets 0..3 full, the own bucket (4) holding nearer nodes.
	r := rand.New(rand.NewPCG(5, 5))
	var byBucket [][]krpc.NodeInfo
	next := 0
	for cpl := range 5 {
		var ns []krpc.NodeInfo
		for range DefaultK {
			next++
			n := node(idAt(r, testSelf, cpl), next)
			wantOutcome(t, tb.Update(n, Replied), Added, ReasonNone)
			ns = append(ns, n)
		}
		byBucket = append(byBucket, ns)
	}
	x := tb.(*kbucketTable)
	if len(x.buckets) != 5 {
		t.Fatalf("%d buckets, want 5", len(x.buckets))
	}
	clock.Step(DefaultRefreshAfter)
	tb.Update(byBucket[1][3], Replied)  // direct contact: bucket 1 is fresh
	tb.Update(byBucket[2][3], Reported) // hearsay: bucket 2 stays stale
	got := tb.Refresh()
	var gotBuckets []int
	for _, target := range got {
		gotBuckets = append(gotBuckets, x.index(target))
	}
	slices.Sort(gotBuckets)
	if want := []int{0, 2, 3, 4}; !slices.Equal(gotBuckets, want) {
		t.Fatalf("Refresh targets fall in buckets %v, want %v", gotBuckets, want)
	}
	for _, target := range got {
		if i, cpl := x.index(target), testSelf.CommonPrefixLen(target); cpl != i && !(i == 4 && cpl >= 4) {
			t.Fatalf("target %v shares %d bits with Self, outside bucket %d", target, cpl, i)
		}
	}
	if got := tb.Refresh(); got != nil {
		t.Fatalf("second Refresh = %v", got)
	}
}

func TestKBucketClosestOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	clock := newClock()
	cfg := Config{Self: testSelf, Now: clock.Now, IPsPerBucket: -1}
	tb := mustNew(t, KBucket, cfg)
	for i := range 5000 {
		tb.Update(node(idAt(r, testSelf, r.IntN(20)), i), Replied)
	}
	es := entries(tb)
	for range 200 {
		target := idAt(r, testSelf, r.IntN(24))
		for _, n := range []int{1, 8, 16, 1000} {
			checkClosest(t, tb, es, target, n, DefaultMaxFailures)
		}
	}
}

// TestSetSelfKeepsHistory: after a change of own ID the entries that stay
// are the same entries, history and all, good ones are kept before
// questionable ones, and the new ID is not stored.
func TestSetSelfKeepsHistory(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	clock := newClock()
	self := randID(r)
	tb := mustNew(t, KBucket, Config{Self: self, IPsPerBucket: -1, Now: clock.Now})
	var ids []krpc.ID
	for i := range 400 {
		id := idAt(r, self, r.IntN(6))
		ids = append(ids, id)
		ev := Replied
		if i%2 == 1 {
			ev = Queried // questionable: never replied
		}
		tb.Update(krpc.NodeInfo{ID: id, Addr: addr4(i)}, ev)
		clock.Step(time.Second)
	}
	before := map[krpc.ID]Entry{}
	for _, e := range entries(tb) {
		before[e.ID] = e
	}
	newSelf := ids[0]
	tb.SetSelf(newSelf)
	after := entries(tb)
	if len(after) == 0 {
		t.Fatal("SetSelf emptied the table")
	}
	good, questionable := 0, 0
	for _, e := range after {
		old, ok := before[e.ID]
		switch {
		case e.ID == newSelf:
			t.Fatalf("the new own ID %v is stored", newSelf)
		case ok && old != e:
			t.Fatalf("entry %v changed: %+v, was %+v", e.ID, e, old)
		}
		if e.LastReply.IsZero() {
			questionable++
		} else {
			good++
		}
	}
	if good < questionable {
		t.Errorf("after SetSelf %d good and %d questionable entries: good ones should win the room", good, questionable)
	}
}

// TestExtendedBucketSizes: filled with many random nodes, an extended
// table's four farthest buckets hold 128, 64, 32 and 16 nodes (K 8) and
// the rest 8; a standard table holds 8 in each.
func TestExtendedBucketSizes(t *testing.T) {
	for _, ext := range []bool{false, true} {
		r := rand.New(rand.NewPCG(3, 4))
		self := randID(r)
		tb := mustNew(t, KBucket, Config{Self: self, IPsPerBucket: -1, Extended: ext}).(*kbucketTable)
		for i := range 20000 {
			tb.Update(krpc.NodeInfo{ID: randID(r), Addr: addr4(i)}, Replied)
		}
		want := []int{8, 8, 8, 8, 8}
		if ext {
			want = []int{128, 64, 32, 16, 8}
		}
		for i, w := range want {
			if got := len(tb.buckets[i].entries); got != w {
				t.Errorf("extended %v: bucket %d holds %d nodes, want %d", ext, i, got, w)
			}
		}
	}
}
