package lightdht_test

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lightdht/lightdht"
	"github.com/lightdht/lightdht/internal/simnet"
	"github.com/lightdht/lightdht/krpc"
)

// rig is one node under test and a bare transport that queries it and
// answers its pings with ID id.
type rig struct {
	sim    *simnet.Network
	node   *lightdht.Node
	addr   netip.AddrPort
	client *krpc.Transport
	caddr  netip.AddrPort
	id     krpc.ID
}

// pingAnswerer answers pings with ID id and every other query not at all,
// the least a node must do to be confirmed by the node it queries.
func pingAnswerer(id krpc.ID) krpc.Handler {
	return krpc.HandlerFunc(func(reply, q *krpc.Msg, _ netip.AddrPort) bool {
		if q.Q != krpc.MethodPing {
			return false
		}
		reply.R.ID = id
		return true
	})
}

func newRig(t *testing.T, tweak func(*lightdht.Config)) *rig {
	t.Helper()
	sim, err := simnet.New(simnet.Config{Latency: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	nc, _ := sim.NewConn4()
	cfg := lightdht.Config{Conn4: nc, NoMaintenance: true}
	if tweak != nil {
		tweak(&cfg)
	}
	node, err := lightdht.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	go node.Serve(context.Background())
	cc, _ := sim.NewConn4()
	id := krpc.RandomID()
	client, err := krpc.New(krpc.Config{Conn: cc, Retries: krpc.NoRetries, Timeout: 500 * time.Millisecond, Handler: pingAnswerer(id)})
	if err != nil {
		t.Fatal(err)
	}
	go client.Serve(context.Background())
	t.Cleanup(func() {
		client.Close()
		node.Close()
		sim.Close()
	})
	return &rig{sim: sim, node: node, addr: nc.AddrPort(), client: client, caddr: cc.AddrPort(), id: id}
}

func (r *rig) query(t *testing.T, q *krpc.Msg) (krpc.Response, error) {
	t.Helper()
	return r.client.Query(context.Background(), r.addr, q)
}

func wantCode(t *testing.T, err error, code int) {
	t.Helper()
	var kerr *krpc.Error
	if !errors.As(err, &kerr) || kerr.Code != code {
		t.Errorf("got %v, want KRPC error %d", err, code)
	}
}

func TestQueryHandling(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil)
		me := r.id
		ih := krpc.RandomID()

		// ping: our ID, and BEP 42's ip telling us our address.
		resp, err := r.query(t, &krpc.Msg{Q: krpc.MethodPing, A: krpc.Args{ID: me}})
		if err != nil {
			t.Fatalf("ping: %v", err)
		}
		if resp.R.ID != r.node.ID() || resp.IP != r.caddr || string(resp.V) != string(lightdht.DefaultVersion) {
			t.Errorf("ping reply id %v ip %v v %q", resp.R.ID, resp.IP, resp.V)
		}
		// The querier is now in the table, and confirmed by the node's
		// ping once that has been answered.
		if _, ok := r.node.Table(false).Get(me); !ok {
			t.Error("querying node not added to the routing table")
		}
		time.Sleep(time.Second) // fake time: the ping's round trip, whatever the machine's speed
		if e, _ := r.node.Table(false).Get(me); e.LastReply.IsZero() {
			t.Error("querying node not pinged")
		}

		// Missing arguments: 203.
		_, err = r.query(t, &krpc.Msg{Q: krpc.MethodFindNode, A: krpc.Args{ID: me}})
		wantCode(t, err, krpc.CodeProtocol)
		_, err = r.query(t, &krpc.Msg{Q: krpc.MethodGetPeers, A: krpc.Args{ID: me}})
		wantCode(t, err, krpc.CodeProtocol)
		_, err = r.query(t, &krpc.Msg{Q: krpc.MethodPing})
		wantCode(t, err, krpc.CodeProtocol)
		// Unknown method: 204.
		_, err = r.query(t, &krpc.Msg{Q: "vote", A: krpc.Args{ID: me}})
		wantCode(t, err, krpc.CodeMethodUnknown)

		// find_node returns known nodes (here: us).
		resp, err = r.query(t, &krpc.Msg{Q: krpc.MethodFindNode, A: krpc.Args{ID: me, Target: me}})
		if err != nil || len(resp.R.Nodes) != 1 || resp.R.Nodes[0].ID != me {
			t.Errorf("find_node: %v, nodes %v", err, resp.R.Nodes)
		}

		// get_peers with no peers: nodes and a token.
		resp, err = r.query(t, &krpc.Msg{Q: krpc.MethodGetPeers, A: krpc.Args{ID: me, InfoHash: ih}})
		if err != nil || len(resp.R.Token) == 0 || len(resp.R.Values) != 0 || len(resp.R.Nodes) == 0 {
			t.Fatalf("get_peers: %v, token %x values %v nodes %v", err, resp.R.Token, resp.R.Values, resp.R.Nodes)
		}
		token := append([]byte(nil), resp.R.Token...)

		// announce_peer with a bad token: 203, nothing stored.
		_, err = r.query(t, &krpc.Msg{Q: krpc.MethodAnnouncePeer, A: krpc.Args{ID: me, InfoHash: ih, Port: 6881, Token: []byte("forged!!")}})
		wantCode(t, err, krpc.CodeProtocol)
		// Without a port: 203.
		_, err = r.query(t, &krpc.Msg{Q: krpc.MethodAnnouncePeer, A: krpc.Args{ID: me, InfoHash: ih, Token: token}})
		wantCode(t, err, krpc.CodeProtocol)
		// With the token: stored, and returned by get_peers.
		if _, err = r.query(t, &krpc.Msg{Q: krpc.MethodAnnouncePeer, A: krpc.Args{ID: me, InfoHash: ih, Port: 7000, Token: token}}); err != nil {
			t.Fatalf("announce_peer: %v", err)
		}
		// implied_port: the UDP source port is used.
		if _, err = r.query(t, &krpc.Msg{Q: krpc.MethodAnnouncePeer, A: krpc.Args{ID: me, InfoHash: ih, Port: 1, ImpliedPort: true, Token: token}}); err != nil {
			t.Fatalf("announce_peer implied_port: %v", err)
		}
		resp, err = r.query(t, &krpc.Msg{Q: krpc.MethodGetPeers, A: krpc.Args{ID: me, InfoHash: ih}})
		if err != nil {
			t.Fatal(err)
		}
		want := map[netip.AddrPort]bool{netip.AddrPortFrom(r.caddr.Addr(), 7000): true, r.caddr: true}
		if len(resp.R.Values) != 2 || !want[resp.R.Values[0]] || !want[resp.R.Values[1]] {
			t.Errorf("values %v, want %v", resp.R.Values, want)
		}
		st := r.node.Stats()
		if st.BadTokens != 1 || st.AnnouncesStored != 2 || st.Infohashes != 1 || st.Peers != 2 {
			t.Errorf("stats %+v", st)
		}
	})
}

func TestReadOnlyQuerierNotAdded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil)
		me := krpc.RandomID()
		if _, err := r.query(t, &krpc.Msg{Q: krpc.MethodPing, RO: true, A: krpc.Args{ID: me}}); err != nil {
			t.Fatal(err)
		}
		if _, ok := r.node.Table(false).Get(me); ok {
			t.Error("BEP 43 read-only querier was added to the routing table")
		}
	})
}

func TestReadOnlyNodeAnswersNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, func(c *lightdht.Config) { c.ReadOnly = true })
		if _, err := r.query(t, &krpc.Msg{Q: krpc.MethodPing, A: krpc.Args{ID: krpc.RandomID()}}); !errors.Is(err, krpc.ErrTimeout) {
			t.Errorf("read-only node: %v, want no answer", err)
		}
	})
}

func TestWantNodes6(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim, _ := simnet.New(simnet.Config{})
		defer sim.Close()
		c4, _ := sim.NewConn4()
		c6, _ := sim.NewConn6()
		node, err := lightdht.New(lightdht.Config{Conn4: c4, Conn6: c6, NoMaintenance: true})
		if err != nil {
			t.Fatal(err)
		}
		go node.Serve(context.Background())
		defer node.Close()
		// An IPv6 querier enters the IPv6 table only.
		q6, _ := sim.NewConn6()
		id6 := krpc.RandomID()
		cl6, _ := krpc.New(krpc.Config{Conn: q6, Handler: pingAnswerer(id6)})
		go cl6.Serve(context.Background())
		defer cl6.Close()
		if _, err := cl6.Query(context.Background(), c6.AddrPort(), &krpc.Msg{Q: krpc.MethodPing, A: krpc.Args{ID: id6}}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second) // fake time: the node's ping confirms the querier
		if node.Table(true).Len() != 1 || node.Table(false).Len() != 0 {
			t.Fatalf("tables v4 %d v6 %d, want 0 and 1", node.Table(false).Len(), node.Table(true).Len())
		}
		// An IPv4 querier asking for n6 gets nodes6.
		q4, _ := sim.NewConn4()
		cl4, _ := krpc.New(krpc.Config{Conn: q4})
		go cl4.Serve(context.Background())
		defer cl4.Close()
		resp, err := cl4.Query(context.Background(), c4.AddrPort(), &krpc.Msg{Q: krpc.MethodFindNode, A: krpc.Args{ID: krpc.RandomID(), Target: id6, Want: krpc.WantN4 | krpc.WantN6}})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.R.Nodes6) != 1 || resp.R.Nodes6[0].ID != id6 {
			t.Errorf("nodes6 %v, want the IPv6 querier", resp.R.Nodes6)
		}
	})
}

// TestPerIPRateLimit: a source over its budget stops getting answers while
// another source is still served.
func TestPerIPRateLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, func(c *lightdht.Config) { c.PerIPRate, c.PerIPBurst = 5, 10 })
		// 30 queries arriving in the same instant from a new source: half
		// the burst of 10 is answered, the rest are dropped.
		var wg sync.WaitGroup
		var answered atomic.Int32
		for range 30 {
			wg.Add(1)
			r.client.QueryAsync(context.Background(), r.addr, &krpc.Msg{Q: krpc.MethodPing, A: krpc.Args{ID: krpc.RandomID()}}, func(_ krpc.Response, err error) {
				if err == nil {
					answered.Add(1)
				}
				wg.Done()
			})
		}
		wg.Wait()
		if answered.Load() != 5 {
			t.Errorf("answered %d of 30 simultaneous queries, want half the burst of 10", answered.Load())
		}
		if r.node.Stats().RateLimited == 0 {
			t.Error("no query counted as rate limited")
		}
		other, _ := r.sim.NewConn4()
		cl, _ := krpc.New(krpc.Config{Conn: other})
		go cl.Serve(context.Background())
		defer cl.Close()
		if _, err := cl.Query(context.Background(), r.addr, &krpc.Msg{Q: krpc.MethodPing, A: krpc.Args{ID: krpc.RandomID()}}); err != nil {
			t.Errorf("another source was refused: %v", err)
		}
	})
}

// TestObserverSeesInfohashes: incoming get_peers and announce_peer queries
// are reported with their infohash, and an accepted announce with the peer
// it stored; a refused announce still reports the querier, without a peer.
func TestObserverSeesInfohashes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var seen []lightdht.Sighting
		r := newRig(t, func(c *lightdht.Config) {
			c.Observer = lightdht.ObserverFunc(func(s lightdht.Sighting) {
				if s.Source != lightdht.SourceQuery {
					return // the reply to the node's ping of its new querier
				}
				mu.Lock()
				seen = append(seen, s)
				mu.Unlock()
			})
		})
		me, ih := r.id, krpc.RandomID()
		resp, err := r.query(t, &krpc.Msg{Q: krpc.MethodGetPeers, A: krpc.Args{ID: me, InfoHash: ih}})
		if err != nil {
			t.Fatal(err)
		}
		token := append([]byte(nil), resp.R.Token...)
		r.query(t, &krpc.Msg{Q: krpc.MethodAnnouncePeer, A: krpc.Args{ID: me, InfoHash: ih, Port: 7000, Token: []byte("bad")}})
		if _, err := r.query(t, &krpc.Msg{Q: krpc.MethodAnnouncePeer, A: krpc.Args{ID: me, InfoHash: ih, Port: 7000, Token: token}}); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(seen) != 3 {
			t.Fatalf("%d sightings, want 3: %+v", len(seen), seen)
		}
		want := []struct {
			method string
			peer   netip.AddrPort
		}{
			{krpc.MethodGetPeers, netip.AddrPort{}},
			{krpc.MethodAnnouncePeer, netip.AddrPort{}},
			{krpc.MethodAnnouncePeer, netip.AddrPortFrom(r.caddr.Addr(), 7000)},
		}
		for i, w := range want {
			s := seen[i]
			if s.Method != w.method || s.Infohash != ih || s.Peer != w.peer || s.Node.ID != me || s.Source != lightdht.SourceQuery {
				t.Errorf("sighting %d: %+v, want %s with infohash %v and peer %v", i, s, w.method, ih, w.peer)
			}
		}
	})
}

// TestSampleInfohashes: BEP 51 answers carry a sample of the infohashes the
// node holds, their number, the interval and nodes; the sample stands for
// the interval and is drawn again after it.
func TestSampleInfohashes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, func(c *lightdht.Config) {
			c.SampleInterval = 10 * time.Minute
			c.PerIPRate = -1 // 60 queries from one address in one instant
		})
		me := r.id
		held := map[krpc.ID]bool{}
		for range 30 {
			ih := krpc.RandomID()
			held[ih] = true
			resp, err := r.query(t, &krpc.Msg{Q: krpc.MethodGetPeers, A: krpc.Args{ID: me, InfoHash: ih}})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := r.query(t, &krpc.Msg{Q: krpc.MethodAnnouncePeer, A: krpc.Args{ID: me, InfoHash: ih, Port: 7000, Token: resp.R.Token}}); err != nil {
				t.Fatal(err)
			}
		}
		sample := func() []krpc.ID {
			t.Helper()
			resp, err := r.query(t, &krpc.Msg{Q: krpc.MethodSampleInfohashes, A: krpc.Args{ID: me, Target: krpc.RandomID()}})
			if err != nil {
				t.Fatal(err)
			}
			if resp.R.Num != 30 || resp.R.Interval != 600 || len(resp.R.Nodes) == 0 || len(resp.R.Samples) != lightdht.SampleMax {
				t.Fatalf("num %d interval %d nodes %d samples %d", resp.R.Num, resp.R.Interval, len(resp.R.Nodes), len(resp.R.Samples))
			}
			for _, ih := range resp.R.Samples {
				if !held[ih] {
					t.Fatalf("sample holds %v, which the node never stored", ih)
				}
			}
			return resp.R.Samples
		}
		first := sample()
		time.Sleep(5 * time.Minute)
		if again := sample(); !slices.Equal(first, again) {
			t.Error("the sample changed within the interval")
		}
		changed := false
		for range 5 { // a fresh draw of 20 from 30 repeats itself with odds of 1 in 30 choose 20
			time.Sleep(11 * time.Minute)
			if !slices.Equal(first, sample()) {
				changed = true
				break
			}
		}
		if !changed {
			t.Error("the sample never changed after the interval")
		}
		_, err := r.query(t, &krpc.Msg{Q: krpc.MethodSampleInfohashes, A: krpc.Args{ID: me}})
		wantCode(t, err, krpc.CodeProtocol)
	})
}
