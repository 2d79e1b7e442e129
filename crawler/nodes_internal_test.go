package crawler

import (
	"slices"
	"testing"

	"github.com/lightdht/lightdht/krpc"
)

// TestInIDOrder: the nodes with a known ID that keep accepts, in
// ascending ID order, IDs that agree in their first 64 bits included.
func TestInIDOrder(t *testing.T) {
	c := &Crawler{}
	for i := range 2000 {
		id := krpc.RandomID()
		switch i % 10 {
		case 0:
			id = krpc.ID{} // unknown: left out
		case 1, 2:
			id = krpc.RandomIDAtDepth(c.nodes[i-1].id, 64+i%90) // ties in the first 64 bits
		}
		c.nodes = append(c.nodes, node{id: id, replied: i%3 == 0})
	}
	for _, keep := range []func(*node) bool{nil, func(n *node) bool { return n.replied }} {
		var want []int32
		for i := range c.nodes {
			if n := &c.nodes[i]; !n.id.IsZero() && (keep == nil || keep(n)) {
				want = append(want, int32(i))
			}
		}
		slices.SortFunc(want, func(a, b int32) int { return c.nodes[a].id.Cmp(c.nodes[b].id) })
		got := c.inIDOrder(keep)
		if len(got) != len(want) {
			t.Fatalf("%d nodes, want %d", len(got), len(want))
		}
		for i := range got {
			if c.nodes[got[i]].id != c.nodes[want[i]].id {
				t.Fatalf("position %d: %v, want %v", i, c.nodes[got[i]].id, c.nodes[want[i]].id)
			}
		}
	}
}
