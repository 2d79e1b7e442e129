package crawler

import "net/netip"

// bogon reports whether a is an address that has no business on the
// public DHT: unspecified, loopback, private, link-local, multicast,
// carrier-grade NAT, documentation, benchmarking or reserved ranges.
func bogon(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() || a.IsUnspecified() || a.IsLoopback() || a.IsPrivate() || a.IsMulticast() ||
		a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast() {
		return true
	}
	for _, p := range bogonPrefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// bogonPrefixes are the ranges bogon rejects that netip has no method for.
var bogonPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),   // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // documentation
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, and broadcast
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("64:ff9b::/96"),    // NAT64
	netip.MustParsePrefix("100::/64"),        // discard
}

// addrKey is a compact map key: the 16-byte address and the port.
type addrKey [18]byte

// keyOf returns the key of ap; an IPv4-mapped IPv6 address has the key of
// the IPv4 address.
func keyOf(ap netip.AddrPort) addrKey {
	var k addrKey
	a := ap.Addr().Unmap().As16()
	copy(k[:16], a[:])
	k[16], k[17] = byte(ap.Port()>>8), byte(ap.Port())
	return k
}

// addrPort returns the address and port k holds.
func (k addrKey) addrPort() netip.AddrPort {
	a := netip.AddrFrom16([16]byte(k[:16])).Unmap()
	return netip.AddrPortFrom(a, uint16(k[16])<<8|uint16(k[17]))
}

// ip returns the address part of k, the unit of the per-IP interval.
func (k addrKey) ip() [16]byte { return [16]byte(k[:16]) }
