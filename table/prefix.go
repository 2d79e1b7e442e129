package table

import "github.com/lightdht/lightdht/krpc"

// trie is the index of the Prefix table: a crit-bit (Patricia) trie over
// the 160 ID bits. Every inner node tests one bit, deeper nodes test later
// bits, and a trie of N leaves has N-1 inner nodes of 16 bytes, kept in one
// pointer-free slice. Leaves are record indices. Get, Update and Remove walk
// one path, O(depth), depth being about log2(N) for random IDs.
//
// All leaves under an inner node agree on the bits before the one it tests,
// so for any target every leaf on the child that agrees with the target at
// that bit is nearer in XOR distance than every leaf on the other child. A
// depth-first walk that takes the target's side first therefore meets the
// leaves in order of distance: Closest costs O(n·depth). Each inner node
// counts the leaves below it that are not bad, so the walk skips subtrees
// holding only bad nodes.
type trie struct {
	maxFail uint8 // failures that make a record bad
	nodes   []inode
	free    []int32 // indices of unused nodes
	root    ref     // meaningless when size == 0
	size    int
}

// ref refers to an inner node (>= 0) or to a leaf, the record ^ref (< 0).
type ref = int32

type inode struct {
	bit   uint32 // the bit this node tests, 0..159
	live  uint32 // leaves below that are not bad
	child [2]ref
}

func leaf(i int) ref { return ^ref(i) }

func b2u(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}

// liveBelow returns the number of leaves under r that are not bad.
func (x *trie) liveBelow(recs []rec, r ref) uint32 {
	if r >= 0 {
		return x.nodes[r].live
	}
	return b2u(recs[^r].failures < x.maxFail)
}

func (x *trie) find(recs []rec, id krpc.ID) int {
	if x.size == 0 {
		return -1
	}
	r := x.root
	for r >= 0 {
		n := &x.nodes[r]
		r = n.child[bit(&id, uint(n.bit))]
	}
	if recs[^r].id != id {
		return -1
	}
	return int(^r)
}

func (x *trie) alloc() int32 {
	if k := len(x.free); k > 0 {
		i := x.free[k-1]
		x.free = x.free[:k-1]
		return i
	}
	x.nodes = append(x.nodes, inode{})
	return int32(len(x.nodes) - 1)
}

func (x *trie) insert(recs []rec, i int, live bool) {
	id := &recs[i].id
	x.size++
	if x.size == 1 {
		x.root = leaf(i)
		return
	}
	// Any leaf reached by following id's bits agrees with id on every bit an
	// inner node of the path tests, so the first bit where it differs from
	// id is where id branches off the trie.
	r := x.root
	for r >= 0 {
		n := &x.nodes[r]
		r = n.child[bit(id, uint(n.bit))]
	}
	crit := uint32(id.CommonPrefixLen(recs[^r].id)) // < 160: IDs are distinct
	k := x.alloc()                                  // before taking pointers into x.nodes
	inc := b2u(live)
	slot := &x.root
	for *slot >= 0 && x.nodes[*slot].bit < crit {
		n := &x.nodes[*slot]
		n.live += inc
		slot = &n.child[bit(id, uint(n.bit))]
	}
	sub := *slot
	side := bit(id, uint(crit))
	nd := &x.nodes[k]
	nd.bit = crit
	nd.live = x.liveBelow(recs, sub) + inc
	nd.child[side] = leaf(i)
	nd.child[1-side] = sub
	*slot = k
}

func (x *trie) remove(recs []rec, i int, live bool) {
	x.size--
	if x.size == 0 {
		return
	}
	id := &recs[i].id
	dec := b2u(live)
	var parentSlot *ref
	slot := &x.root
	for *slot >= 0 {
		n := &x.nodes[*slot]
		n.live -= dec
		parentSlot = slot
		slot = &n.child[bit(id, uint(n.bit))]
	}
	// *slot is leaf(i) and its parent *parentSlot is replaced by the sibling.
	p := *parentSlot
	n := &x.nodes[p]
	sib := n.child[0]
	if sib == leaf(i) {
		sib = n.child[1]
	}
	*n = inode{}
	*parentSlot = sib
	x.free = append(x.free, p)
}

func (x *trie) slotOf(id *krpc.ID) *ref {
	slot := &x.root
	for *slot >= 0 {
		n := &x.nodes[*slot]
		slot = &n.child[bit(id, uint(n.bit))]
	}
	return slot
}

func (x *trie) moved(recs []rec, _, to int) {
	*x.slotOf(&recs[to].id) = leaf(to)
}

func (x *trie) liveChanged(recs []rec, i int, live bool) {
	id := &recs[i].id
	for r := x.root; r >= 0; {
		n := &x.nodes[r]
		if live {
			n.live++
		} else {
			n.live--
		}
		r = n.child[bit(id, uint(n.bit))]
	}
}

func (x *trie) closest(recs []rec, target krpc.ID, n int, _ uint8, replied bool, out []int) []int {
	if x.size == 0 || x.liveBelow(recs, x.root) == 0 {
		return out
	}
	// Bits tested strictly increase along a path, so at most one pending
	// far side per bit.
	var stack [numBits + 1]ref
	stack[0] = x.root
	sp := 1
	for sp > 0 && len(out) < n {
		sp--
		r := stack[sp]
		for r >= 0 {
			nd := &x.nodes[r]
			side := bit(&target, uint(nd.bit))
			if far := nd.child[1-side]; x.liveBelow(recs, far) > 0 {
				stack[sp] = far
				sp++
			}
			r = nd.child[side]
			if x.liveBelow(recs, r) == 0 {
				break
			}
		}
		if r < 0 && recs[^r].failures < x.maxFail && (!replied || (recs[^r].reply != 0 && recs[^r].failures == 0)) {
			out = append(out, int(^r))
		}
	}
	return out
}
