package bep42

import (
	"encoding/binary"
	"hash/crc32"
	"net/netip"

	"github.com/lightdht/lightdht/krpc"
)

// PrefixBits is the number of leading node ID bits that BEP 42 derives from
// the node's IP address.
const PrefixBits = 21

// PrefixMask selects the [PrefixBits] leading bits of a 32-bit big-endian
// number, such as the first four bytes of a node ID or a value returned by
// [Prefix].
const PrefixMask uint32 = 0xfffff800 // the top PrefixBits bits set

// Masks applied to the address bytes before hashing.
var (
	mask4 = [4]byte{0x03, 0x0f, 0x3f, 0xff}
	mask6 = [8]byte{0x01, 0x03, 0x07, 0x0f, 0x1f, 0x3f, 0x7f, 0xff}
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crc32c is the CRC-32C of b, computed bytewise with the standard library's
// table. Calling crc32.Checksum instead makes the caller's array escape to
// the heap; at 4 or 8 bytes the loop is as fast.
func crc32c(b []byte) uint32 {
	crc := ^uint32(0)
	for _, c := range b {
		crc = castagnoli[byte(crc)^c] ^ crc>>8
	}
	return ^crc
}

// Prefix returns the BEP 42 prefix for address ip and random byte r: the
// CRC-32C of the masked address with the low 3 bits of r in the top bits of
// its first byte, with the low 32-[PrefixBits] bits cleared. A conforming
// node ID id satisfies
//
//	binary.BigEndian.Uint32(id[:4])&PrefixMask == prefix
//
// Only r&7 matters; the other bits of r are ignored. An IPv4-mapped address
// is hashed as the IPv4 address. ok is false, and prefix 0, when ip is not
// valid (the zero [netip.Addr]). Prefix does not consult [Exempt].
func Prefix(ip netip.Addr, r byte) (prefix uint32, ok bool) {
	var crc uint32
	switch {
	case !ip.IsValid():
		return 0, false
	case ip.Is4() || ip.Is4In6():
		b := ip.Unmap().As4()
		for i := range b {
			b[i] &= mask4[i]
		}
		b[0] |= (r & 7) << 5
		crc = crc32c(b[:])
	default:
		a := ip.As16()
		var b [8]byte
		for i := range b {
			b[i] = a[i] & mask6[i]
		}
		b[0] |= (r & 7) << 5
		crc = crc32c(b[:])
	}
	return crc & PrefixMask, true
}

// Derive returns base with its first [PrefixBits] bits replaced by the
// BEP 42 prefix for ip, using base[19] as the random byte r. All other bits
// of base, including the low 3 bits of base[2] and all of base[19], are
// kept, so the result is a random conforming ID when base is random, and
// Derive(ip, id) == id exactly when [Valid](id, ip).
//
// If ip is not valid, Derive returns base unchanged (a random, unconstrained
// ID when base is random). Derive does not consult [Exempt]: a node on a
// local network may still use a conforming ID.
func Derive(ip netip.Addr, base krpc.ID) krpc.ID {
	p, ok := Prefix(ip, base[19])
	if !ok {
		return base
	}
	id := base
	id[0] = byte(p >> 24)
	id[1] = byte(p >> 16)
	id[2] = byte(p>>8)&0xf8 | base[2]&0x07
	return id
}

// Generate returns a new random node ID that conforms to BEP 42 for ip:
// [Derive] applied to [krpc.RandomID]. If ip is not valid, the ID is random
// and unconstrained.
func Generate(ip netip.Addr) krpc.ID {
	return Derive(ip, krpc.RandomID())
}

// Valid reports whether id conforms to BEP 42 for address ip: whether its
// first [PrefixBits] bits equal [Prefix](ip, id[19]). It is false when ip is
// not valid. Valid does not consult [Exempt]; use [Acceptable] for the check
// a node applies to others. Valid does not allocate.
func Valid(id krpc.ID, ip netip.Addr) bool {
	p, ok := Prefix(ip, id[19])
	return ok && binary.BigEndian.Uint32(id[:4])&PrefixMask == p
}

// Acceptable reports whether BEP 42 allows a node at address ip to use id:
// true when ip is [Exempt] or id is [Valid] for ip.
func Acceptable(id krpc.ID, ip netip.Addr) bool {
	return Exempt(ip) || Valid(id, ip)
}

// Exempt reports whether ip is a local address to which BEP 42 does not
// apply. The list is
//
//	IPv4 (from BEP 42):     10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16,
//	                        169.254.0.0/16, 127.0.0.0/8
//	IPv6 (their analogues): ::1/128 (loopback), fe80::/10 (link-local),
//	                        fc00::/7 (unique local)
//
// An IPv4-mapped address is judged as the IPv4 address. Everything else is
// not exempt, including the zero Addr, unspecified addresses (0.0.0.0, ::),
// 100.64.0.0/10 (carrier-grade NAT: a node behind it is seen under a public
// address), multicast and documentation ranges.
func Exempt(ip netip.Addr) bool {
	ip = ip.Unmap()
	// For both families, IsPrivate is 10/8, 172.16/12, 192.168/16 and
	// fc00::/7, IsLoopback is 127/8 and ::1, IsLinkLocalUnicast is
	// 169.254/16 and fe80::/10.
	return ip.IsPrivate() || ip.IsLoopback() || ip.IsLinkLocalUnicast()
}
