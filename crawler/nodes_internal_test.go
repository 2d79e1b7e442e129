package crawler

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/lightdht/lightdht/krpc"
)

// TestInIDOrder: the nodes with a known ID that keep accepts, in
// ascending ID order, IDs that agree in their first 64 bits included,
// for a few nodes (sorted by comparison) and many (by radix); and
// allIDOrder gives the same as inIDOrder(nil), again after a node is
// added or an ID changes.
func TestInIDOrder(t *testing.T) {
	for _, size := range []int{2000, 20_000} {
		c := inIDOrderCase(t, size)
		got := c.allIDOrder()
		c.nodes.add(node{id: krpc.RandomID()})
		if again := c.allIDOrder(); len(again) != len(got)+1 {
			t.Fatalf("%d nodes in ID order after one more was added to %d", len(again), len(got))
		}
		i := c.byID[len(c.byID)/2]
		c.nodes.at(i).id = krpc.ID{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
		c.idChanges++
		if last := c.allIDOrder(); last[len(last)-1] != i {
			t.Fatalf("node %d, whose ID was changed to the greatest, is not last", i)
		}
	}
}

// inIDOrderCase fills a crawler with n nodes, a tenth without an ID and
// a fifth sharing their first 64 bits with the node before, and checks
// inIDOrder against a comparison sort.
func inIDOrderCase(t *testing.T, size int) *Crawler {
	t.Helper()
	c := &Crawler{}
	for i := range size {
		id := krpc.RandomID()
		switch i % 10 {
		case 0:
			id = krpc.ID{} // unknown: left out
		case 1, 2:
			id = krpc.RandomIDAtDepth(c.nodes.at(int32(i-1)).id, 64+i%90) // ties in the first 64 bits
		}
		c.nodes.add(node{id: id, replied: i%3 == 0})
	}
	for _, keep := range []func(*node) bool{nil, func(n *node) bool { return n.replied }} {
		var want []int32
		for i := range c.nodes.len() {
			if n := c.nodes.at(i); !n.id.IsZero() && (keep == nil || keep(n)) {
				want = append(want, i)
			}
		}
		slices.SortFunc(want, func(a, b int32) int { return c.nodes.at(a).id.Cmp(c.nodes.at(b).id) })
		got := c.inIDOrder(keep)
		if len(got) != len(want) {
			t.Fatalf("%d nodes, want %d", len(got), len(want))
		}
		for i := range got {
			if c.nodes.at(got[i]).id != c.nodes.at(want[i]).id {
				t.Fatalf("%d nodes, position %d: %v, want %v", size, i, c.nodes.at(got[i]).id, c.nodes.at(want[i]).id)
			}
		}
	}
	if got, want := c.allIDOrder(), c.inIDOrder(nil); !slices.Equal(got, want) {
		t.Fatalf("%d nodes: allIDOrder differs from inIDOrder(nil)", size)
	}
	return c
}

// TestAddrIndex: every address added is found at its index through the
// table's growth, addresses never added are not, and an IPv4 address
// and its IPv4-mapped IPv6 form are one address; a Go map is the oracle.
func TestAddrIndex(t *testing.T) {
	var x addrIndex
	var nodes nodeTable
	want := map[addrKey]int32{}
	if got := x.find(keyOf(netip.MustParseAddrPort("192.0.2.1:6881")), &nodes); got != -1 {
		t.Fatalf("empty index found %d", got)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 50_000 {
		var ap netip.AddrPort
		switch i % 3 {
		case 0: // many ports on few IPs: keys that differ in the last bytes only
			ap = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(r.IntN(4))}), uint16(r.IntN(65535)+1))
		case 1:
			ap = netip.AddrPortFrom(netip.AddrFrom4([4]byte(binary.BigEndian.AppendUint32(nil, r.Uint32()))), uint16(r.IntN(65535)+1))
		default:
			var b [16]byte
			binary.BigEndian.PutUint64(b[:8], r.Uint64())
			binary.BigEndian.PutUint64(b[8:], r.Uint64())
			ap = netip.AddrPortFrom(netip.AddrFrom16(b), 6881)
		}
		k := keyOf(ap)
		if idx, ok := want[k]; ok {
			if got := x.find(k, &nodes); got != idx {
				t.Fatalf("%v: found %d, want %d", ap, got, idx)
			}
			continue
		}
		if got := x.find(k, &nodes); got != -1 {
			t.Fatalf("%v not added yet, found at %d", ap, got)
		}
		idx := nodes.add(node{key: k})
		x.add(k, idx)
		want[k] = idx
	}
	if len(x.slots) < indexMinSlots*2 || float64(x.used) > indexMaxLoad*float64(len(x.slots)) {
		t.Errorf("%d addresses in %d slots: the table did not grow as it should", x.used, len(x.slots))
	}
	for k, idx := range want {
		if got := x.find(k, &nodes); got != idx {
			t.Fatalf("%v: found %d after growth, want %d", k.addrPort(), got, idx)
		}
	}
	for range 10_000 {
		k := keyOf(netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(r.IntN(256))}), uint16(r.IntN(65535)+1)))
		if got := x.find(k, &nodes); got != -1 {
			t.Fatalf("%v never added, found at %d", k.addrPort(), got)
		}
	}
	v4 := netip.MustParseAddrPort("198.51.100.7:6881")
	v4idx := nodes.add(node{key: keyOf(v4)})
	x.add(keyOf(v4), v4idx)
	if got := x.find(keyOf(netip.MustParseAddrPort("[::ffff:198.51.100.7]:6881")), &nodes); got != v4idx {
		t.Errorf("IPv4-mapped form of %v found at %d, want %d", v4, got, v4idx)
	}
}

// TestNodeTable: indexes are given in order across chunks, each node is
// found at its index, and a node's address stays put as the table grows.
func TestNodeTable(t *testing.T) {
	var nt nodeTable
	first := nt.at(nt.add(node{link: 1}))
	for i := int32(1); i < 3*nodeChunk+5; i++ {
		if got := nt.add(node{link: i + 1}); got != i {
			t.Fatalf("add gave index %d, want %d", got, i)
		}
	}
	if nt.len() != 3*nodeChunk+5 {
		t.Fatalf("len %d, want %d", nt.len(), 3*nodeChunk+5)
	}
	for i := range nt.len() {
		if got := nt.at(i).link; got != i+1 {
			t.Fatalf("node %d holds %d, want %d", i, got, i+1)
		}
	}
	if first != nt.at(0) || first.link != 1 {
		t.Errorf("node 0 moved or changed as the table grew")
	}
}

// BenchmarkAddrIndex looks up the contacts of replies, eight at a time,
// in an index of a million addresses, as a census does, with and without
// warm first, and in a Go map; it reports the time per contact.
func BenchmarkAddrIndex(b *testing.B) {
	const size = 1_000_000
	var x addrIndex
	var nodes nodeTable
	r := rand.New(rand.NewPCG(3, 4))
	keys := make([]addrKey, size)
	for i := range keys {
		keys[i] = keyOf(netip.AddrPortFrom(netip.AddrFrom4([4]byte(binary.BigEndian.AppendUint32(nil, r.Uint32()))), uint16(r.IntN(65535)+1)))
		if x.find(keys[i], &nodes) < 0 {
			x.add(keys[i], nodes.add(node{key: keys[i]}))
		}
	}
	replies := make([][]krpc.NodeInfo, 1<<17) // a million contacts: more than the cache holds
	for i := range replies {
		for range 8 {
			replies[i] = append(replies[i], krpc.NodeInfo{Addr: keys[r.IntN(size)].addrPort()})
		}
	}
	b.Run("map", func(b *testing.B) { // Go's map, which the index replaced
		m := make(map[addrKey]int32, nodes.len())
		for i := range nodes.len() {
			m[nodes.at(i).key] = i
		}
		contacts := 0
		for i := 0; b.Loop(); i++ {
			for _, ni := range replies[i%len(replies)] {
				if idx, ok := m[keyOf(ni.Addr)]; ok {
					nodes.at(idx).link++
				}
				contacts++
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(contacts), "ns/contact")
		b.ReportMetric(0, "ns/op")
	})
	for _, warm := range []bool{false, true} {
		name := "cold"
		if warm {
			name = "warm"
		}
		b.Run(name, func(b *testing.B) {
			var sum uint64
			contacts := 0
			for i := 0; b.Loop(); i++ {
				reply := replies[i%len(replies)]
				if warm {
					sum += x.warm(reply, &nodes)
				}
				for _, ni := range reply {
					if idx := x.find(keyOf(ni.Addr), &nodes); idx >= 0 {
						n := nodes.at(idx)
						n.link++ // the work on the node that follows a lookup
					}
				}
				contacts += len(reply)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(contacts), "ns/contact")
			b.ReportMetric(0, "ns/op")
			_ = sum
		})
	}
}
