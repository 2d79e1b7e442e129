package table

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lightdht/lightdht/krpc"
)

func TestEntryState(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	tests := []struct {
		name string
		e    Entry
		cfg  Config
		want State
	}{
		{"only reported", Entry{LastSeen: now}, Config{}, Questionable},
		{"replied just now", Entry{LastReply: now}, Config{}, Good},
		{"replied 14m59s ago", Entry{LastReply: ago(15*time.Minute - time.Second)}, Config{}, Good},
		{"replied 15m ago", Entry{LastReply: ago(15 * time.Minute)}, Config{}, Questionable},
		{"replied long ago, queried just now", Entry{LastReply: ago(time.Hour), LastQuery: now}, Config{}, Good},
		{"replied long ago, queried 15m ago", Entry{LastReply: ago(time.Hour), LastQuery: ago(15 * time.Minute)}, Config{}, Questionable},
		{"never replied, queried just now", Entry{LastQuery: now}, Config{}, Questionable},
		{"replied, 2 failures", Entry{LastReply: now, Failures: 2}, Config{}, Good},
		{"replied, 3 failures", Entry{LastReply: now, Failures: 3}, Config{}, Bad},
		{"custom: 1 failure is bad", Entry{LastReply: now, Failures: 1}, Config{MaxFailures: 1}, Bad},
		{"custom: questionable after 1m", Entry{LastReply: ago(time.Minute)}, Config{QuestionableAfter: time.Minute}, Questionable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.e.State(now, tt.cfg); got != tt.want {
				t.Errorf("State = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestGoodBecomesQuestionable(t *testing.T) {
	for _, kind := range allKinds {
		t.Run(kind.String(), func(t *testing.T) {
			clock := newClock()
			cfg := Config{Self: testSelf, Now: clock.Now}
			tb := mustNew(t, kind, cfg)
			n := node(idAt(rand.New(rand.NewPCG(1, 2)), testSelf, 3), 1)
			state := func() State {
				t.Helper()
				e, ok := tb.Get(n.ID)
				if !ok {
					t.Fatal("node missing")
				}
				return e.State(clock.Now(), cfg)
			}
			wantOutcome(t, tb.Update(n, Replied), Added, ReasonNone)
			clock.Step(15*time.Minute - time.Second)
			if s := state(); s != Good {
				t.Fatalf("after 14m59s: %v", s)
			}
			clock.Step(time.Second)
			if s := state(); s != Questionable {
				t.Fatalf("after 15m: %v", s)
			}
			wantOutcome(t, tb.Update(n, Reported), Updated, ReasonNone)
			if s := state(); s != Questionable {
				t.Fatalf("after hearsay: %v", s)
			}
			wantOutcome(t, tb.Update(n, Queried), Updated, ReasonNone)
			if s := state(); s != Good {
				t.Fatalf("after a query from a node that replied before: %v", s)
			}
			clock.Step(15 * time.Minute)
			wantOutcome(t, tb.Update(n, Replied), Updated, ReasonNone)
			if s := state(); s != Good {
				t.Fatalf("after a reply: %v", s)
			}
		})
	}
}

func TestBadAfterMaxFailures(t *testing.T) {
	for _, kind := range allKinds {
		for _, maxFail := range []int{0, 1, 5} {
			t.Run(kind.String()+"/max"+string(rune('0'+maxFail)), func(t *testing.T) {
				clock := newClock()
				cfg := Config{Self: testSelf, Now: clock.Now, MaxFailures: maxFail}
				limit := cfg.withDefaults().MaxFailures
				tb := mustNew(t, kind, cfg)
				n := node(idAt(rand.New(rand.NewPCG(1, 2)), testSelf, 0), 1)
				tb.Update(n, Replied)
				inClosest := func() bool {
					got := tb.Closest(n.ID, 8)
					return len(got) == 1 && got[0].ID == n.ID
				}
				for i := range limit - 1 {
					tb.Failed(n)
					e, _ := tb.Get(n.ID)
					if e.Failures != i+1 || e.State(clock.Now(), cfg) == Bad || !inClosest() {
						t.Fatalf("after %d failures: %+v, in Closest %v", i+1, e, inClosest())
					}
				}
				// A query from the node does not reset its failures.
				tb.Update(n, Queried)
				tb.Failed(n)
				e, ok := tb.Get(n.ID)
				if !ok || e.Failures != limit || e.State(clock.Now(), cfg) != Bad {
					t.Fatalf("after %d failures: %+v, %v; want kept and bad", limit, e, ok)
				}
				if inClosest() || tb.Len() != 1 {
					t.Fatalf("bad node in Closest (%v) or not counted (Len %d)", inClosest(), tb.Len())
				}
				wantOutcome(t, tb.Update(n, Replied), Updated, ReasonNone)
				e, _ = tb.Get(n.ID)
				if e.Failures != 0 || e.State(clock.Now(), cfg) != Good || !inClosest() {
					t.Fatalf("after a reply: %+v", e)
				}
			})
		}
	}
}

func TestRejectsInvalid(t *testing.T) {
	good := netip.MustParseAddrPort("192.0.2.1:6881")
	someID := krpc.ID{1, 2, 3}
	tests := []struct {
		name   string
		n      krpc.NodeInfo
		ev     Event
		reason Reason
	}{
		{"zero ID", krpc.NodeInfo{Addr: good}, Replied, ReasonZeroID},
		{"own ID", krpc.NodeInfo{ID: testSelf, Addr: good}, Replied, ReasonSelf},
		{"own ID reported", krpc.NodeInfo{ID: testSelf, Addr: good}, Reported, ReasonSelf},
		{"no address", krpc.NodeInfo{ID: someID}, Replied, ReasonInvalidAddr},
		{"unknown event", krpc.NodeInfo{ID: someID, Addr: good}, Event(3), ReasonInvalidEvent},
		{"negative event", krpc.NodeInfo{ID: someID, Addr: good}, Event(-1), ReasonInvalidEvent},
	}
	for _, kind := range allKinds {
		for _, tt := range tests {
			t.Run(kind.String()+"/"+tt.name, func(t *testing.T) {
				tb := mustNew(t, kind, Config{Self: testSelf})
				wantOutcome(t, tb.Update(tt.n, tt.ev), Rejected, tt.reason)
				tb.Failed(tt.n)
				if tb.Len() != 0 || len(tb.Closest(tt.n.ID, 8)) != 0 {
					t.Fatalf("table holds %d entries", tb.Len())
				}
			})
		}
	}
}

func TestNewValidatesConfig(t *testing.T) {
	tests := []struct {
		name    string
		kind    Kind
		cfg     Config
		wantErr string
	}{
		{"ok", KBucket, Config{Self: testSelf}, ""},
		{"ok research", Prefix, Config{Self: testSelf, MaxFailures: MaxFailuresLimit}, ""},
		{"zero self", Flat, Config{}, "Self is the zero ID"},
		{"negative K", KBucket, Config{Self: testSelf, K: -1}, "K is negative"},
		{"MaxFailures too big", Flat, Config{Self: testSelf, MaxFailures: MaxFailuresLimit + 1}, "MaxFailures"},
		{"negative MaxFailures", Flat, Config{Self: testSelf, MaxFailures: -1}, "MaxFailures"},
		{"negative QuestionableAfter", KBucket, Config{Self: testSelf, QuestionableAfter: -time.Second}, "QuestionableAfter"},
		{"negative RefreshAfter", KBucket, Config{Self: testSelf, RefreshAfter: -time.Second}, "RefreshAfter"},
		{"unknown kind", Kind(9), Config{Self: testSelf}, "unknown kind"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb, err := New(tt.kind, tt.cfg)
			switch {
			case tt.wantErr == "" && (err != nil || tb == nil):
				t.Fatalf("New = %v, %v", tb, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("New error = %v, want one mentioning %q", err, tt.wantErr)
			}
		})
	}
}

func TestKindNames(t *testing.T) {
	for _, k := range allKinds {
		got, err := ParseKind(strings.ToUpper(k.String()))
		if err != nil || got != k {
			t.Errorf("ParseKind(%q) = %v, %v", k.String(), got, err)
		}
	}
	if _, err := ParseKind("btree"); err == nil {
		t.Error("ParseKind accepted btree")
	}
	if Kind(0) != KBucket {
		t.Error("zero Kind is not KBucket")
	}
	for _, s := range []interface{ String() string }{Kind(7), Event(7), State(7), Outcome(0), Reason(99)} {
		if !strings.Contains(s.String(), "(") {
			t.Errorf("unknown value printed as %q", s.String())
		}
	}
	if Replied.String() != "replied" || Questionable.String() != "questionable" || NeedPing.String() != "need-ping" || ReasonIPLimit.String() == "" {
		t.Error("String methods misnamed")
	}
}

func TestClosestEdgeCases(t *testing.T) {
	for _, kind := range allKinds {
		t.Run(kind.String(), func(t *testing.T) {
			tb := mustNew(t, kind, Config{Self: testSelf})
			if got := tb.Closest(testSelf, 8); len(got) != 0 {
				t.Fatalf("empty table: %v", got)
			}
			r := rand.New(rand.NewPCG(4, 4))
			for i := range 5 {
				tb.Update(node(idAt(r, testSelf, i), i), Replied)
			}
			if got := tb.Closest(testSelf, 0); got != nil {
				t.Fatalf("Closest(n=0) = %v", got)
			}
			if got := tb.Closest(testSelf, -1); got != nil {
				t.Fatalf("Closest(n=-1) = %v", got)
			}
			if got := tb.Closest(testSelf, 100); len(got) != 5 {
				t.Fatalf("Closest(n=100) returned %d of 5", len(got))
			}
			calls := 0
			tb.Each(func(Entry) bool { calls++; return calls < 2 })
			if calls != 2 {
				t.Fatalf("Each called f %d times after it returned false", calls)
			}
		})
	}
}

// TestConcurrentUse hammers each table from several goroutines; run with
// -race.
func TestConcurrentUse(t *testing.T) {
	for _, kind := range allKinds {
		t.Run(kind.String(), func(t *testing.T) {
			clock := newClock()
			cfg := Config{Self: testSelf, Now: clock.Now}
			tb := mustNew(t, kind, cfg)
			var wg sync.WaitGroup
			for g := range 4 {
				wg.Go(func() {
					r := rand.New(rand.NewPCG(uint64(g), 1))
					for i := range 400 {
						n := node(idAt(r, testSelf, r.IntN(8)), r.IntN(300))
						switch i % 8 {
						case 0, 1, 2:
							tb.Update(n, Event(r.IntN(3)))
						case 3:
							tb.Failed(n)
						case 4:
							tb.Closest(n.ID, 8)
						case 5:
							tb.Get(n.ID)
							tb.Len()
						case 6:
							tb.Each(func(Entry) bool { return true })
							tb.Remove(n.ID)
						case 7:
							clock.Step(time.Minute)
							tb.Refresh()
						}
					}
				})
			}
			wg.Wait()
			checkInvariants(t, tb, cfg, rand.New(rand.NewPCG(1, 1)))
		})
	}
}

// TestAppendClosest: AppendClosest appends exactly what Closest returns
// and leaves what dst held alone, whatever dst's capacity.
func TestAppendClosest(t *testing.T) {
	for _, kind := range allKinds {
		tb := mustNew(t, kind, Config{Self: krpc.ID{0x80}, K: 8, IPsPerBucket: -1})
		r := rand.New(rand.NewPCG(1, uint64(kind)))
		for i := range 500 {
			var id krpc.ID
			for j := range id {
				id[j] = byte(r.Uint32())
			}
			tb.Update(krpc.NodeInfo{ID: id, Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 1}), 6881)}, Replied)
		}
		marker := Entry{NodeInfo: krpc.NodeInfo{ID: krpc.ID{0xee}}}
		for _, capacity := range []int{1, 9, 64} {
			target := krpc.ID{byte(r.Uint32()), byte(r.Uint32())}
			want := tb.Closest(target, 8)
			dst := append(make([]Entry, 0, capacity), marker)
			got := tb.AppendClosest(dst, target, 8)
			if len(want) != 8 || got[0] != marker || !slices.Equal(got[1:], want) {
				t.Errorf("%v, cap %d: AppendClosest gave %d entries (marker kept %v), Closest %d", kind, capacity, len(got)-1, got[0] == marker, len(want))
			}
		}
	}
}
