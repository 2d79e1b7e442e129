package table

import (
	"encoding/binary"
	"slices"

	"github.com/lightdht/lightdht/krpc"
)

// flatIndex is the index of the Flat table: a hash map from ID to record
// index. Update, Get and Remove are O(1); Closest scans every record and
// keeps the n nearest in a bounded max-heap, O(N log n) time and O(n)
// space, about 10 ms per million entries.
type flatIndex struct {
	m map[krpc.ID]int32
}

func newFlatIndex() *flatIndex { return &flatIndex{m: make(map[krpc.ID]int32)} }

func (x *flatIndex) find(_ []rec, id krpc.ID) int {
	if i, ok := x.m[id]; ok {
		return int(i)
	}
	return -1
}

func (x *flatIndex) insert(recs []rec, i int, _ bool) { x.m[recs[i].id] = int32(i) }

func (x *flatIndex) remove(recs []rec, i int, _ bool) { delete(x.m, recs[i].id) }

func (x *flatIndex) moved(recs []rec, _, to int) { x.m[recs[to].id] = int32(to) }

func (x *flatIndex) liveChanged([]rec, int, bool) {}

// dist is an XOR distance split into big-endian words for fast comparison,
// with the index of its record.
type dist struct {
	hi, mid uint64
	lo      uint32
	i       int32
}

func (a *dist) less(b *dist) bool {
	if a.hi != b.hi {
		return a.hi < b.hi
	}
	if a.mid != b.mid {
		return a.mid < b.mid
	}
	return a.lo < b.lo
}

func (x *flatIndex) closest(recs []rec, target krpc.ID, n int, maxFail uint8, replied bool, out []int) []int {
	be := binary.BigEndian
	t0, t1, t2 := be.Uint64(target[0:8]), be.Uint64(target[8:16]), be.Uint32(target[16:20])
	h := make([]dist, 0, min(n, len(recs))) // max-heap: h[0] is the farthest kept
	for i := range recs {
		r := &recs[i]
		if r.failures >= maxFail || (replied && (r.reply == 0 || r.failures > 0)) {
			continue
		}
		d := dist{hi: be.Uint64(r.id[0:8]) ^ t0}
		if len(h) == n && d.hi > h[0].hi {
			continue // cheap early reject for almost every record
		}
		d.mid, d.lo, d.i = be.Uint64(r.id[8:16])^t1, be.Uint32(r.id[16:20])^t2, int32(i)
		switch {
		case len(h) < n:
			h = append(h, d)
			siftUp(h, len(h)-1)
		case d.less(&h[0]):
			h[0] = d
			siftDown(h, 0)
		}
	}
	slices.SortFunc(h, func(a, b dist) int {
		if a.less(&b) {
			return -1
		}
		return 1 // distances of distinct IDs are distinct
	})
	for _, d := range h {
		out = append(out, int(d.i))
	}
	return out
}

func siftUp(h []dist, i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !h[p].less(&h[i]) {
			return
		}
		h[p], h[i] = h[i], h[p]
		i = p
	}
}

func siftDown(h []dist, i int) {
	for {
		c := 2*i + 1
		if c >= len(h) {
			return
		}
		if c+1 < len(h) && h[c].less(&h[c+1]) {
			c++
		}
		if !h[i].less(&h[c]) {
			return
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
}
