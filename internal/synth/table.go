package synth

import (
	"net/netip"
	"slices"
	"sort"

	"github.com/lightdht/lightdht/krpc"
)

// The routing table of entry x is never stored. Entries are sorted by ID,
// so the entries sharing exactly d leading bits with x (x's bucket at
// depth d) form a contiguous range of the sorted array: the sibling, at
// depth d+1, of the subtree that holds x. A bucket whose range holds at
// most K entries holds all of them; a larger one holds K members drawn by
// a generator seeded with (Seed, x, d), except the deepest non-empty
// bucket, which holds the K entries of its range closest to x. The deep
// buckets therefore hold x's true nearest neighbours, and far buckets are
// sparse samples, as in a real BEP 5 table.

// bit returns bit d of id, counting from the most significant.
func bit(id *krpc.ID, d int) int { return int(id[d>>3]>>(7-uint(d&7))) & 1 }

// bucketRanges calls f for each non-empty bucket of entry x, from depth 0
// down, with the depth and the bucket's index range [lo, hi). It stops
// when f returns false or when x's own subtree holds x alone.
func (n *Network) bucketRanges(x int, f func(d, lo, hi int) bool) {
	id := &n.ids[x]
	lo, hi := 0, len(n.ids)
	for d := 0; d < 160 && hi-lo > 1; d++ {
		// Entries in [lo, hi) share d bits with id; split them on bit d.
		split := lo + sort.Search(hi-lo, func(j int) bool { return bit(&n.ids[lo+j], d) == 1 })
		var slo, shi int
		if bit(id, d) == 0 {
			slo, shi, hi = split, hi, split
		} else {
			slo, shi, lo = lo, split, split
		}
		if shi > slo && !f(d, slo, shi) {
			return
		}
	}
}

// members appends to dst the indexes of the entries of x's bucket at depth
// d, whose range is [lo, hi): all of them if there are at most K; else,
// for the deepest non-empty bucket, the K closest to x, and for the other
// buckets K distinct ones drawn by Floyd's algorithm from a generator
// seeded with (Seed, x, d).
func (n *Network) members(dst []int32, x, d, lo, hi int, deepest bool) []int32 {
	size := hi - lo
	if size <= n.k || deepest {
		start := len(dst)
		for j := lo; j < hi; j++ {
			dst = append(dst, int32(j))
		}
		if size > n.k {
			id := n.ids[x]
			slices.SortFunc(dst[start:], func(a, b int32) int {
				if krpc.CloserTo(id, n.ids[a], n.ids[b]) {
					return -1
				}
				return 1
			})
			dst = dst[:start+n.k]
		}
		return dst
	}
	start := len(dst)
	h := hash(n.seed, tagBucket, uint64(x), uint64(d))
	for j := size - n.k; j < size; j++ {
		h = mix(h + 0x9e3779b97f4a7c15)
		t := int32(lo + int(h%uint64(j+1)))
		if slices.Contains(dst[start:], t) {
			t = int32(lo + j)
		}
		dst = append(dst, t)
	}
	return dst
}

// Bucket returns the entries of entry i's routing table bucket at depth d:
// those of its table entries whose IDs share exactly d leading bits with
// entry i's ID, in ascending ID order. It is nil for a depth beyond the
// table or out of [0, 160), and panics if i is out of range.
func (n *Network) Bucket(i, d int) []krpc.NodeInfo {
	rs := n.ranges(i, make([]bucketRange, 0, 40))
	for j, r := range rs {
		if r.d == d {
			idx := n.members(nil, i, d, r.lo, r.hi, j == len(rs)-1)
			slices.Sort(idx)
			out := make([]krpc.NodeInfo, len(idx))
			for k, e := range idx {
				out[k] = n.info(int(e))
			}
			return out
		}
	}
	return nil
}

// bucketRange is the index range [lo, hi) of a non-empty bucket at depth d.
type bucketRange struct{ d, lo, hi int }

// ranges appends to dst the ranges of x's non-empty buckets, shallowest
// first.
func (n *Network) ranges(x int, dst []bucketRange) []bucketRange {
	n.bucketRanges(x, func(d, lo, hi int) bool {
		dst = append(dst, bucketRange{d, lo, hi})
		return true
	})
	return dst
}

// info returns entry i as a NodeInfo.
func (n *Network) info(i int) krpc.NodeInfo {
	return krpc.NodeInfo{ID: n.ids[i], Addr: n.addr(i)}
}

// addr returns entry i's address.
func (n *Network) addr(i int) netip.AddrPort {
	return netip.AddrPortFrom(addr4(n.ip[i]), n.portOf(i))
}

// closest returns up to K entries of x's table closest to target, closest
// first. With d0 the common prefix length of x and target, x's bucket at
// depth d0 holds the only entries sharing more than d0 bits with target;
// the deeper buckets come next (they share exactly d0 bits), then the
// shallower ones in order of decreasing depth. So the K closest are found
// among bucket d0, the deeper buckets, and as many shallower buckets as
// are needed.
func (n *Network) closest(x int, target krpc.ID) []int32 {
	d0 := n.ids[x].CommonPrefixLen(target)
	var buf [160]bucketRange
	rs := n.ranges(x, buf[:0])
	last := len(rs) - 1
	byDist := func(a, b int32) int {
		if a == b {
			return 0
		}
		if krpc.CloserTo(target, n.ids[a], n.ids[b]) {
			return -1
		}
		return 1
	}
	out := make([]int32, 0, 4*n.k)
	// Bucket d0, then all deeper buckets, sorted together: every entry of
	// bucket d0 is closer than every deeper one, so sorting keeps that.
	for j, r := range rs {
		if r.d >= d0 {
			out = n.members(out, x, r.d, r.lo, r.hi, j == last)
		}
	}
	slices.SortFunc(out, byDist)
	if len(out) >= n.k {
		return out[:n.k]
	}
	for j := len(rs) - 1; j >= 0 && len(out) < n.k; j-- {
		r := rs[j]
		if r.d >= d0 {
			continue
		}
		start := len(out)
		out = n.members(out, x, r.d, r.lo, r.hi, j == last)
		slices.SortFunc(out[start:], byDist)
	}
	if len(out) > n.k {
		out = out[:n.k]
	}
	return out
}
