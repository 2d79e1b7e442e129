package peerstore

import (
	"errors"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/lightdht/lightdht/krpc"
)

func TestNewConfig(t *testing.T) {
	for _, cfg := range []Config{
		{TTL: -1},
		{MaxInfohashes: -1},
		{MaxPeersPerInfohash: -1},
		{MaxPeersPerInfohash: maxPeersLimit + 1},
	} {
		if _, err := New(cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("New(%+v) error = %v; want ErrConfig", cfg, err)
		}
	}
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if s.ttl != int64(DefaultTTL) || s.maxIH != DefaultMaxInfohashes || s.maxPeers != DefaultMaxPeersPerInfohash || s.now == nil {
		t.Errorf("defaults not applied: %+v", s)
	}
	// The real clock works too.
	if !s.Announce(ih(1), peer4(1), false) || len(s.Peers(ih(1), IPv4, 10, false)) != 1 {
		t.Errorf("announce with time.Now failed")
	}
}

func TestAnnounceRefused(t *testing.T) {
	s, _ := newTestStore(t, Config{})
	for _, ap := range []netip.AddrPort{
		{},
		netip.MustParseAddrPort("192.0.2.1:0"),
		netip.MustParseAddrPort("0.0.0.0:6881"),
		netip.MustParseAddrPort("[::]:6881"),
		netip.MustParseAddrPort("[::ffff:0.0.0.0]:6881"),
		netip.MustParseAddrPort("224.0.0.1:6881"),
		netip.MustParseAddrPort("[ff02::1]:6881"),
	} {
		if s.Announce(ih(1), ap, false) {
			t.Errorf("Announce(%v) accepted", ap)
		}
	}
	if n, p := s.Len(); n != 0 || p != 0 {
		t.Errorf("Len = %d, %d after refused announces", n, p)
	}
}

func TestMappedAndZone(t *testing.T) {
	s, _ := newTestStore(t, Config{})
	s.Announce(ih(1), netip.MustParseAddrPort("[::ffff:192.0.2.1]:6881"), false)
	s.Announce(ih(1), netip.MustParseAddrPort("192.0.2.1:6881"), false)
	s.Announce(ih(1), netip.MustParseAddrPort("[fe80::1%eth0]:6881"), false)
	s.Announce(ih(1), netip.MustParseAddrPort("[fe80::1]:6881"), false)
	if _, n := s.Len(); n != 2 {
		t.Fatalf("%d peers; want 2 (mapped = IPv4, zone ignored)", n)
	}
	got := s.Peers(ih(1), IPv4, 10, false)
	if len(got) != 1 || got[0] != netip.MustParseAddrPort("192.0.2.1:6881") || !got[0].Addr().Is4() {
		t.Errorf("IPv4 peers = %v", got)
	}
	got = s.Peers(ih(1), IPv6, 10, false)
	if len(got) != 1 || got[0] != netip.MustParseAddrPort("[fe80::1]:6881") {
		t.Errorf("IPv6 peers = %v", got)
	}
	mustCheck(t, s)
}

func TestExpiry(t *testing.T) {
	const ttl = 10 * time.Minute
	s, clk := newTestStore(t, Config{TTL: ttl})
	s.Announce(ih(1), peer4(1), false)
	clk.Step(ttl - 1)
	if got := s.Peers(ih(1), IPv4, 10, false); len(got) != 1 {
		t.Fatalf("1ns before TTL: %v", got)
	}
	clk.Step(1)
	if got := s.Peers(ih(1), IPv4, 10, false); got != nil {
		t.Fatalf("at TTL: %v; want expired", got)
	}
	if n, p := s.Len(); n != 0 || p != 0 {
		t.Errorf("Len = %d, %d; the lookup should have dropped the empty infohash", n, p)
	}
	mustCheck(t, s)
}

func TestReannounceRefreshes(t *testing.T) {
	const ttl = 30 * time.Minute
	s, clk := newTestStore(t, Config{TTL: ttl})
	s.Announce(ih(1), peer4(1), false)
	s.Announce(ih(1), peer4(2), false)
	clk.Step(20 * time.Minute)
	s.Announce(ih(1), peer4(1), true) // refresh, now a seed
	clk.Step(10 * time.Minute)        // peer 2 expires, peer 1 lives
	if got := s.Peers(ih(1), IPv4, 10, false); !slices.Equal(got, []netip.AddrPort{peer4(1)}) {
		t.Fatalf("after 30m: %v; want only the refreshed peer", got)
	}
	if got := s.Peers(ih(1), IPv4, 10, true); got != nil {
		t.Fatalf("noSeed: %v; the refreshed peer is now a seed", got)
	}
	clk.Step(20*time.Minute - 1)
	if s.Peers(ih(1), IPv4, 10, false) == nil {
		t.Fatalf("refreshed peer expired early")
	}
	clk.Step(1)
	if got := s.Peers(ih(1), IPv4, 10, false); got != nil {
		t.Fatalf("refreshed peer outlived its TTL: %v", got)
	}
	mustCheck(t, s)
}

func TestFamilySeparation(t *testing.T) {
	s, _ := newTestStore(t, Config{})
	for i := range 5 {
		s.Announce(ih(1), peer4(i), false)
	}
	for i := range 3 {
		s.Announce(ih(1), peer6(i), false)
	}
	v4 := s.Peers(ih(1), IPv4, 100, false)
	v6 := s.Peers(ih(1), IPv6, 100, false)
	if len(v4) != 5 || len(v6) != 3 {
		t.Fatalf("got %d IPv4 and %d IPv6 peers; want 5 and 3", len(v4), len(v6))
	}
	for _, p := range v4 {
		if FamilyOf(p.Addr()) != IPv4 || !p.Addr().Is4() {
			t.Errorf("%v in the IPv4 reply", p)
		}
	}
	for _, p := range v6 {
		if FamilyOf(p.Addr()) != IPv6 {
			t.Errorf("%v in the IPv6 reply", p)
		}
	}
	if s.Peers(ih(1), Family(2), 100, false) != nil || s.Peers(ih(2), IPv4, 100, false) != nil {
		t.Errorf("peers for a bad family or unknown infohash")
	}
	if IPv4.String() != "IPv4" || IPv6.String() != "IPv6" || Family(7).String() != "Family(7)" {
		t.Errorf("Family.String")
	}
	if FamilyOf(netip.MustParseAddr("::ffff:1.2.3.4")) != IPv4 || FamilyOf(netip.Addr{}) != IPv6 {
		t.Errorf("FamilyOf")
	}
}

func TestNoSeed(t *testing.T) {
	s, _ := newTestStore(t, Config{})
	for i := range 100 {
		s.Announce(ih(1), peer4(i), i%3 == 0)
	}
	for range 20 {
		got := s.Peers(ih(1), IPv4, 10, true)
		if len(got) != 10 {
			t.Fatalf("got %d peers; want 10", len(got))
		}
		for _, p := range got {
			if p.Addr().As4()[3]%3 == 0 {
				t.Fatalf("seed %v returned with noSeed", p)
			}
		}
	}
	// All 66 non-seeds, none of the 34 seeds.
	if got := s.Peers(ih(1), IPv4, 1000, true); len(got) != 66 {
		t.Errorf("got %d non-seeds; want 66", len(got))
	}
	if got := s.Peers(ih(1), IPv4, 1000, false); len(got) != 100 {
		t.Errorf("got %d peers; want 100", len(got))
	}
}

func TestPeersMax(t *testing.T) {
	s, _ := newTestStore(t, Config{})
	s.Announce(ih(1), peer4(1), false)
	if s.Peers(ih(1), IPv4, 0, false) != nil || s.Peers(ih(1), IPv4, -1, false) != nil {
		t.Error("max <= 0 returned peers")
	}
	dst := []netip.AddrPort{peer6(9)}
	if got := s.AppendPeers(dst, ih(1), IPv4, 0, false); len(got) != 1 {
		t.Error("AppendPeers with max 0 appended")
	}
	if got := s.AppendPeers(dst, ih(1), IPv4, 5, false); len(got) != 2 || got[0] != peer6(9) || got[1] != peer4(1) {
		t.Errorf("AppendPeers = %v", got)
	}
}

// TestRandomSubset checks, for each sampling strategy, that the sample is a
// duplicate-free subset of the live qualifying peers, changes between
// calls, and includes each qualifying peer about equally often.
func TestRandomSubset(t *testing.T) {
	const calls = 1000 // more than 255: the sample generation wraps
	tests := []struct {
		name     string
		n, seeds int // live peers, of which the first seeds are seeds
		k        int
		noSeed   bool
	}{
		{"probe", 200, 0, 50, false},
		{"probe/noSeed", 200, 40, 50, true},
		{"probe/seeds included", 200, 40, 50, false},
		{"reservoir/large k", 200, 0, 150, false},
		{"reservoir/mostly seeds", 200, 150, 20, true},
		{"all", 30, 10, 50, false},
		{"all/noSeed", 60, 20, 40, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, clk := newTestStore(t, Config{TTL: time.Hour})
			for i := range 20 { // expire before the others are announced
				s.Announce(ih(1), peer4(1000+i), false)
			}
			clk.Step(30 * time.Minute)
			live := map[netip.AddrPort]bool{}
			for i := range tt.n {
				seed := i < tt.seeds
				s.Announce(ih(1), peer4(i), seed)
				if !(tt.noSeed && seed) {
					live[peer4(i)] = true
				}
			}
			clk.Step(30 * time.Minute)
			m := len(live)
			want := min(tt.k, m)
			count := map[netip.AddrPort]int{}
			distinct := map[string]bool{}
			buf := make([]netip.AddrPort, 0, tt.k)
			for range calls {
				buf = s.AppendPeers(buf[:0], ih(1), IPv4, tt.k, tt.noSeed)
				if len(buf) != want {
					t.Fatalf("got %d peers; want %d", len(buf), want)
				}
				got := set(buf)
				if len(got) != want {
					t.Fatalf("duplicates in %v", buf)
				}
				for p := range got {
					if !live[p] {
						t.Fatalf("%v is not a live qualifying peer", p)
					}
					count[p]++
				}
				sorted := slices.Clone(buf)
				slices.SortFunc(sorted, func(a, b netip.AddrPort) int { return a.Compare(b) })
				distinct[fmtPeers(sorted)] = true
			}
			if want < m && len(distinct) < calls*9/10 {
				t.Errorf("only %d distinct samples in %d calls", len(distinct), calls)
			}
			// Each qualifying peer is in a sample with probability
			// want/m; allow 6 standard deviations.
			p := float64(want) / float64(m)
			mean := calls * p
			dev := 6*math.Sqrt(calls*p*(1-p)) + 0.5
			for q := range live {
				if c := float64(count[q]); math.Abs(c-mean) > dev {
					t.Errorf("%v sampled %v times in %d calls; want %.0f ± %.0f", q, c, calls, mean, dev)
				}
			}
		})
	}
}

func fmtPeers(ps []netip.AddrPort) string {
	b := make([]byte, 0, len(ps)*22)
	for _, p := range ps {
		b = p.AppendTo(b)
		b = append(b, ' ')
	}
	return string(b)
}

func TestPerInfohashCap(t *testing.T) {
	s, clk := newTestStore(t, Config{MaxPeersPerInfohash: 3})
	s.Announce(ih(1), peer4(1), false)
	clk.Step(time.Second)
	s.Announce(ih(1), peer6(2), false)
	clk.Step(time.Second)
	s.Announce(ih(1), peer4(3), false)
	clk.Step(time.Second)
	s.Announce(ih(1), peer4(1), false) // refresh: peer6(2) is now the oldest
	clk.Step(time.Second)
	s.Announce(ih(1), peer4(4), false) // replaces peer6(2)
	if got := s.Peers(ih(1), IPv6, 10, false); got != nil {
		t.Errorf("IPv6 peers %v; the oldest (IPv6) peer should have been replaced", got)
	}
	clk.Step(time.Second)
	s.Announce(ih(1), peer6(5), false) // replaces peer4(3)
	got := set(append(s.Peers(ih(1), IPv4, 10, false), s.Peers(ih(1), IPv6, 10, false)...))
	want := set([]netip.AddrPort{peer4(1), peer4(4), peer6(5)})
	if !maps_equal(got, want) {
		t.Errorf("peers %v; want %v", got, want)
	}
	if _, n := s.Len(); n != 3 {
		t.Errorf("%d peers; want 3", n)
	}
	mustCheck(t, s)
}

func maps_equal(a, b map[netip.AddrPort]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

func TestInfohashCap(t *testing.T) {
	s, clk := newTestStore(t, Config{MaxInfohashes: 2})
	s.Announce(ih(1), peer4(1), false)
	clk.Step(time.Second)
	s.Announce(ih(2), peer4(1), false)
	clk.Step(time.Second)
	s.Announce(ih(1), peer4(2), false) // ih(2) now has the oldest announce
	clk.Step(time.Second)
	s.Announce(ih(3), peer4(1), false) // evicts ih(2)
	if s.Peers(ih(2), IPv4, 10, false) != nil {
		t.Errorf("ih(2) not evicted")
	}
	if len(s.Peers(ih(1), IPv4, 10, false)) != 2 || len(s.Peers(ih(3), IPv4, 10, false)) != 1 {
		t.Errorf("wrong infohash evicted")
	}
	if n, p := s.Len(); n != 2 || p != 3 {
		t.Errorf("Len = %d, %d; want 2, 3", n, p)
	}
	mustCheck(t, s)
}

func TestExpireFreesInfohashes(t *testing.T) {
	const ttl = 30 * time.Minute
	s, clk := newTestStore(t, Config{TTL: ttl})
	for i := range 10 {
		s.Announce(ih(i), peer4(i), false)
		s.Announce(ih(i), peer6(i), true)
	}
	clk.Step(ttl / 2)
	s.Announce(ih(3), peer4(100), false) // ih(3) keeps one live peer
	clk.Step(ttl / 2)
	s.Expire()
	if n, p := s.Len(); n != 1 || p != 1 {
		t.Errorf("Len after Expire = %d, %d; want 1, 1", n, p)
	}
	mustCheck(t, s)
	clk.Step(ttl)
	s.Expire()
	if n, p := s.Len(); n != 0 || p != 0 {
		t.Errorf("Len after second Expire = %d, %d; want 0, 0", n, p)
	}
	if len(s.swarms) != 0 || s.oldest != nil || s.newest != nil {
		t.Errorf("structures not empty")
	}
}

// TestAnnounceDropsExpired checks that memory is reclaimed without Expire:
// an Announce drops the infohashes whose peers have all expired.
func TestAnnounceDropsExpired(t *testing.T) {
	const ttl = time.Minute
	s, clk := newTestStore(t, Config{TTL: ttl})
	for i := range 1000 {
		s.Announce(ih(i), peer4(i), false)
	}
	clk.Step(ttl)
	s.Announce(ih(5000), peer4(1), false)
	if n, p := s.Len(); n != 1 || p != 1 {
		t.Errorf("Len = %d, %d; want 1, 1", n, p)
	}
	mustCheck(t, s)
}

func TestShrink(t *testing.T) {
	const ttl = time.Minute
	s, clk := newTestStore(t, Config{TTL: ttl})
	for i := range 1000 {
		s.Announce(ih(1), peer4(i), false)
	}
	clk.Step(ttl / 2)
	for i := range 3 {
		s.Announce(ih(1), peer4(i), false)
	}
	clk.Step(ttl / 2)
	if got := s.Peers(ih(1), IPv4, 100, false); len(got) != 3 {
		t.Fatalf("%d live peers; want 3", len(got))
	}
	mustCheck(t, s)
	if c := cap(s.swarms[ih(1)].fam[IPv4].peers); c > minShrinkCap {
		t.Errorf("peer slice capacity %d after expiry", c)
	}
}

func TestClockBackwards(t *testing.T) {
	s, clk := newTestStore(t, Config{TTL: time.Minute})
	clk.Step(time.Hour)
	s.Announce(ih(1), peer4(1), false)
	clk.Step(-30 * time.Minute)
	s.Announce(ih(1), peer4(2), false)
	s.Announce(ih(2), peer4(2), false)
	mustCheck(t, s)
	// Time stands still until the clock passes its latest reading.
	clk.Step(30*time.Minute + time.Minute - 1)
	if got := s.Peers(ih(1), IPv4, 10, false); len(got) != 2 {
		t.Errorf("got %v; want both peers live", got)
	}
	clk.Step(1)
	s.Expire()
	if n, p := s.Len(); n != 0 || p != 0 {
		t.Errorf("Len = %d, %d; want 0, 0", n, p)
	}
}

func TestScrape(t *testing.T) {
	const ttl = time.Minute
	s, clk := newTestStore(t, Config{TTL: ttl})
	if sd, pe := s.Scrape(ih(1)); sd != (Bloom{}) || pe != (Bloom{}) {
		t.Errorf("unknown infohash: non-empty filters")
	}
	s.Announce(ih(1), peer4(1), true)
	s.Announce(ih(1), peer6(2), true)
	s.Announce(ih(1), peer4(3), false)
	s.Announce(ih(1), netip.AddrPortFrom(peer4(3).Addr(), 1234), false) // same IP, counted once
	clk.Step(ttl / 2)
	s.Announce(ih(1), peer6(4), false)
	sd, pe := s.Scrape(ih(1))
	var wantSd, wantPe Bloom
	wantSd.Add(peer4(1).Addr())
	wantSd.Add(peer6(2).Addr())
	wantPe.Add(peer4(3).Addr())
	wantPe.Add(peer6(4).Addr())
	if sd != wantSd || pe != wantPe {
		t.Errorf("Scrape filters differ from the expected ones")
	}
	clk.Step(ttl / 2) // all but peer6(4) expire
	sd, pe = s.Scrape(ih(1))
	wantPe = Bloom{}
	wantPe.Add(peer6(4).Addr())
	if sd != (Bloom{}) || pe != wantPe {
		t.Errorf("Scrape includes expired peers")
	}
}

func TestConcurrent(t *testing.T) {
	s, err := New(Config{TTL: 50 * time.Millisecond, MaxInfohashes: 8, MaxPeersPerInfohash: 16})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			buf := make([]netip.AddrPort, 0, 8)
			for i := range 2000 {
				h := ih(rng.IntN(12))
				switch i % 8 {
				case 0:
					buf = s.AppendPeers(buf[:0], h, IPv6, 8, true)
				case 1:
					s.Peers(h, IPv4, 8, false)
				case 2:
					s.Scrape(h)
				case 3:
					if g == 0 {
						s.Expire()
					}
					s.Len()
				default:
					p := peer4(rng.IntN(40))
					if rng.IntN(2) == 0 {
						p = peer6(rng.IntN(40))
					}
					s.Announce(h, p, rng.IntN(2) == 0)
				}
			}
		}()
	}
	wg.Wait()
	mustCheck(t, s)
}

func TestAppendPeersAllocs(t *testing.T) {
	s, _ := newTestStore(t, Config{})
	for i := range 500 {
		s.Announce(ih(1), peer4(i), i%2 == 0)
	}
	buf := make([]netip.AddrPort, 0, 50)
	allocs := testing.AllocsPerRun(100, func() {
		buf = s.AppendPeers(buf[:0], ih(1), IPv4, 50, true)
		s.Announce(ih(1), peer4(7), false) // re-announce
	})
	if allocs != 0 {
		t.Errorf("AppendPeers + re-Announce: %v allocations per run", allocs)
	}
}

// TestModel runs a random workload against a plain reference model of the
// documented rules and compares the live peers of every infohash after each
// step, checking the internal invariants (caps included) as it goes.
func TestModel(t *testing.T) {
	const (
		ttl      = 10 * time.Minute
		maxIH    = 5
		maxPeers = 7
		steps    = 4000
	)
	// With short steps the caps are hit all the time; with long ones
	// expiry does most of the work.
	var evictedIH, evictedPeers, expired int
	for _, maxStep := range []time.Duration{10 * time.Second, 30 * time.Second, 2 * time.Minute} {
		s, clk := newTestStore(t, Config{TTL: ttl, MaxInfohashes: maxIH, MaxPeersPerInfohash: maxPeers})
		m := newModel(int64(ttl), maxIH, maxPeers)
		rng := rand.New(rand.NewPCG(1, uint64(maxStep)))
		now := int64(0)
		for step := range steps {
			// Strictly increasing time keeps "oldest" unambiguous.
			d := 1 + rng.Int64N(int64(maxStep))
			clk.Step(time.Duration(d))
			now += d
			h := ih(rng.IntN(maxIH + 2))
			switch op := rng.IntN(10); {
			case op < 7:
				var p netip.AddrPort
				if rng.IntN(3) == 0 {
					p = peer6(rng.IntN(2 * maxPeers))
				} else {
					p = peer4(rng.IntN(2 * maxPeers))
				}
				seed := rng.IntN(4) == 0
				s.Announce(h, p, seed)
				m.announce(now, h, p, seed)
			case op < 9:
				fam := Family(rng.IntN(2))
				noSeed := rng.IntN(2) == 0
				got := set(s.Peers(h, fam, 100, noSeed))
				want := m.peers(now, h, fam, noSeed)
				if !maps_equal(got, want) {
					t.Fatalf("step %d: Peers(%s, %v, noSeed=%v) = %v; model %v", step, h, fam, noSeed, got, want)
				}
			default:
				s.Expire()
				nih, np := s.Len()
				mih, mp := m.len(now)
				if nih != mih || np != mp {
					t.Fatalf("step %d: Len after Expire = %d, %d; model %d, %d", step, nih, np, mih, mp)
				}
			}
			mustCheck(t, s)
			if n, p := s.Len(); n > maxIH || p > maxIH*maxPeers {
				t.Fatalf("step %d: Len = %d, %d beyond the caps", step, n, p)
			}
		}
		t.Logf("max step %v: %d infohash evictions, %d peer replacements, %d expiries",
			maxStep, m.evictedIH, m.evictedPeers, m.expired)
		evictedIH += m.evictedIH
		evictedPeers += m.evictedPeers
		expired += m.expired
	}
	if evictedIH < 100 || evictedPeers < 100 || expired < 100 {
		t.Errorf("the workload did not exercise both caps and expiry enough")
	}
}

// model is a slow, obviously correct implementation of the store's rules.
type model struct {
	ttl             int64
	maxIH, maxPeers int
	swarms          map[krpc.ID]map[netip.AddrPort]mpeer

	evictedIH, evictedPeers, expired int // coverage counters
}

type mpeer struct {
	at   int64
	seed bool
}

func newModel(ttl int64, maxIH, maxPeers int) *model {
	return &model{ttl: ttl, maxIH: maxIH, maxPeers: maxPeers, swarms: map[krpc.ID]map[netip.AddrPort]mpeer{}}
}

func (m *model) prune(now int64) {
	for h, sw := range m.swarms {
		for p, e := range sw {
			if e.at <= now-m.ttl {
				delete(sw, p)
				m.expired++
			}
		}
		if len(sw) == 0 {
			delete(m.swarms, h)
		}
	}
}

func (m *model) announce(now int64, h krpc.ID, p netip.AddrPort, seed bool) {
	m.prune(now)
	sw := m.swarms[h]
	if sw == nil {
		if len(m.swarms) >= m.maxIH {
			var victim krpc.ID
			oldest := int64(-1)
			for h2, sw2 := range m.swarms {
				last := int64(-1)
				for _, e := range sw2 {
					last = max(last, e.at)
				}
				if oldest < 0 || last < oldest {
					victim, oldest = h2, last
				}
			}
			delete(m.swarms, victim)
			m.evictedIH++
		}
		sw = map[netip.AddrPort]mpeer{}
		m.swarms[h] = sw
	}
	if _, ok := sw[p]; !ok && len(sw) >= m.maxPeers {
		var victim netip.AddrPort
		oldest := int64(-1)
		for p2, e := range sw {
			if oldest < 0 || e.at < oldest {
				victim, oldest = p2, e.at
			}
		}
		delete(sw, victim)
		m.evictedPeers++
	}
	sw[p] = mpeer{at: now, seed: seed}
}

func (m *model) peers(now int64, h krpc.ID, fam Family, noSeed bool) map[netip.AddrPort]bool {
	m.prune(now)
	out := map[netip.AddrPort]bool{}
	for p, e := range m.swarms[h] {
		if FamilyOf(p.Addr()) == fam && !(noSeed && e.seed) {
			out[p] = true
		}
	}
	return out
}

func (m *model) len(now int64) (int, int) {
	m.prune(now)
	n := 0
	for _, sw := range m.swarms {
		n += len(sw)
	}
	return len(m.swarms), n
}

func TestSampleInfohashes(t *testing.T) {
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	all := map[krpc.ID]bool{}
	for i := range 100 {
		var ih krpc.ID
		ih[0], ih[1] = byte(i), 1
		all[ih] = true
		s.Announce(ih, netip.MustParseAddrPort("127.0.0.1:6881"), false)
	}
	counts := map[krpc.ID]int{}
	const rounds = 2000
	for range rounds {
		got, num := s.SampleInfohashes(nil, 20)
		if num != 100 || len(got) != 20 {
			t.Fatalf("got %d samples of %d, want 20 of 100", len(got), num)
		}
		dup := map[krpc.ID]bool{}
		for _, ih := range got {
			if !all[ih] || dup[ih] {
				t.Fatalf("sample holds %v: unknown or repeated", ih)
			}
			dup[ih] = true
			counts[ih]++
		}
	}
	// Uniform: each infohash is drawn with probability 0.2, 400 times in
	// expectation (sd ~18); 6 sd either way is a fault.
	for ih := range all {
		if c := counts[ih]; c < 290 || c > 510 {
			t.Errorf("infohash %v drawn %d times in %d samples, want about 400", ih, c, rounds)
		}
	}
	if got, num := s.SampleInfohashes(nil, 500); len(got) != 100 || num != 100 {
		t.Errorf("asking for more than held: %d of %d", len(got), num)
	}
}
