package peerstore

import (
	"encoding/hex"
	"fmt"
	"math"
	"net/netip"
	"testing"
)

// The test vectors of BEP 33 (also used by libtorrent's test suite): the
// 256 addresses 192.0.2.0 to 192.0.2.255, then the 1,000 addresses
// 2001:db8:: to 2001:db8::3e7.
const (
	bep33Hex4  = "24c0004020043000102012743e00480037110820422110008000c0e302854835a05401a4045021302a306c060001881002d8a0a3a8001901b40a800900310008d2108110c2496a0028700010d804188b01415200082004088026411104a804048002002000080680828c400080cc40020c042c0494447280928041402104080d4240040414a41f0205654800b0811830d2020042b002c5800004a71d0204804a0028120a004c10017801490b834004044106005421000c86900a0020500203510060144e900100924a1018141a028012913f0041802250042280481200002004430804210101c08111c10801001080002038008211004266848606b035001048"
	bep33Hex46 = "f6c3f5eaa07ffd91bde89f777f26fb2bff37bdb8fb2bbaa2fd3ddde7bacfff75ee7ccbaefe5eedb1fbfaff67f6abff5e43ddbca3fd9b9ffdf4ffd3e9dff12d1bdf59db53dbe9fa5b7ff3b8fdfcde1afb8bedd7be2f3ee71ebbbfe93bcdeefe148246c2bc5dbff7e7efdcf24fd8dc7adffd8fffdfddfff7a4bbeedf5cb95ce81fc7fcff1ff4ffffdfe5f7fdcbb7fd79b3fa1fc77bfe07fff905b7b7ffc7fefeffe0b8370bb0cd3f5b7f2bd93feb4386cfdd6f7fd5bfaf2e9ebffffeecd67adbf7c67f17efd5d75eba6ffeba7fff47a91eb1bfbb53e8abfb5762abe8ff237279bfefbfeef5ffc5febfdfe5adffadfee1fb737ffffbfd9f6aeffeee76b6fd8f72ef"
)

func TestBloomVectors(t *testing.T) {
	var b Bloom
	for i := range 256 {
		b.Add(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}))
	}
	if got := hex.EncodeToString(b[:]); got != bep33Hex4 {
		t.Errorf("IPv4 filter = %s; want %s", got, bep33Hex4)
	}
	if e := b.Estimate(); math.Abs(e-257.854) > 0.001 {
		t.Errorf("IPv4 estimate = %.4f; want 257.854", e)
	}
	for i := range 1000 {
		b.Add(netip.MustParseAddr(fmt.Sprintf("2001:db8::%x", i)))
	}
	if got := hex.EncodeToString(b[:]); got != bep33Hex46 {
		t.Errorf("IPv4+IPv6 filter = %s; want %s", got, bep33Hex46)
	}
	if e := b.Estimate(); math.Abs(e-1224.93) > 0.005 {
		t.Errorf("IPv4+IPv6 estimate = %.4f; want 1224.93", e)
	}
}

func TestBloom(t *testing.T) {
	var b Bloom
	if b.Estimate() != 0 {
		t.Errorf("empty estimate %v", b.Estimate())
	}
	b.Add(netip.Addr{}) // ignored
	if b != (Bloom{}) {
		t.Errorf("invalid address changed the filter")
	}
	// 192.168.0.0/22: 1,024 addresses; the estimate should be close.
	var a, c Bloom
	for i := range 1024 {
		ip := netip.AddrFrom4([4]byte{192, 168, byte(i >> 8), byte(i)})
		if i%2 == 0 {
			a.Add(ip)
		} else {
			c.Add(ip)
		}
	}
	a.Merge(&c)
	if e := a.Estimate(); e < 0.9*1024 || e > 1.1*1024 {
		t.Errorf("estimate for 1024 addresses = %.1f", e)
	}
	for i := range 1024 {
		if !a.Contains(netip.AddrFrom4([4]byte{192, 168, byte(i >> 8), byte(i)})) {
			t.Fatalf("added address %d missing", i)
		}
	}
	// Mapped and plain IPv4 are the same address.
	var m, p Bloom
	m.Add(netip.MustParseAddr("::ffff:192.0.2.7"))
	p.Add(netip.MustParseAddr("192.0.2.7"))
	if m != p || !m.Contains(netip.MustParseAddr("192.0.2.7")) || m.Contains(netip.Addr{}) {
		t.Errorf("IPv4-mapped address hashed differently")
	}
	var full Bloom
	for i := range full {
		full[i] = 0xff
	}
	if e := full.Estimate(); math.IsInf(e, 0) || e < 7800 || e > 7810 {
		t.Errorf("saturated estimate = %v; want about 7806", e)
	}
}
