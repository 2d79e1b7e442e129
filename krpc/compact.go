package krpc

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
)

// Lengths of the compact encodings of BEP 5 and BEP 32.
const (
	CompactPeerLen4 = 4 + 2          // IPv4 address and port
	CompactPeerLen6 = 16 + 2         // IPv6 address and port
	CompactNodeLen4 = IDLen + 4 + 2  // ID, IPv4 address and port
	CompactNodeLen6 = IDLen + 16 + 2 // ID, IPv6 address and port
)

// NodeInfo is a node's ID and UDP address, as carried in compact node lists.
type NodeInfo struct {
	ID   ID
	Addr netip.AddrPort
}

// String formats the node as "ID@addr".
func (n NodeInfo) String() string { return n.ID.String() + "@" + n.Addr.String() }

// Is6 reports whether the node has an IPv6 (not IPv4-mapped) address.
func (n NodeInfo) Is6() bool { return n.Addr.Addr().Is6() && !n.Addr.Addr().Is4In6() }

// AppendCompactPeer appends the compact peer info of ap: 6 bytes for an IPv4
// (or IPv4-mapped) address, 18 bytes for IPv6. An invalid address is an error.
func AppendCompactPeer(dst []byte, ap netip.AddrPort) ([]byte, error) {
	a := ap.Addr()
	switch {
	case !a.IsValid():
		return dst, fmt.Errorf("compact peer: invalid address %v", ap)
	case a.Is4() || a.Is4In6():
		b := a.Unmap().As4()
		dst = append(dst, b[:]...)
	default:
		b := a.As16()
		dst = append(dst, b[:]...)
	}
	return binary.BigEndian.AppendUint16(dst, ap.Port()), nil
}

// ParseCompactPeer decodes one compact peer info of exactly 6 or 18 bytes.
func ParseCompactPeer(b []byte) (netip.AddrPort, error) {
	switch len(b) {
	case CompactPeerLen4:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[:4])), binary.BigEndian.Uint16(b[4:])), nil
	case CompactPeerLen6:
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[:16])), binary.BigEndian.Uint16(b[16:])), nil
	default:
		return netip.AddrPort{}, fmt.Errorf("compact peer: length %d, want %d or %d", len(b), CompactPeerLen4, CompactPeerLen6)
	}
}

// AppendCompactNodes appends the compact node info of each node: 26-byte
// entries (the "nodes" key) when v6 is false, 38-byte entries ("nodes6")
// when it is true. An IPv4 address cannot go in the IPv6 list nor an IPv6
// one in the IPv4 list; an IPv4-mapped IPv6 address fits either. On error
// dst is returned unchanged.
func AppendCompactNodes(dst []byte, nodes []NodeInfo, v6 bool) ([]byte, error) {
	orig := dst
	for _, n := range nodes {
		a := n.Addr.Addr()
		switch {
		case !a.IsValid():
			return orig, fmt.Errorf("compact nodes: node %v has no address", n.ID)
		case v6 && a.Is4():
			return orig, fmt.Errorf("compact nodes: IPv4 address %v in the IPv6 list", n.Addr)
		case !v6 && !a.Is4() && !a.Is4In6():
			return orig, fmt.Errorf("compact nodes: IPv6 address %v in the IPv4 list", n.Addr)
		}
		dst = append(dst, n.ID[:]...)
		if v6 {
			b := a.As16()
			dst = append(dst, b[:]...)
		} else {
			b := a.Unmap().As4()
			dst = append(dst, b[:]...)
		}
		dst = binary.BigEndian.AppendUint16(dst, n.Addr.Port())
	}
	return dst, nil
}

// ParseCompactNodes decodes a compact node list, appending to dst. The
// length of b must be an exact multiple of the entry size (26 bytes, or 38
// with v6); anything else is an error and dst is returned unchanged.
func ParseCompactNodes(dst []NodeInfo, b []byte, v6 bool) ([]NodeInfo, error) {
	size := CompactNodeLen4
	if v6 {
		size = CompactNodeLen6
	}
	if len(b)%size != 0 {
		return dst, fmt.Errorf("compact nodes: length %d is not a multiple of %d", len(b), size)
	}
	dst = slices.Grow(dst, len(b)/size)
	for i := 0; i < len(b); i += size {
		var n NodeInfo
		copy(n.ID[:], b[i:i+IDLen])
		n.Addr, _ = ParseCompactPeer(b[i+IDLen : i+size])
		dst = append(dst, n)
	}
	return dst, nil
}
