package crawler

import (
	"hash/maphash"

	"github.com/lightdht/lightdht/krpc"
)

// addrIndex finds a crawl's node by its address. It is the crawl's
// busiest lookup (every contact of every reply; a census holds millions
// of addresses, far more than the cache), so it is laid out for the
// cache rather than taken from Go's map: open addressing with linear
// probing over one []uint64, each slot holding 32 bits of the address's
// hash beside the node's index. A lookup reads one slot (its neighbours
// share the cache line) and then the node itself, whose key settles the
// match and whose fields the caller reads next anyway. Go's map read a
// control word and a 24-byte slot in another line besides, and at a
// million addresses held 56 bytes per address against these 17.
//
// The hash is seeded per crawl (hash/maphash), so a remote node cannot
// choose addresses that collide. Addresses are never removed: a crawl
// forgets no node.
//
// Owned by the event loop, like the node table it indexes.
type addrIndex struct {
	seed  maphash.Seed
	slots []uint64 // tag<<32 | (index+1), 0 when empty; len is a power of two
	used  int      // slots in use
}

// Table size: the first table's slots, and the load (used/len) past
// which it doubles. Linear probing stays short below three quarters.
const (
	indexMinSlots = 1 << 10
	indexMaxLoad  = 0.75
)

// tagOf returns k's 32-bit hash, whose low bits also pick its first slot.
func (x *addrIndex) tagOf(k addrKey) uint32 {
	return uint32(maphash.Comparable(x.seed, k))
}

// find returns the index of the node at address k in nodes, or -1.
func (x *addrIndex) find(k addrKey, nodes *nodeTable) int32 {
	if x.used == 0 {
		return -1
	}
	tag := x.tagOf(k)
	mask := uint32(len(x.slots) - 1)
	for i := tag & mask; ; i = (i + 1) & mask {
		s := x.slots[i]
		if s == 0 {
			return -1
		}
		if uint32(s>>32) == tag {
			if idx := int32(uint32(s) - 1); nodes.at(idx).key == k {
				return idx
			}
		}
	}
}

// warm reads, for each contact of a reply, the slot its lookup starts at
// and the node that slot names, so that the lookups that follow find both
// in the cache. These reads do not depend on one another, so the
// processor overlaps their cache misses; the lookups themselves, each
// followed by the work on its node, take them one at a time (in
// BenchmarkCrawl1M, two misses per contact were most of the cost of a
// reply). It returns a value made of what it read, which the caller
// keeps, so that the compiler does not drop the reads.
func (x *addrIndex) warm(contacts []krpc.NodeInfo, nodes *nodeTable) uint64 {
	if x.used == 0 {
		return 0
	}
	var seen [warmBatch]uint64
	var sum uint64
	mask := uint32(len(x.slots) - 1)
	for len(contacts) > 0 {
		batch := contacts[:min(len(contacts), warmBatch)]
		contacts = contacts[len(batch):]
		// The hashes first, then the loads in a loop of their own: with
		// the hashing between them, too few loads fit in the processor's
		// window to overlap.
		for i, ni := range batch {
			seen[i] = uint64(x.tagOf(keyOf(ni.Addr)) & mask)
		}
		for i := range batch {
			seen[i] = x.slots[seen[i]]
		}
		for _, s := range seen[:len(batch)] {
			if idx := int32(uint32(s) - 1); idx >= 0 && idx < nodes.len() {
				n := nodes.at(idx)
				sum += uint64(n.id[0]) + uint64(n.key[len(n.key)-1])
			}
		}
	}
	return sum
}

// warmBatch is how many contacts warm reads at once: a full reply's.
const warmBatch = 16

// add records that the node at address k has index idx. k must not be
// in the index (find returned -1).
func (x *addrIndex) add(k addrKey, idx int32) {
	if x.slots == nil {
		x.seed = maphash.MakeSeed()
		x.slots = make([]uint64, indexMinSlots)
	}
	if float64(x.used+1) > indexMaxLoad*float64(len(x.slots)) {
		x.grow()
	}
	x.put(uint64(x.tagOf(k))<<32 | uint64(uint32(idx)+1))
	x.used++
}

// put stores slot value s in the first empty slot from its tag's.
func (x *addrIndex) put(s uint64) {
	mask := uint32(len(x.slots) - 1)
	i := uint32(s>>32) & mask
	for x.slots[i] != 0 {
		i = (i + 1) & mask
	}
	x.slots[i] = s
}

// grow doubles the table. The tags hold the hash bits that place a slot,
// so no key is read again.
func (x *addrIndex) grow() {
	old := x.slots
	x.slots = make([]uint64, 2*len(old))
	for _, s := range old {
		if s != 0 {
			x.put(s)
		}
	}
}
