package peerstore

import (
	"net/netip"
	"testing"
	"time"
)

// BenchmarkAnnounce re-announces peers of a full 2,000-peer infohash (the
// steady state of a popular torrent).
func BenchmarkAnnounce(b *testing.B) {
	s, clk := newTestStore(b, Config{})
	for i := range DefaultMaxPeersPerInfohash {
		s.Announce(ih(1), peer4(i), false)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		clk.Step(time.Millisecond)
		s.Announce(ih(1), peer4(i%DefaultMaxPeersPerInfohash), i%4 == 0)
		i++
	}
}

// BenchmarkAnnounceNewPeer adds new peers to a full infohash, each one
// replacing the oldest.
func BenchmarkAnnounceNewPeer(b *testing.B) {
	s, clk := newTestStore(b, Config{MaxPeersPerInfohash: 500})
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		clk.Step(time.Millisecond)
		s.Announce(ih(1), peer4(i%60000), false)
		i++
	}
}

// BenchmarkAnnounceNewInfohash announces new infohashes into a full store,
// each one evicting the least recently announced.
func BenchmarkAnnounceNewInfohash(b *testing.B) {
	s, clk := newTestStore(b, Config{MaxInfohashes: 1000})
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		clk.Step(time.Millisecond)
		s.Announce(ih(i%60000), peer4(1), false)
		i++
	}
}

func benchPeers(b *testing.B, n, max int, noSeed, appendTo bool) {
	s, _ := newTestStore(b, Config{})
	for i := range n {
		s.Announce(ih(1), peer4(i), i%2 == 0)
	}
	buf := make([]netip.AddrPort, 0, max)
	b.ReportAllocs()
	for b.Loop() {
		if appendTo {
			buf = s.AppendPeers(buf[:0], ih(1), IPv4, max, noSeed)
		} else {
			buf = s.Peers(ih(1), IPv4, max, noSeed)
		}
	}
}

func BenchmarkPeers(b *testing.B) {
	b.Run("n=2000/max=50", func(b *testing.B) { benchPeers(b, 2000, 50, false, false) })
	b.Run("n=2000/max=50/noSeed", func(b *testing.B) { benchPeers(b, 2000, 50, true, false) })
	b.Run("n=20/max=50", func(b *testing.B) { benchPeers(b, 20, 50, false, false) })
}

func BenchmarkAppendPeers(b *testing.B) {
	b.Run("n=2000/max=50", func(b *testing.B) { benchPeers(b, 2000, 50, false, true) })
	b.Run("n=2000/max=50/noSeed", func(b *testing.B) { benchPeers(b, 2000, 50, true, true) })
	b.Run("n=20/max=50", func(b *testing.B) { benchPeers(b, 20, 50, false, true) })
}

func BenchmarkScrape(b *testing.B) {
	s, _ := newTestStore(b, Config{})
	for i := range 2000 {
		s.Announce(ih(1), peer4(i), i%2 == 0)
	}
	b.ReportAllocs()
	for b.Loop() {
		s.Scrape(ih(1))
	}
}
