package interop

import (
	"context"
	"net/netip"
	"slices"
	"testing"

	"github.com/lightdht/lightdht"
	"github.com/lightdht/lightdht/krpc"
)

// lightdhtNetwork starts count lightdht nodes on sn, each bootstrapped
// from the first, in turn.
func lightdhtNetwork(t *testing.T, sn network, count int) []*lightdht.Node {
	t.Helper()
	nodes := make([]*lightdht.Node, count)
	nodes[0] = newNode(t, sn.conn(t))
	for i := 1; i < count; i++ {
		nodes[i] = newNode(t, sn.conn(t), nodes[0].Addr())
		if _, err := nodes[i].Bootstrap(context.Background()); err != nil {
			t.Fatalf("bootstrap lightdht node %d: %v", i, err)
		}
	}
	return nodes
}

// TestAnacrolixQueriesAnsweredByNode runs anacrolix's queries and
// traversals against a network made only of lightdht nodes.
func TestAnacrolixQueriesAnsweredByNode(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, sn network) {
		nodes := lightdhtNetwork(t, sn, 20)
		ctx := context.Background()
		// The subtests' anacrolix servers live as long as the network: one
		// closed at the end of its subtest would stay in the tables of the
		// nodes it reached, and a later lookup would wait out its queries.
		pinger := newAnacrolix(t, sn.conn(t))
		seeker := newAnacrolix(t, sn.conn(t), udpAddr(nodes[0].Addr()))
		announcingConn := sn.conn(t)
		announcing := newAnacrolix(t, announcingConn, udpAddr(nodes[0].Addr()))

		t.Run("ping", func(t *testing.T) {
			for _, n := range nodes[:3] {
				r := pinger.Ping(udpAddr(n.Addr()))
				if r.Err != nil {
					t.Fatalf("anacrolix ping %v: %v", n.Addr(), r.Err)
				}
				if r.Reply.R == nil || krpc.ID(r.Reply.R.ID) != n.ID() {
					t.Errorf("anacrolix ping %v: reply %+v, want ID %v", n.Addr(), r.Reply.R, n.ID())
				}
			}
		})

		t.Run("get_peers_finds_lightdht_announce", func(t *testing.T) {
			ih := krpc.RandomID()
			announcer := nodes[7]
			const port = 51413
			res, err := announcer.Announce(ctx, ih, port)
			if err != nil {
				t.Fatalf("lightdht announce: %v", err)
			}
			t.Logf("lightdht announced to %d nodes", len(res.AnnouncedTo))
			want := netip.AddrPortFrom(announcer.Addr().Addr(), port)
			if got := anacrolixPeers(t, seeker, ih, 0); !slices.Contains(got, want) {
				t.Errorf("anacrolix get_peers traversal found peers %v, want %v among them", got, want)
			}
		})

		t.Run("announce_stored_by_lightdht", func(t *testing.T) {
			ih := krpc.RandomID()
			const port = 7000
			if got := anacrolixPeers(t, announcing, ih, port); len(got) != 0 {
				t.Errorf("traversal for a fresh infohash found peers %v", got)
			}
			res, err := nodes[13].GetPeers(ctx, ih)
			if err != nil {
				t.Fatalf("lightdht get_peers: %v", err)
			}
			want := netip.AddrPortFrom(announcingConn.AddrPort().Addr(), port)
			if !slices.Contains(res.Peers, want) {
				t.Errorf("lightdht get_peers found %v, want the anacrolix announce %v", res.Peers, want)
			}
		})
	})
}
