package crawler_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lightdht/lightdht"
	"github.com/lightdht/lightdht/crawler"
	"github.com/lightdht/lightdht/internal/simnet"
	"github.com/lightdht/lightdht/krpc"
)

// answerShape sums up a reply with what a querier acts on and leaves out
// what must differ between two responders (their IDs, their tables'
// contents, their tokens): the error code, or which keys the reply
// carries, how many nodes, and the peers.
func answerShape(m *krpc.Msg, err error) string {
	var kerr *krpc.Error
	switch {
	case errors.As(err, &kerr):
		return fmt.Sprintf("error %d", kerr.Code)
	case err != nil:
		return "failed: " + err.Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "reply nodes=%d nodes6=%d", len(m.R.Nodes), len(m.R.Nodes6))
	if len(m.R.Token) > 0 {
		b.WriteString(" token")
	}
	if len(m.R.Values) > 0 {
		fmt.Fprintf(&b, " values=%v", m.R.Values)
	}
	if len(m.R.BFsd) > 0 || len(m.R.BFpe) > 0 {
		b.WriteString(" bloom")
	}
	if m.R.V != nil {
		b.WriteString(" v")
	}
	if m.R.Samples != nil || m.R.Interval != 0 {
		fmt.Fprintf(&b, " samples=%d num=%d interval=%d", len(m.R.Samples), m.R.Num, m.R.Interval)
	}
	return b.String()
}

// TestNodeAndResponderAnswerAlike runs one table of queries through a
// Node and through a crawler's responder (Config.Respond), which share
// the query handler of package serve, and expects the same answers where
// their roles agree (BEP 5 and BEP 33) and the responder's 204 where
// they differ (it keeps no BEP 44 items and offers no BEP 51 samples).
func TestNodeAndResponderAnswerAlike(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(t, simnet.Config{Seed: 12, Latency: 5 * time.Millisecond})
		dn := newDHTNet(t, sim, loopbackAddrs(30), nil)

		nconn, _ := sim.NewConn4()
		node, err := lightdht.New(lightdht.LocalTestNet(lightdht.Config{Conn4: nconn, Bootstrap: dn.addrs[:1], NoMaintenance: true,
			QueryTimeout: time.Second}))
		if err != nil {
			t.Fatal(err)
		}
		go node.Serve(context.Background())
		defer node.Close()
		if _, err := node.Bootstrap(context.Background()); err != nil {
			t.Fatalf("bootstrap: %v", err)
		}

		cconn, _ := sim.NewConn4()
		crawlerID := krpc.RandomID()
		c, err := crawler.New(crawler.Config{Conn: cconn, ID: crawlerID, Bootstrap: dn.addrs[:1], TestNet: true, Rate: 1000,
			Timeout: time.Second, Continuous: true, Revisit: time.Minute, Respond: true})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		crawled := make(chan struct{})
		go func() {
			defer close(crawled)
			c.Run(ctx)
		}()
		defer func() { cancel(); <-crawled }()
		time.Sleep(10 * time.Second) // the crawler's first pass has filled its table

		tr, self := client(t, sim)
		clientID := krpc.RandomID()
		type responder struct {
			name string
			id   krpc.ID
			addr netip.AddrPort
		}
		both := []responder{{"node", node.ID(), nconn.AddrPort()}, {"responder", crawlerID, cconn.AddrPort()}}
		ask := func(to responder, q krpc.Msg) (*krpc.Msg, error) {
			t.Helper()
			if q.A.ID.IsZero() && q.Q != "no-id" {
				q.A.ID = clientID
			}
			if q.Q == "no-id" {
				q.Q = krpc.MethodPing
			}
			r, err := tr.Query(context.Background(), to.addr, &q)
			if err == nil && (r.R.ID != to.id || r.IP != self) {
				t.Errorf("%s: %s reply from ID %v with ip %v, want ID %v and the querier's %v (BEP 42)", to.name, q.Q, r.R.ID, r.IP, to.id, self)
			}
			return r.Msg, err
		}
		tokenOf := func(to responder, ih krpc.ID) []byte {
			t.Helper()
			r, err := ask(to, krpc.Msg{Q: krpc.MethodGetPeers, A: krpc.Args{InfoHash: ih}})
			if err != nil {
				t.Fatalf("%s: get_peers for a token: %v", to.name, err)
			}
			return r.R.Token
		}

		ih := krpc.RandomID()
		ih2 := krpc.RandomID()
		peer := netip.AddrPortFrom(self.Addr(), 7000)
		implied := netip.AddrPortFrom(self.Addr(), self.Port())
		item := krpc.Msg{Q: krpc.MethodPut, A: krpc.Args{V: []byte("5:hello")}}
		cases := []struct {
			name string
			q    func(to responder) krpc.Msg
			want string // the answer where the roles agree
			node string // the node's answer, where the roles differ
		}{
			{"ping", func(responder) krpc.Msg { return krpc.Msg{Q: krpc.MethodPing} }, "reply nodes=0 nodes6=0", ""},
			{"ping without an ID", func(responder) krpc.Msg { return krpc.Msg{Q: "no-id"} }, "error 203", ""},
			{"find_node", func(responder) krpc.Msg {
				return krpc.Msg{Q: krpc.MethodFindNode, A: krpc.Args{Target: krpc.RandomID()}}
			}, "reply nodes=8 nodes6=0", ""},
			{"find_node without a target", func(responder) krpc.Msg { return krpc.Msg{Q: krpc.MethodFindNode} }, "error 203", ""},
			{"find_node for nodes6 only", func(responder) krpc.Msg {
				return krpc.Msg{Q: krpc.MethodFindNode, A: krpc.Args{Target: krpc.RandomID(), Want: krpc.WantN6}}
			}, "reply nodes=0 nodes6=0", ""},
			{"get_peers, nothing announced", func(responder) krpc.Msg {
				return krpc.Msg{Q: krpc.MethodGetPeers, A: krpc.Args{InfoHash: ih}}
			}, "reply nodes=8 nodes6=0 token", ""},
			{"get_peers without an infohash", func(responder) krpc.Msg { return krpc.Msg{Q: krpc.MethodGetPeers} }, "error 203", ""},
			{"announce_peer with a forged token", func(responder) krpc.Msg {
				return krpc.Msg{Q: krpc.MethodAnnouncePeer, A: krpc.Args{InfoHash: ih, Port: 7000, Token: []byte("forged")}}
			}, "error 203", ""},
			{"announce_peer", func(to responder) krpc.Msg {
				return krpc.Msg{Q: krpc.MethodAnnouncePeer, A: krpc.Args{InfoHash: ih, Port: 7000, Token: tokenOf(to, ih)}}
			}, "reply nodes=0 nodes6=0", ""},
			{"get_peers after the announce", func(responder) krpc.Msg {
				return krpc.Msg{Q: krpc.MethodGetPeers, A: krpc.Args{InfoHash: ih}}
			}, fmt.Sprintf("reply nodes=0 nodes6=0 token values=[%v]", peer), ""},
			{"announce_peer with implied_port", func(to responder) krpc.Msg {
				return krpc.Msg{Q: krpc.MethodAnnouncePeer, A: krpc.Args{InfoHash: ih2, Port: 1, ImpliedPort: true, Token: tokenOf(to, ih2)}}
			}, "reply nodes=0 nodes6=0", ""},
			{"get_peers with scrape", func(responder) krpc.Msg {
				return krpc.Msg{Q: krpc.MethodGetPeers, A: krpc.Args{InfoHash: ih2, Scrape: true}}
			}, fmt.Sprintf("reply nodes=0 nodes6=0 token values=[%v] bloom", implied), ""},
			{"unknown method", func(responder) krpc.Msg { return krpc.Msg{Q: "vote", A: krpc.Args{Target: ih}} }, "error 204", ""},
			{"get (BEP 44)", func(responder) krpc.Msg {
				return krpc.Msg{Q: krpc.MethodGet, A: krpc.Args{Target: krpc.RandomID()}}
			}, "error 204", "reply nodes=8 nodes6=0 token"},
			{"put (BEP 44)", func(to responder) krpc.Msg {
				q := item
				q.A.Token = tokenOf(to, ih)
				return q
			}, "error 204", "reply nodes=0 nodes6=0"},
			{"sample_infohashes (BEP 51)", func(responder) krpc.Msg {
				return krpc.Msg{Q: krpc.MethodSampleInfohashes, A: krpc.Args{Target: krpc.RandomID()}}
			}, "error 204", "reply nodes=8 nodes6=0 samples=2 num=2 interval=3600"},
		}
		for _, tc := range cases {
			var shapes []string
			for _, to := range both {
				shapes = append(shapes, answerShape(ask(to, tc.q(to))))
			}
			wantNode := tc.want
			if tc.node != "" {
				wantNode = tc.node
			}
			if shapes[0] != wantNode {
				t.Errorf("%s: the node answered %q, want %q", tc.name, shapes[0], wantNode)
			}
			if shapes[1] != tc.want {
				t.Errorf("%s: the responder answered %q, want %q", tc.name, shapes[1], tc.want)
			}
		}

		// The nodes handed out are nodes of the network, nearest first,
		// from each responder's own table.
		// The querier itself counts: the node puts nodes that query it in
		// its table.
		known := map[krpc.ID]netip.AddrPort{node.ID(): nconn.AddrPort(), crawlerID: cconn.AddrPort(), clientID: self}
		for i, n := range dn.nodes {
			known[n.ID()] = dn.addrs[i]
		}
		target := krpc.RandomID()
		for _, to := range both {
			r, err := ask(to, krpc.Msg{Q: krpc.MethodFindNode, A: krpc.Args{Target: target}})
			if err != nil {
				t.Fatalf("%s: find_node: %v", to.name, err)
			}
			if !slices.IsSortedFunc(r.R.Nodes, func(a, b krpc.NodeInfo) int { return a.ID.Xor(target).Cmp(b.ID.Xor(target)) }) {
				t.Errorf("%s: find_node returned nodes out of distance order: %v", to.name, r.R.Nodes)
			}
			for _, ni := range r.R.Nodes {
				if a, ok := known[ni.ID]; !ok || a != ni.Addr {
					t.Errorf("%s: find_node returned %v at %v, not a node of the network", to.name, ni.ID, ni.Addr)
				}
			}
		}
	})
}
