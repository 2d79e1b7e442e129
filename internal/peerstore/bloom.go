package peerstore

import (
	"crypto/sha1"
	"math"
	"math/bits"
	"net/netip"
)

// Sizes of the BEP 33 Bloom filters.
const (
	BloomBytes = 256            // length of a filter in bytes
	BloomBits  = BloomBytes * 8 // m, the number of bits
	bloomK     = 2              // k, the number of bits set per address
)

// Bloom is a BEP 33 scrape Bloom filter: m = 2048 bits, k = 2. An address
// sets bits h[0]|h[1]<<8 and h[2]|h[3]<<8 (each mod 2048) of
// h = SHA-1(address bytes), where bit i is 1<<(i%8) of byte i/8 and the
// address bytes are the 4-byte form of IPv4 (and IPv4-mapped) addresses
// and the 16-byte form of IPv6 ones. The zero value is an empty filter.
//
// Filters from several nodes are combined with [Bloom.Merge] and the number
// of distinct addresses is estimated with [Bloom.Estimate].
type Bloom [BloomBytes]byte

// bloomIndexes returns the two bit indexes BEP 33 sets for ip, which must
// be valid.
func bloomIndexes(ip netip.Addr) [2]uint16 {
	var h [sha1.Size]byte
	if ip = ip.Unmap(); ip.Is4() {
		b := ip.As4()
		h = sha1.Sum(b[:])
	} else {
		b := ip.As16()
		h = sha1.Sum(b[:])
	}
	return [2]uint16{
		(uint16(h[0]) | uint16(h[1])<<8) % BloomBits,
		(uint16(h[2]) | uint16(h[3])<<8) % BloomBits,
	}
}

func (b *Bloom) set(idx [2]uint16) {
	for _, i := range idx {
		b[i/8] |= 1 << (i % 8)
	}
}

// Add inserts ip. Invalid addresses are ignored; zones are ignored; an
// IPv4-mapped address is inserted as the IPv4 address.
func (b *Bloom) Add(ip netip.Addr) {
	if ip.IsValid() {
		b.set(bloomIndexes(ip))
	}
}

// Contains reports whether ip may have been added: false means certainly
// not, true means probably.
func (b *Bloom) Contains(ip netip.Addr) bool {
	if !ip.IsValid() {
		return false
	}
	for _, i := range bloomIndexes(ip) {
		if b[i/8]&(1<<(i%8)) == 0 {
			return false
		}
	}
	return true
}

// Merge sets b to the union of b and other, as when combining the scrape
// replies of several nodes.
func (b *Bloom) Merge(other *Bloom) {
	for i := range b {
		b[i] |= other[i]
	}
}

// Estimate returns the BEP 33 estimate of the number of distinct addresses
// in the filter,
//
//	log(c/m) / (k * log(1 - 1/m))
//
// with m = 2048, k = 2 and c the number of zero bits. An empty filter gives
// 0. A saturated filter (c = 0) is computed with c = 1, giving about 7,806,
// the largest estimate the filter can express: the true number is at least
// that large.
func (b *Bloom) Estimate() float64 {
	ones := 0
	for _, x := range b {
		ones += bits.OnesCount8(x)
	}
	c := BloomBits - ones
	if c == BloomBits {
		return 0
	}
	c = max(c, 1)
	return math.Log(float64(c)/BloomBits) / (bloomK * math.Log1p(-1.0/BloomBits))
}
