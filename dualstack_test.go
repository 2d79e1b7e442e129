package lightdht_test

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lightdht/lightdht"
	"github.com/lightdht/lightdht/internal/simnet"
	"github.com/lightdht/lightdht/krpc"
	"github.com/lightdht/lightdht/table"
)

// TestDualStack: nodes with an IPv4 and an IPv6 socket keep two tables
// (BEP 32), and lookups and announces cover both families.
func TestDualStack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim, err := simnet.New(simnet.Config{Seed: 2, Latency: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sim.Close() }) // registered first: runs after the nodes close
		const size = 100
		nodes, addr6 := dualStackNodes(t, sim, size)
		ctx := context.Background()
		for _, n := range nodes[1:] {
			if _, err := n.Bootstrap(ctx); err != nil {
				t.Fatalf("bootstrap: %v", err)
			}
		}
		for _, n := range nodes[1:] {
			n.Bootstrap(ctx)
		}
		for i, n := range nodes[1:] {
			if n.Table(false).Len() == 0 || n.Table(true).Len() == 0 {
				t.Fatalf("node %d: table sizes v4 %d v6 %d", i+1, n.Table(false).Len(), n.Table(true).Len())
			}
			bad := false
			n.Table(true).Each(func(e table.Entry) bool {
				bad = bad || !e.Is6()
				return !bad
			})
			if bad {
				t.Fatalf("node %d: an IPv4 node in the IPv6 table", i+1)
			}
		}

		// Lookups return the true closest of each family.
		from := nodes[17]
		target := krpc.RandomID()
		res, err := from.FindNode(ctx, target)
		if err != nil {
			t.Fatal(err)
		}
		ids := make([]krpc.ID, 0, size)
		for _, n := range nodes {
			if n != from {
				ids = append(ids, n.ID())
			}
		}
		slices.SortFunc(ids, func(a, b krpc.ID) int { return a.Xor(target).Cmp(b.Xor(target)) })
		if len(res.Nodes) != 8 || len(res.Nodes6) != 8 {
			t.Fatalf("got %d IPv4 and %d IPv6 nodes, want 8 of each", len(res.Nodes), len(res.Nodes6))
		}
		for i := range 8 {
			if res.Nodes[i].ID != ids[i] || res.Nodes6[i].ID != ids[i] || res.Nodes6[i].Addr != addr6[ids[i]] {
				t.Errorf("rank %d: v4 %v v6 %v, want %v at %v", i, res.Nodes[i], res.Nodes6[i], ids[i], addr6[ids[i]])
			}
		}

		// An announce reaches both families, and get_peers finds the peer
		// over both.
		ih := krpc.RandomID()
		ar, err := nodes[3].Announce(ctx, ih, 7777)
		if err != nil {
			t.Fatal(err)
		}
		var v4, v6 int
		for _, ni := range ar.AnnouncedTo {
			if ni.Is6() {
				v6++
			} else {
				v4++
			}
		}
		if v4 == 0 || v6 == 0 {
			t.Fatalf("announced to %d IPv4 and %d IPv6 nodes, want both", v4, v6)
		}
		gp, err := nodes[60].GetPeers(ctx, ih)
		if err != nil {
			t.Fatal(err)
		}
		want4 := netip.AddrPortFrom(nodes[3].Addr().Addr(), 7777)
		want6 := netip.AddrPortFrom(addr6[nodes[3].ID()].Addr(), 7777)
		if !slices.Contains(gp.Peers, want4) || !slices.Contains(gp.Peers, want6) {
			t.Errorf("peers %v, want %v and %v", gp.Peers, want4, want6)
		}
	})
}

// dualStackNodes starts n nodes on sim, each with an IPv4 and an IPv6
// socket, all but the first with the first as bootstrap, and returns them
// with their IPv6 addresses. They are not joined yet; they close when the
// test ends.
func dualStackNodes(t *testing.T, sim *simnet.Network, n int) ([]*lightdht.Node, map[krpc.ID]netip.AddrPort) {
	t.Helper()
	var (
		nodes []*lightdht.Node
		addr6 = map[krpc.ID]netip.AddrPort{}
		boot  []netip.AddrPort
	)
	for i := range n {
		c4, _ := sim.NewConn4()
		c6, _ := sim.NewConn6()
		node, err := lightdht.New(lightdht.Config{Conn4: c4, Conn6: c6, Bootstrap: boot, NoMaintenance: true})
		if err != nil {
			t.Fatal(err)
		}
		go node.Serve(context.Background())
		t.Cleanup(func() { node.Close() })
		if i == 0 {
			boot = []netip.AddrPort{c4.AddrPort(), c6.AddrPort()}
		}
		addr6[node.ID()] = c6.AddrPort()
		nodes = append(nodes, node)
	}
	return nodes, addr6
}
