package crawler

import (
	"net/netip"
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

// TestAddrIndex: IPv4 and IPv6 addresses, and ports, keep their own
// entries; an IPv4-mapped IPv6 address is the IPv4 one (keyOf).
func TestAddrIndex(t *testing.T) {
	x := newAddrIndex()
	addrs := []string{"1.2.3.4:6881", "1.2.3.4:6882", "1.2.3.5:6881", "[::ffff:1.2.3.6]:1", "[2001:db8::1]:6881", "[2001:db8::1]:6882", "[::1.2.3.4]:6881", "255.255.255.255:65535", "0.0.0.1:1"}
	for i, a := range addrs {
		k := keyOf(netip.MustParseAddrPort(a))
		if _, ok := x.get(k); ok {
			t.Fatalf("%s found before it was put", a)
		}
		x.put(k, int32(i))
	}
	for i, a := range addrs {
		if got, ok := x.get(keyOf(netip.MustParseAddrPort(a))); !ok || got != int32(i) {
			t.Errorf("%s: %d, %v; want %d", a, got, ok, i)
		}
		if got := keyOf(netip.MustParseAddrPort(a)).addrPort(); got != netip.MustParseAddrPort(a) && got.Addr() != netip.MustParseAddrPort(a).Addr().Unmap() {
			t.Errorf("%s: key holds %v", a, got)
		}
	}
	if got, ok := x.get(keyOf(netip.MustParseAddrPort("1.2.3.6:1"))); !ok || got != 3 {
		t.Errorf("1.2.3.6:1 (put as IPv4-mapped): %d, %v; want 3", got, ok)
	}
	if len(x.v4) != 6 || len(x.v6) != 3 {
		t.Errorf("%d IPv4 and %d IPv6 entries, want 6 and 3", len(x.v4), len(x.v6))
	}
}
