package bep42_test

import (
	"fmt"
	"net/netip"

	"github.com/lightdht/lightdht/bep42"
	"github.com/lightdht/lightdht/krpc"
)

func Example() {
	// Our external address, as reported by other nodes (BEP 42's "ip"
	// key). Generate picks a random conforming ID; Derive is the
	// deterministic form used here so the output is stable.
	ip := netip.MustParseAddr("124.31.75.21")
	base, _ := krpc.ParseID("000000f10c5d6a4ec8a88e4c6ab4c28b95eee401")
	id := bep42.Derive(ip, base)
	fmt.Println("our ID:", id)

	// Checking the ID another node uses.
	fmt.Println("valid for its address:", bep42.Valid(id, ip))
	fmt.Println("valid for another:", bep42.Valid(id, netip.MustParseAddr("21.75.31.124")))

	// Nodes on local networks are exempt.
	lan := netip.MustParseAddr("192.168.1.20")
	fmt.Println("LAN node exempt:", bep42.Exempt(lan), bep42.Acceptable(id, lan))
	// Output:
	// our ID: 5fbfb8f10c5d6a4ec8a88e4c6ab4c28b95eee401
	// valid for its address: true
	// valid for another: false
	// LAN node exempt: true true
}
