package interop

import (
	"context"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/anacrolix/dht/v2"

	"github.com/lightdht/lightdht"
	"github.com/lightdht/lightdht/krpc"
)

// TestMixedNetwork joins 50 lightdht nodes and 50 anacrolix servers into
// one network through one bootstrap node of each kind, then checks
// lookups and announces across the two implementations.
func TestMixedNetwork(t *testing.T) {
	const perKind = 50
	forEachNetwork(t, func(t *testing.T, sn network) {
		ctx := context.Background()

		var (
			nodes    []*lightdht.Node
			servers  []*dht.Server
			srvAddrs []netip.AddrPort
			ids      []krpc.ID
		)
		addServer := func(starting ...netip.AddrPort) *dht.Server {
			conn := sn.conn(t)
			var st []*net.UDPAddr
			for _, a := range starting {
				st = append(st, udpAddr(a))
			}
			s := newAnacrolix(t, conn, st...)
			servers = append(servers, s)
			srvAddrs = append(srvAddrs, conn.AddrPort())
			ids = append(ids, krpc.ID(s.ID()))
			return s
		}
		addNode := func(bootstrap ...netip.AddrPort) *lightdht.Node {
			n := newNode(t, sn.conn(t), bootstrap...)
			nodes = append(nodes, n)
			ids = append(ids, n.ID())
			return n
		}

		// The two bootstrap nodes know each other.
		l0 := addNode()
		a0 := addServer(l0.Addr())
		if r := a0.Ping(udpAddr(l0.Addr())); r.Err != nil {
			t.Fatalf("anacrolix bootstrap node pinging lightdht bootstrap node: %v", r.Err)
		}
		if _, _, err := l0.Ping(ctx, srvAddrs[0]); err != nil {
			t.Fatalf("lightdht bootstrap node pinging anacrolix bootstrap node: %v", err)
		}
		boot := []netip.AddrPort{l0.Addr(), srvAddrs[0]}

		// The others join one by one, alternating kinds.
		for range perKind - 1 {
			n := addNode(boot...)
			if _, err := n.Bootstrap(ctx); err != nil {
				t.Fatalf("lightdht bootstrap: %v", err)
			}
			s := addServer(boot...)
			if _, err := s.Bootstrap(); err != nil {
				t.Fatalf("anacrolix bootstrap: %v", err)
			}
		}
		// A second round lets the early joiners learn of the late ones. One
		// at a time: 50 bootstraps at once overflowed the receive queues of
		// the nodes they all ask first, and how much was lost depended on
		// how fast the readers were scheduled.
		for _, n := range nodes {
			if _, err := n.Bootstrap(ctx); err != nil {
				t.Fatalf("lightdht bootstrap, second round: %v", err)
			}
		}
		var tableSizes []int
		for _, n := range nodes {
			tableSizes = append(tableSizes, n.Table(false).Len())
		}
		var serverSizes []int
		for _, s := range servers {
			serverSizes = append(serverSizes, s.NumNodes())
		}
		t.Logf("%d lightdht nodes, table sizes %d..%d; %d anacrolix servers, table sizes %d..%d",
			len(nodes), slices.Min(tableSizes), slices.Max(tableSizes),
			len(servers), slices.Min(serverSizes), slices.Max(serverSizes))

		t.Run("find_node_accuracy", func(t *testing.T) {
			const trials = 20
			rng := rand.New(rand.NewPCG(1, 2))
			hits := 0
			for trial := range trials {
				n := nodes[rng.IntN(len(nodes))]
				target := krpc.RandomID()
				others := slices.DeleteFunc(slices.Clone(ids), func(id krpc.ID) bool { return id == n.ID() })
				want := closestID(target, others)
				res, err := n.FindNode(ctx, target)
				if err != nil {
					t.Fatalf("trial %d: FindNode: %v", trial, err)
				}
				for _, ni := range res.Nodes {
					if !slices.Contains(ids, ni.ID) {
						t.Errorf("trial %d: returned %v, in neither implementation", trial, ni.ID)
					}
				}
				if len(res.Nodes) > 0 && res.Nodes[0].ID == want {
					hits++
				} else {
					t.Logf("trial %d: missed the closest %v (lightdht: %v), got %v", trial, want, slices.ContainsFunc(nodes, func(x *lightdht.Node) bool { return x.ID() == want }), res.Nodes)
				}
			}
			t.Logf("lookups returning the true closest node: %d/%d", hits, trials)
			if hits*10 < trials*9 {
				t.Errorf("only %d of %d lookups found the true closest node, want at least 90%%", hits, trials)
			}
		})

		t.Run("anacrolix_finds_lightdht_announce", func(t *testing.T) {
			// Servers made by newAnacrolix keep no peers (no PeerStore):
			// only lightdht nodes accept the announce, so the infohash is one
			// whose closest node is a lightdht node.
			var ih krpc.ID
			for {
				ih = krpc.RandomID()
				if slices.ContainsFunc(nodes, func(n *lightdht.Node) bool { return n.ID() == closestID(ih, ids) }) {
					break
				}
			}
			const port = 51413
			announcer := nodes[17]
			res, err := announcer.Announce(ctx, ih, port)
			if err != nil {
				t.Fatalf("lightdht announce: %v", err)
			}
			t.Logf("lightdht announced to %d nodes", len(res.AnnouncedTo))
			want := netip.AddrPortFrom(announcer.Addr().Addr(), port)
			if got := anacrolixPeers(t, servers[23], ih, 0); !slices.Contains(got, want) {
				t.Errorf("anacrolix traversal found peers %v, want %v among them", got, want)
			}
		})

		t.Run("lightdht_finds_anacrolix_announce", func(t *testing.T) {
			ih := krpc.RandomID()
			const port = 7000
			if got := anacrolixPeers(t, servers[31], ih, port); len(got) != 0 {
				t.Errorf("traversal for a fresh infohash found peers %v", got)
			}
			res, err := nodes[29].GetPeers(ctx, ih)
			if err != nil {
				t.Fatalf("lightdht get_peers: %v", err)
			}
			want := netip.AddrPortFrom(srvAddrs[31].Addr(), port)
			if !slices.Contains(res.Peers, want) {
				t.Errorf("lightdht get_peers found %v, want the anacrolix announce %v", res.Peers, want)
			}
		})
	})
}
