package peerstore_test

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/lightdht/lightdht/internal/peerstore"
	"github.com/lightdht/lightdht/krpc"
)

func Example() {
	// A stepped clock stands in for time.Now so the example is
	// deterministic.
	now := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	s, err := peerstore.New(peerstore.Config{Now: func() time.Time { return now }})
	if err != nil {
		panic(err)
	}
	ih, _ := krpc.ParseID("c12fe1c06bba254a9dc9f519b335aa7c1367a88a")

	// announce_peer, after the token check: the peer is the querier's IP
	// with the announced port (or the UDP source port with implied_port).
	s.Announce(ih, netip.MustParseAddrPort("198.51.100.4:6881"), false)
	s.Announce(ih, netip.MustParseAddrPort("198.51.100.9:51413"), true)
	s.Announce(ih, netip.MustParseAddrPort("[2001:db8::7]:6881"), false)

	// get_peers over IPv4 gets IPv4 peers (BEP 32); noseed=1 drops seeds
	// (BEP 33). A node asks for about 50 to fit one UDP packet.
	querier := netip.MustParseAddrPort("203.0.113.1:4000")
	fam := peerstore.FamilyOf(querier.Addr())
	fmt.Println(fam, "peers, no seeds:", s.Peers(ih, fam, 50, true))
	fmt.Println("IPv6 peers:", s.Peers(ih, peerstore.IPv6, 50, false))

	// BEP 33 scrape: Bloom filters of seeds and of the other peers.
	seeds, peers := s.Scrape(ih)
	fmt.Printf("scrape: ~%.0f seeds, ~%.0f peers\n", seeds.Estimate(), peers.Estimate())

	// Peers expire 30 minutes after their last announce.
	now = now.Add(30 * time.Minute)
	s.Expire()
	fmt.Println(s.Len())
	// Output:
	// IPv4 peers, no seeds: [198.51.100.4:6881]
	// IPv6 peers: [[2001:db8::7]:6881]
	// scrape: ~1 seeds, ~2 peers
	// 0 0
}
