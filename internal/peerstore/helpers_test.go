package peerstore

import (
	"fmt"
	"github.com/lightdht/lightdht/internal/clocktest"
	"net/netip"
	"testing"
	"time"

	"github.com/lightdht/lightdht/krpc"
)

// fakeClock is the stepped clock the tests pass as Config.Now.
type fakeClock = clocktest.Clock

func newClock() *fakeClock { return clocktest.New(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)) }

func newTestStore(t testing.TB, cfg Config) (*Store, *fakeClock) {
	t.Helper()
	clk := newClock()
	cfg.Now = clk.Now
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s, clk
}

func ih(n int) krpc.ID {
	var id krpc.ID
	id[0], id[1], id[19] = byte(n>>8), byte(n), 0xaa
	return id
}

func peer4(n int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, byte(n >> 8), byte(n)}), 6881)
}

func peer6(n int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(n >> 8), 15: byte(n)}), 6881)
}

func set(ps []netip.AddrPort) map[netip.AddrPort]bool {
	m := make(map[netip.AddrPort]bool, len(ps))
	for _, p := range ps {
		m[p] = true
	}
	return m
}

// check verifies every internal invariant of s.
func (s *Store) check() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.swarms) > s.maxIH {
		return fmt.Errorf("%d infohashes, cap %d", len(s.swarms), s.maxIH)
	}
	seen := map[*swarm]bool{}
	var prev *swarm
	total := 0
	for sw := s.oldest; sw != nil; sw = sw.next {
		if sw.prev != prev {
			return fmt.Errorf("swarm %s: bad prev link", sw.ih)
		}
		if seen[sw] {
			return fmt.Errorf("swarm %s: list cycle", sw.ih)
		}
		seen[sw] = true
		if s.swarms[sw.ih] != sw {
			return fmt.Errorf("swarm %s in list but not in map", sw.ih)
		}
		if prev != nil && prev.last > sw.last {
			return fmt.Errorf("swarm list not in announce order")
		}
		if err := sw.check(s.maxPeers); err != nil {
			return fmt.Errorf("swarm %s: %v", sw.ih, err)
		}
		total += sw.len()
		prev = sw
	}
	if s.newest != prev {
		return fmt.Errorf("bad newest swarm")
	}
	if len(seen) != len(s.swarms) {
		return fmt.Errorf("%d swarms in list, %d in map", len(seen), len(s.swarms))
	}
	if total != s.npeers {
		return fmt.Errorf("npeers %d, counted %d", s.npeers, total)
	}
	return nil
}

func (sw *swarm) check(maxPeers int) error {
	if sw.len() == 0 || sw.len() > maxPeers {
		return fmt.Errorf("%d peers, cap %d", sw.len(), maxPeers)
	}
	if len(sw.index) != sw.len() {
		return fmt.Errorf("index has %d keys, %d peers", len(sw.index), sw.len())
	}
	for f := range sw.fam {
		fm := &sw.fam[f]
		n := 0
		prev := int32(-1)
		for i := fm.oldest; i >= 0; i = fm.peers[i].next {
			if n++; n > len(fm.peers) {
				return fmt.Errorf("family %d: list cycle", f)
			}
			e := &fm.peers[i]
			if e.prev != prev {
				return fmt.Errorf("family %d: bad prev link at %d", f, i)
			}
			if prev >= 0 && fm.peers[prev].at > e.at {
				return fmt.Errorf("family %d: list not in announce order", f)
			}
			if j, ok := sw.index[e.key]; !ok || j != i {
				return fmt.Errorf("family %d: index of %v is %d, %v; want %d", f, e.key.addrPort(), j, ok, i)
			}
			if familyOfKey(e.key) != Family(f) {
				return fmt.Errorf("%v filed under family %d", e.key.addrPort(), f)
			}
			if e.bloom != bloomIndexes(e.key.addrPort().Addr()) {
				return fmt.Errorf("%v: wrong Bloom indexes", e.key.addrPort())
			}
			if sw.last < e.at {
				return fmt.Errorf("peer newer than swarm")
			}
			prev = i
		}
		seeds := 0
		for i := range fm.peers {
			if fm.peers[i].seed {
				seeds++
			}
		}
		if seeds != fm.seeds {
			return fmt.Errorf("family %d: %d seeds, counted %d", f, fm.seeds, seeds)
		}
		if n != len(fm.peers) || fm.newest != prev {
			return fmt.Errorf("family %d: list has %d of %d peers", f, n, len(fm.peers))
		}
	}
	return nil
}

func mustCheck(t testing.TB, s *Store) {
	t.Helper()
	if err := s.check(); err != nil {
		t.Fatal(err)
	}
}
