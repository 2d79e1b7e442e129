package table

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/lightdht/lightdht/krpc"
)

var researchKinds = []Kind{Flat, Prefix}

func TestResearchKeepsEverything(t *testing.T) {
	for _, kind := range researchKinds {
		t.Run(kind.String(), func(t *testing.T) {
			clock := newClock()
			tb := mustNew(t, kind, Config{Self: testSelf, Now: clock.Now})
			r := rand.New(rand.NewPCG(2, 2))
			// 50 nodes in one k-bucket range, all sharing one IP, all bad.
			ip := netip.MustParseAddr("203.0.113.5")
			for i := range 50 {
				n := krpc.NodeInfo{ID: idAt(r, testSelf, 0), Addr: netip.AddrPortFrom(ip, uint16(i+1))}
				wantOutcome(t, tb.Update(n, Reported), Added, ReasonNone)
				for range DefaultMaxFailures + 2 {
					tb.Failed(n)
				}
			}
			if tb.Len() != 50 {
				t.Fatalf("Len = %d, want 50", tb.Len())
			}
			if got := tb.Closest(testSelf, 8); len(got) != 0 {
				t.Fatalf("Closest returned %d bad nodes", len(got))
			}
			tb.Each(func(e Entry) bool {
				if e.State(clock.Now(), Config{}) != Bad || e.Failures != DefaultMaxFailures+2 {
					t.Fatalf("entry %+v not kept as bad", e)
				}
				return true
			})
		})
	}
}

func TestResearchAddressChange(t *testing.T) {
	oldAddr := netip.MustParseAddrPort("192.0.2.1:1000")
	newAddr := netip.MustParseAddrPort("[2001:db8::1]:2000")
	for _, kind := range researchKinds {
		for _, ev := range []Event{Reported, Queried, Replied} {
			t.Run(kind.String()+"/"+ev.String(), func(t *testing.T) {
				clock := newClock()
				tb := mustNew(t, kind, Config{Self: testSelf, Now: clock.Now})
				id := krpc.ID{0xff, 1}
				tb.Update(krpc.NodeInfo{ID: id, Addr: oldAddr}, Replied)
				tb.Update(krpc.NodeInfo{ID: id, Addr: oldAddr}, Queried)
				tb.Failed(krpc.NodeInfo{ID: id, Addr: oldAddr})
				first := clock.Now()
				clock.Step(time.Minute)
				wantOutcome(t, tb.Update(krpc.NodeInfo{ID: id, Addr: newAddr}, ev), Updated, ReasonNone)
				e, ok := tb.Get(id)
				now := clock.Now()
				want := Entry{NodeInfo: krpc.NodeInfo{ID: id, Addr: newAddr}, LastSeen: now}
				switch ev {
				case Replied:
					want.LastReply = now
				case Queried:
					want.LastQuery = now
				}
				if !ok || e.Addr != want.Addr || !e.FirstSeen.Equal(first) || !e.LastSeen.Equal(want.LastSeen) ||
					!e.LastReply.Equal(want.LastReply) || !e.LastQuery.Equal(want.LastQuery) || e.Failures != 0 {
					t.Fatalf("after the move: %+v, want %+v with FirstSeen %v", e, want, first)
				}
				// A failure at the old address no longer counts.
				tb.Failed(krpc.NodeInfo{ID: id, Addr: oldAddr})
				if e, _ := tb.Get(id); e.Failures != 0 {
					t.Fatalf("failure at the old address counted")
				}
				if tb.Len() != 1 {
					t.Fatalf("Len = %d", tb.Len())
				}
			})
		}
	}
}

func TestResearchRoundTripsAddresses(t *testing.T) {
	addrs := []string{"192.0.2.1:1", "[::ffff:192.0.2.1]:2", "[2001:db8::7]:65535", "[::1]:6881", "0.0.0.0:0"}
	for _, kind := range researchKinds {
		tb := mustNew(t, kind, Config{Self: testSelf})
		for i, s := range addrs {
			ap := netip.MustParseAddrPort(s)
			id := krpc.ID{byte(i + 1)}
			tb.Update(krpc.NodeInfo{ID: id, Addr: ap}, Reported)
			if e, _ := tb.Get(id); e.Addr != ap {
				t.Errorf("%v: stored %v, got back %v", kind, ap, e.Addr)
			}
		}
	}
	if got := unsafe.Sizeof(rec{}); got != 72 {
		t.Errorf("rec is %d bytes, want 72", got)
	}
}

func TestResearchRefresh(t *testing.T) {
	for _, kind := range researchKinds {
		t.Run(kind.String(), func(t *testing.T) {
			clock := newClock()
			tb := mustNew(t, kind, Config{Self: testSelf, Now: clock.Now})
			if got := tb.Refresh(); got != nil {
				t.Fatalf("fresh table: %v", got)
			}
			clock.Step(DefaultRefreshAfter)
			if got := tb.Refresh(); len(got) != 1 {
				t.Fatalf("stale empty table: %v", got)
			}
			r := rand.New(rand.NewPCG(6, 6))
			var byCPL []krpc.NodeInfo
			for cpl := range 5 {
				n := node(idAt(r, testSelf, cpl), cpl)
				tb.Update(n, Reported)
				byCPL = append(byCPL, n)
			}
			clock.Step(DefaultRefreshAfter)
			tb.Update(byCPL[2], Replied)
			tb.Update(byCPL[3], Reported)
			var got []int
			for _, target := range tb.Refresh() {
				got = append(got, min(testSelf.CommonPrefixLen(target), 4))
			}
			slices.Sort(got)
			if want := []int{0, 1, 3, 4}; !slices.Equal(got, want) {
				t.Fatalf("targets in virtual buckets %v, want %v", got, want)
			}
			if got := tb.Refresh(); got != nil {
				t.Fatalf("second Refresh = %v", got)
			}
		})
	}
}

// TestResearchManyNodes stores 100,000 random nodes in each research table,
// makes some bad and removes some, and compares Closest with brute force.
func TestResearchManyNodes(t *testing.T) {
	const total = 100_000
	for _, kind := range researchKinds {
		t.Run(kind.String(), func(t *testing.T) {
			t.Parallel()
			r := rand.New(rand.NewPCG(8, uint64(kind)))
			cfg := Config{Self: randID(r)}
			tb := mustNew(t, kind, cfg)
			nodes := make([]krpc.NodeInfo, total)
			for i := range nodes {
				nodes[i] = node(randID(r), i)
				if res := tb.Update(nodes[i], Reported); res.Outcome != Added {
					t.Fatalf("Update #%d = %+v", i, res)
				}
			}
			if tb.Len() != total {
				t.Fatalf("Len = %d", tb.Len())
			}
			check := func(samples int) {
				t.Helper()
				es := entries(tb)
				checkResearch(t, tb.(*research))
				for range samples {
					target := randID(r)
					if r.IntN(2) == 0 {
						// Near an existing node: a deep walk.
						target = es[r.IntN(len(es))].ID
						target[19] ^= 1
					}
					for _, n := range []int{8, 100} {
						checkClosest(t, tb, es, target, n, DefaultMaxFailures)
					}
				}
			}
			samples := 20
			if testing.Short() {
				samples = 8
			}
			check(samples)
			// Every third node goes bad, every fifth is removed.
			for i, n := range nodes {
				switch {
				case i%5 == 0:
					if !tb.Remove(n.ID) {
						t.Fatalf("Remove #%d failed", i)
					}
				case i%3 == 0:
					for range DefaultMaxFailures {
						tb.Failed(n)
					}
				}
			}
			if want := total - total/5; tb.Len() != want {
				t.Fatalf("Len = %d, want %d", tb.Len(), want)
			}
			check(samples)
		})
	}
}
