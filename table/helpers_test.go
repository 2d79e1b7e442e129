package table

import (
	"github.com/lightdht/lightdht/internal/clocktest"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/lightdht/lightdht/krpc"
)

var allKinds = []Kind{KBucket, Flat, Prefix}

// fakeClock is the stepped clock the tests pass as Config.Now.
type fakeClock = clocktest.Clock

func newClock() *fakeClock { return clocktest.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) }

func mustNew(t testing.TB, kind Kind, cfg Config) Table {
	t.Helper()
	tb, err := New(kind, cfg)
	if err != nil {
		t.Fatalf("New(%v): %v", kind, err)
	}
	return tb
}

// testSelf is a fixed own ID for tests.
var testSelf = krpc.ID{0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a,
	0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a}

// idAt returns an ID sharing exactly cpl leading bits with self (cpl < 160),
// with the remaining bits taken from the random source.
func idAt(r *rand.Rand, self krpc.ID, cpl int) krpc.ID {
	var id krpc.ID
	for i := range id {
		id[i] = byte(r.Uint32())
	}
	full := cpl / 8
	copy(id[:full], self[:full])
	if rem := cpl % 8; rem > 0 {
		mask := byte(0xff) << (8 - rem)
		id[full] = self[full]&mask | id[full]&^mask
	}
	m := byte(0x80) >> (cpl % 8)
	id[cpl/8] = id[cpl/8]&^m | (self[cpl/8]^m)&m
	return id
}

func randID(r *rand.Rand) krpc.ID {
	var id krpc.ID
	for i := range id {
		id[i] = byte(r.Uint32())
	}
	return id
}

// addr4 returns a distinct IPv4 address and port for each i.
func addr4(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), uint16(1000+i%50000))
}

func node(id krpc.ID, i int) krpc.NodeInfo { return krpc.NodeInfo{ID: id, Addr: addr4(i)} }

// entries returns every entry of tb, by Each.
func entries(tb Table) []Entry {
	var es []Entry
	tb.Each(func(e Entry) bool { es = append(es, e); return true })
	return es
}

// bruteClosest is the reference Closest: the n nearest non-bad entries by
// an insertion into a sorted prefix, using krpc's Xor and Cmp only.
func bruteClosest(es []Entry, target krpc.ID, n, maxFail int) []krpc.ID {
	type cand struct{ d, id krpc.ID }
	best := make([]cand, 0, n+1)
	for _, e := range es {
		if e.Failures >= maxFail {
			continue
		}
		c := cand{e.ID.Xor(target), e.ID}
		if len(best) == n && c.d.Cmp(best[n-1].d) >= 0 {
			continue
		}
		i := len(best)
		for i > 0 && c.d.Cmp(best[i-1].d) < 0 {
			i--
		}
		best = slices.Insert(best, i, c)
		if len(best) > n {
			best = best[:n]
		}
	}
	out := make([]krpc.ID, len(best))
	for i, c := range best {
		out[i] = c.id
	}
	return out
}

func ids(es []Entry) []krpc.ID {
	out := make([]krpc.ID, len(es))
	for i, e := range es {
		out[i] = e.ID
	}
	return out
}

// checkClosest compares Closest with the brute-force answer.
func checkClosest(t *testing.T, tb Table, es []Entry, target krpc.ID, n, maxFail int) {
	t.Helper()
	got := ids(tb.Closest(target, n))
	want := bruteClosest(es, target, n, maxFail)
	if !slices.Equal(got, want) {
		t.Fatalf("Closest(%v, %d): got %d IDs, want %d\ngot  %v\nwant %v", target, n, len(got), len(want), got, want)
	}
	var replied []Entry
	for _, e := range es {
		if !e.LastReply.IsZero() && e.Failures == 0 {
			replied = append(replied, e)
		}
	}
	got = ids(tb.AppendClosestReplied(nil, target, n))
	want = bruteClosest(replied, target, n, maxFail)
	if !slices.Equal(got, want) {
		t.Fatalf("AppendClosestReplied(%v, %d): got %d IDs, want %d\ngot  %v\nwant %v", target, n, len(got), len(want), got, want)
	}
}

// checkInvariants verifies everything that must hold after any operation.
func checkInvariants(t *testing.T, tb Table, cfg Config, r *rand.Rand) {
	t.Helper()
	cfg = cfg.withDefaults()
	es := entries(tb)
	if len(es) != tb.Len() {
		t.Fatalf("Len() = %d, Each saw %d entries", tb.Len(), len(es))
	}
	seen := make(map[krpc.ID]bool, len(es))
	for _, e := range es {
		switch {
		case e.ID.IsZero():
			t.Fatalf("zero ID stored: %+v", e)
		case e.ID == cfg.Self:
			t.Fatalf("own ID stored: %+v", e)
		case seen[e.ID]:
			t.Fatalf("duplicate ID %v", e.ID)
		case !e.Addr.IsValid():
			t.Fatalf("invalid address stored: %+v", e)
		}
		seen[e.ID] = true
	}
	for range min(len(es), 8) {
		e := es[r.IntN(len(es))]
		if g, ok := tb.Get(e.ID); !ok || g != e {
			t.Fatalf("Get(%v) = %+v, %v; Each had %+v", e.ID, g, ok, e)
		}
	}
	switch x := tb.(type) {
	case *kbucketTable:
		checkKBucket(t, x, len(es))
	case *research:
		checkResearch(t, x)
	}
	// A random target, and either Self or an existing ID.
	targets := []krpc.ID{randID(r), cfg.Self}
	if len(es) > 0 && r.IntN(2) == 0 {
		targets[1] = es[r.IntN(len(es))].ID
	}
	for _, target := range targets {
		for _, n := range []int{1, 8, 20} {
			checkClosest(t, tb, es, target, n, cfg.MaxFailures)
		}
	}
}

func checkKBucket(t *testing.T, x *kbucketTable, total int) {
	t.Helper()
	L := len(x.buckets)
	if L < 1 || L > numBits {
		t.Fatalf("%d buckets", L)
	}
	sum := 0
	for i, b := range x.buckets {
		if b.limit != x.bucketLimit(i) {
			t.Fatalf("bucket %d has limit %d, want %d", i, b.limit, x.bucketLimit(i))
		}
		if len(b.entries) > b.limit {
			t.Fatalf("bucket %d holds %d > %d entries", i, len(b.entries), b.limit)
		}
		if len(b.pending) > x.cfg.K {
			t.Fatalf("bucket %d holds %d > K=%d pending candidates", i, len(b.pending), x.cfg.K)
		}
		sum += len(b.entries)
		inRange := func(id krpc.ID) bool {
			// Non-last buckets cover disjoint ranges sharing exactly i bits
			// with Self: only Self's range was ever split.
			cpl := x.cfg.Self.CommonPrefixLen(id)
			return cpl == i || (i == L-1 && cpl >= i)
		}
		perIP := map[netip.Addr]int{}
		for _, e := range b.entries {
			if !inRange(e.ID) {
				t.Fatalf("entry %v (cpl %d) in bucket %d of %d", e.ID, x.cfg.Self.CommonPrefixLen(e.ID), i, L)
			}
			perIP[e.Addr.Addr().Unmap()]++
			if lim := x.cfg.IPsPerBucket; lim > 0 && perIP[e.Addr.Addr().Unmap()] > lim {
				t.Fatalf("bucket %d holds more than %d entries with IP %v", i, lim, e.Addr.Addr())
			}
		}
		for _, p := range b.pending {
			if !inRange(p.ID) {
				t.Fatalf("pending %v in bucket %d of %d", p.ID, i, L)
			}
			if find(b.entries, p.ID) >= 0 {
				t.Fatalf("pending %v is also an entry of bucket %d", p.ID, i)
			}
			if p.Failures >= x.cfg.MaxFailures {
				t.Fatalf("bad pending candidate %v kept", p.ID)
			}
		}
	}
	if sum != x.n || sum != total {
		t.Fatalf("buckets hold %d entries, n = %d, Each saw %d", sum, x.n, total)
	}
}

func checkResearch(t *testing.T, x *research) {
	t.Helper()
	switch ix := x.idx.(type) {
	case *flatIndex:
		if len(ix.m) != len(x.recs) {
			t.Fatalf("map holds %d IDs, %d records", len(ix.m), len(x.recs))
		}
		for i := range x.recs {
			if j, ok := ix.m[x.recs[i].id]; !ok || int(j) != i {
				t.Fatalf("map[%v] = %d, %v; want %d", x.recs[i].id, j, ok, i)
			}
		}
	case *trie:
		checkTrie(t, ix, x.recs)
	}
}

// checkTrie verifies the crit-bit structure: every record reachable exactly
// once, bits increasing along paths, prefixes consistent, live counts right,
// and no inner node leaked.
func checkTrie(t *testing.T, x *trie, recs []rec) {
	t.Helper()
	if x.size != len(recs) {
		t.Fatalf("trie size %d, %d records", x.size, len(recs))
	}
	if x.size == 0 {
		return
	}
	if inner := len(x.nodes) - len(x.free); inner != x.size-1 {
		t.Fatalf("%d inner nodes in use for %d leaves", inner, x.size)
	}
	reached := make([]bool, len(recs))
	// walk returns the number of live leaves and one leaf ID below r.
	var walk func(r ref, minBit uint32) (uint32, krpc.ID)
	walk = func(r ref, minBit uint32) (uint32, krpc.ID) {
		if r < 0 {
			i := ^r
			if reached[i] {
				t.Fatalf("record %d reached twice", i)
			}
			reached[i] = true
			return b2u(recs[i].failures < x.maxFail), recs[i].id
		}
		n := &x.nodes[r]
		if n.bit < minBit || n.bit >= numBits {
			t.Fatalf("inner node %d tests bit %d below parent's %d", r, n.bit, minBit)
		}
		l0, id0 := walk(n.child[0], n.bit+1)
		l1, id1 := walk(n.child[1], n.bit+1)
		if bit(&id0, uint(n.bit)) != 0 || bit(&id1, uint(n.bit)) != 1 || id0.CommonPrefixLen(id1) != int(n.bit) {
			t.Fatalf("inner node %d (bit %d) has misplaced leaves %v, %v", r, n.bit, id0, id1)
		}
		if n.live != l0+l1 {
			t.Fatalf("inner node %d counts %d live leaves, has %d", r, n.live, l0+l1)
		}
		return n.live, id0
	}
	walk(x.root, 0)
	for i, ok := range reached {
		if !ok {
			t.Fatalf("record %d not in the trie", i)
		}
	}
}
