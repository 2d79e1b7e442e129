package crawler_test

import (
	"context"
	"errors"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lightdht/lightdht"
	"github.com/lightdht/lightdht/crawler"
	"github.com/lightdht/lightdht/internal/simnet"
	"github.com/lightdht/lightdht/krpc"
	"github.com/lightdht/lightdht/observe"
)

// queryRecorder is a recorder that also keeps the incoming queries.
type queryRecorder struct {
	*recorder
	queries []observe.Sighting
}

func (r *queryRecorder) Observe(s observe.Sighting) {
	r.recorder.Observe(s)
	if s.Source == observe.SourceQuery {
		r.mu.Lock()
		r.queries = append(r.queries, s)
		r.mu.Unlock()
	}
}

// client is a bare KRPC endpoint on sim for querying a crawler by hand.
func client(t *testing.T, sim *simnet.Network) (*krpc.Transport, netip.AddrPort) {
	t.Helper()
	conn, err := sim.NewConn4()
	if err != nil {
		t.Fatal(err)
	}
	tr, err := krpc.New(krpc.Config{Conn: conn, Timeout: time.Second, Retries: krpc.NoRetries})
	if err != nil {
		t.Fatal(err)
	}
	go tr.Serve(context.Background())
	t.Cleanup(func() { tr.Close() })
	return tr, conn.AddrPort()
}

// TestRespond: a crawler with Respond answers ping, find_node (with nodes
// that answered it), get_peers and announce_peer like a BEP 5 node,
// serves the peers announced to it, refuses bad tokens and unknown
// methods, records every query with its infohash, and crawls a querier it
// had not heard of.
func TestRespond(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(t, simnet.Config{Seed: 5, Latency: 5 * time.Millisecond})
		// The plain table, as in TestContinuousRevisits: with the extended
		// one and no maintenance the crawl of 40 nodes missed the one
		// nearest the crawler in about 1 run in 30, and this test is
		// about answering, not coverage.
		dn := newDHTNet(t, sim, loopbackAddrs(40), func(c *lightdht.Config) { c.PlainTable = true })
		known := map[krpc.ID]netip.AddrPort{}
		for i, n := range dn.nodes {
			known[n.ID()] = dn.addrs[i]
		}
		conn, _ := sim.NewConn4()
		crawlerAddr := conn.AddrPort()
		rec := &queryRecorder{recorder: newRecorder()}
		crawlerID := krpc.RandomID()
		c, err := crawler.New(crawler.Config{Conn: conn, ID: crawlerID, Bootstrap: dn.addrs[:1], TestNet: true, Rate: 1000,
			Timeout: time.Second, Continuous: true, Revisit: time.Minute, Respond: true, Recorder: rec})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		type outcome struct {
			res crawler.Result
			err error
		}
		done := make(chan outcome, 1)
		go func() {
			res, err := c.Run(ctx)
			done <- outcome{res, err}
		}()
		time.Sleep(10 * time.Second) // the first pass is over by now

		tr, self := client(t, sim)
		id := krpc.RandomID()
		ask := func(q *krpc.Msg) (*krpc.Msg, error) {
			t.Helper()
			q.A.ID = id
			r, err := tr.Query(context.Background(), crawlerAddr, q)
			return r.Msg, err
		}
		r, err := ask(&krpc.Msg{Q: krpc.MethodPing})
		if err != nil || r.R.ID != crawlerID {
			t.Fatalf("ping: %v, %+v; want a reply from %v", err, r, crawlerID)
		}
		if r.IP != self {
			t.Errorf("ping reply's ip is %v, want the querier's %v (BEP 42)", r.IP, self)
		}
		// Asked for its own neighbourhood, the crawler names 8 nodes of
		// the network, nearest first, and the first is the network's
		// nearest to it: that node sits in the bucket that splits, so the
		// table always has room for it (it would not only if 9 nodes
		// shared the most leading bits with the crawler's ID, and none
		// more).
		near := crawlerID
		near[krpc.IDLen-1] ^= 1
		r, err = ask(&krpc.Msg{Q: krpc.MethodFindNode, A: krpc.Args{Target: near}})
		if err != nil {
			t.Fatalf("find_node: %v", err)
		}
		nearest := slices.MinFunc(slices.Collect(maps.Keys(known)), func(a, b krpc.ID) int { return a.Xor(near).Cmp(b.Xor(near)) })
		if len(r.R.Nodes) != 8 || r.R.Nodes[0].ID != nearest {
			t.Errorf("find_node for the crawler's own neighbourhood returned %v, want 8 nodes, %v first", r.R.Nodes, nearest)
		}
		if !slices.IsSortedFunc(r.R.Nodes, func(a, b krpc.NodeInfo) int { return a.ID.Xor(near).Cmp(b.ID.Xor(near)) }) {
			t.Errorf("find_node returned nodes out of distance order: %v", r.R.Nodes)
		}
		for _, ni := range r.R.Nodes {
			if known[ni.ID] != ni.Addr {
				t.Errorf("find_node returned %v at %v, not a node of the network", ni.ID, ni.Addr)
			}
		}

		ih := krpc.RandomID()
		r, err = ask(&krpc.Msg{Q: krpc.MethodGetPeers, A: krpc.Args{InfoHash: ih}})
		if err != nil || len(r.R.Token) == 0 || len(r.R.Nodes) != 8 || len(r.R.Values) != 0 {
			t.Fatalf("get_peers: %v, %+v; want a token and 8 nodes", err, r)
		}
		token := r.R.Token
		if _, err := ask(&krpc.Msg{Q: krpc.MethodAnnouncePeer, A: krpc.Args{InfoHash: ih, Port: 7000, Token: []byte("forged")}}); !isCode(err, krpc.CodeProtocol) {
			t.Errorf("announce_peer with a bad token: %v, want error 203", err)
		}
		if _, err := ask(&krpc.Msg{Q: krpc.MethodAnnouncePeer, A: krpc.Args{InfoHash: ih, Port: 7000, Token: token}}); err != nil {
			t.Fatalf("announce_peer: %v", err)
		}
		peer := netip.AddrPortFrom(self.Addr(), 7000)
		r, err = ask(&krpc.Msg{Q: krpc.MethodGetPeers, A: krpc.Args{InfoHash: ih}})
		if err != nil || !slices.Equal(r.R.Values, []netip.AddrPort{peer}) {
			t.Errorf("get_peers after the announce: %v, values %v; want [%v]", err, r.R.Values, peer)
		}
		if _, err := ask(&krpc.Msg{Q: "vote", A: krpc.Args{Target: ih}}); !isCode(err, krpc.CodeMethodUnknown) {
			t.Errorf("unknown method: %v, want error 204", err)
		}

		// A node nobody knows pings the crawler, which then crawls it.
		nc, _ := sim.NewConn4()
		newcomer, err := lightdht.New(lightdht.Config{Conn4: nc, NoMaintenance: true, PerIPRate: -1})
		if err != nil {
			t.Fatal(err)
		}
		go newcomer.Serve(context.Background())
		defer newcomer.Close()
		if _, _, err := newcomer.Ping(context.Background(), crawlerAddr); err != nil {
			t.Fatalf("newcomer's ping: %v", err)
		}

		out := <-done
		if !errors.Is(out.err, context.DeadlineExceeded) {
			t.Fatalf("continuous crawl ended with %v, want the deadline", out.err)
		}
		res := out.res
		rec.mu.Lock()
		defer rec.mu.Unlock()
		if !rec.replied[newcomer.ID()] {
			t.Errorf("the newcomer that queried the crawler was never crawled")
		}
		if res.Passive != 1 {
			t.Errorf("Result.Passive = %d, want 1 (the one infohash asked about)", res.Passive)
		}
		if res.Incoming < 7 {
			t.Errorf("Result.Incoming = %d, want at least the client's 7 queries and the newcomer's ping", res.Incoming)
		}
		var gets, announces int
		for _, s := range rec.queries {
			if s.Node.ID != id {
				continue
			}
			switch s.Method {
			case krpc.MethodGetPeers:
				gets++
				if s.Infohash != ih {
					t.Errorf("get_peers recorded with infohash %v, want %v", s.Infohash, ih)
				}
			case krpc.MethodAnnouncePeer:
				announces++
				if s.Infohash != ih {
					t.Errorf("announce_peer recorded with infohash %v, want %v", s.Infohash, ih)
				}
				if announces == 2 && s.Peer != peer {
					t.Errorf("accepted announce recorded with peer %v, want %v", s.Peer, peer)
				}
				if announces == 1 && s.Peer.IsValid() {
					t.Errorf("refused announce recorded with peer %v", s.Peer)
				}
			}
		}
		if gets != 2 || announces != 2 {
			t.Errorf("recorded %d get_peers and %d announce_peer from the client, want 2 and 2", gets, announces)
		}
	})
}

// TestReadOnlyByDefault: without Respond the crawler answers nothing
// (BEP 43), and says so in its queries.
func TestReadOnlyByDefault(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(t, simnet.Config{Seed: 6, Latency: 5 * time.Millisecond})
		var (
			mu sync.Mutex
			ro = map[netip.AddrPort][]bool{} // per querier, the ro flag of each query
		)
		dn := newDHTNet(t, sim, loopbackAddrs(10), func(c *lightdht.Config) {
			c.Observer = observe.ObserverFunc(func(s observe.Sighting) {
				if s.Source == observe.SourceQuery {
					mu.Lock()
					ro[s.Node.Addr] = append(ro[s.Node.Addr], s.ReadOnly)
					mu.Unlock()
				}
			})
		})
		conn, _ := sim.NewConn4()
		crawlerAddr := conn.AddrPort()
		c, err := crawler.New(crawler.Config{Conn: conn, Bootstrap: dn.addrs[:1], TestNet: true, Rate: 1000, Timeout: time.Second,
			Continuous: true, Revisit: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		done := make(chan crawler.Result, 1)
		go func() {
			res, _ := c.Run(ctx)
			done <- res
		}()
		time.Sleep(5 * time.Second)
		tr, _ := client(t, sim)
		if _, err := tr.Query(context.Background(), crawlerAddr, &krpc.Msg{Q: krpc.MethodPing, A: krpc.Args{ID: krpc.RandomID()}}); !errors.Is(err, krpc.ErrTimeout) {
			t.Errorf("ping to a read-only crawler: %v, want a timeout", err)
		}
		if res := <-done; res.Incoming != 0 || res.Replied == 0 {
			t.Errorf("read-only crawl: %d queries counted, %d nodes replied; want 0 and some", res.Incoming, res.Replied)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(ro[crawlerAddr]) == 0 || slices.Contains(ro[crawlerAddr], false) {
			t.Errorf("the crawler's queries carried ro = %v, want 1 on every one", ro[crawlerAddr])
		}
	})
}

// isCode reports whether err carries a KRPC error with code.
func isCode(err error, code int) bool {
	var e *krpc.Error
	return errors.As(err, &e) && e.Code == code
}
