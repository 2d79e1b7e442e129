package lightdht_test

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lightdht/lightdht"
	"github.com/lightdht/lightdht/internal/simnet"
	"github.com/lightdht/lightdht/krpc"
)

// TestRepliesListOnlyAnsweringNodes: a node that has only queried us is in
// the routing table as a candidate but is not handed out in find_node or
// get_peers replies; the node pings it, and a querier that answers the
// ping is handed out from then on.
func TestRepliesListOnlyAnsweringNodes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim, err := simnet.New(simnet.Config{Latency: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer sim.Close()
		nc, _ := sim.NewConn4()
		node, err := lightdht.New(lightdht.LocalTestNet(lightdht.Config{Conn4: nc, NoMaintenance: true}))
		if err != nil {
			t.Fatal(err)
		}
		go node.Serve(context.Background())
		defer node.Close()

		// client starts a transport whose handler is h (nil: it answers
		// nothing, like a client whose DHT never answers).
		client := func(h krpc.Handler) *krpc.Transport {
			c, _ := sim.NewConn4()
			tr, err := krpc.New(krpc.Config{Conn: c, Handler: h, Retries: krpc.NoRetries})
			if err != nil {
				t.Fatal(err)
			}
			go tr.Serve(context.Background())
			t.Cleanup(func() { tr.Close() })
			return tr
		}
		silentID, answerID := krpc.ID{0x10, 19: 1}, krpc.ID{0x10, 19: 2}
		silent, answering, asker := client(nil), client(pingAnswerer(answerID)), client(nil)
		ctx := context.Background()
		for _, c := range []struct {
			tr *krpc.Transport
			id krpc.ID
		}{{silent, silentID}, {answering, answerID}} {
			if _, err := c.tr.Query(ctx, node.Addr(), &krpc.Msg{Q: krpc.MethodPing, A: krpc.Args{ID: c.id}}); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(time.Minute) // fake time: the node's pings are answered or time out

		tab := node.Table(false)
		for _, id := range []krpc.ID{silentID, answerID} {
			if _, ok := tab.Get(id); !ok {
				t.Fatalf("querier %v is not in the routing table", id)
			}
		}
		if e, _ := tab.Get(silentID); !e.LastReply.IsZero() {
			t.Errorf("silent querier has a reply time %v", e.LastReply)
		}
		if e, _ := tab.Get(answerID); e.LastReply.IsZero() {
			t.Error("the answering querier was not confirmed by a ping")
		}
		if got := silent.Stats().DroppedNoHandler; got == 0 {
			t.Error("the node never pinged the silent querier")
		}

		me := krpc.ID{0x10, 19: 3}
		target := krpc.ID{0x10} // nearest to the silent querier, then the answering one
		for _, q := range []*krpc.Msg{
			{Q: krpc.MethodFindNode, A: krpc.Args{ID: me, Target: target}},
			{Q: krpc.MethodGetPeers, A: krpc.Args{ID: me, InfoHash: target}},
			{Q: krpc.MethodSampleInfohashes, A: krpc.Args{ID: me, Target: target}},
		} {
			r, err := asker.Query(ctx, node.Addr(), q)
			if err != nil {
				t.Fatalf("%s: %v", q.Q, err)
			}
			if len(r.R.Nodes) != 1 || r.R.Nodes[0].ID != answerID {
				t.Errorf("%s reply lists %v, want only the answering querier %v", q.Q, r.R.Nodes, answerID)
			}
		}
	})
}

// TestSilentNodeQueriedBoundedTimes: a node that stops answering is asked
// a bounded number of times by concurrent lookups that all want it, not
// again by lookups within the quiet window after it timed out, and again
// once the window has passed; the timeout counts against it in the
// routing table.
func TestSilentNodeQueriedBoundedTimes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tn := newTestNet(t, 40, simnet.Config{Seed: 5, Latency: 10 * time.Millisecond}, nil)
		victim, querier := tn.nodes[7], tn.nodes[3]
		vaddr, vid := victim.Addr(), victim.ID()
		victim.Close()
		// The victim's address now reads and never answers; it counts
		// the distinct queries (transaction IDs) the querier sends it.
		conn, err := tn.sim.Listen(vaddr)
		if err != nil {
			t.Fatal(err)
		}
		var (
			mu  sync.Mutex
			txs = map[string]bool{}
		)
		go func() {
			buf := make([]byte, 2048)
			for {
				n, from, err := conn.ReadFromUDPAddrPort(buf)
				if err != nil {
					return
				}
				var m krpc.Msg
				if krpc.Unmarshal(buf[:n], &m) == nil && m.Y == krpc.KindQuery && from == querier.Addr() {
					mu.Lock()
					txs[string(m.T)] = true
					mu.Unlock()
				}
			}
		}()
		defer conn.Close()
		queries := func() int {
			mu.Lock()
			defer mu.Unlock()
			return len(txs)
		}

		// lookups runs concurrent find_node lookups from the querier for
		// targets next to the victim's ID, so that every one of them wants
		// to ask it, and returns how many queries reached the victim.
		lookups := func(n int) int {
			before := queries()
			var wg sync.WaitGroup
			for i := range n {
				target := vid
				target[19] ^= byte(i + 1)
				wg.Go(func() {
					res, err := querier.FindNode(context.Background(), target)
					if err != nil {
						t.Errorf("FindNode: %v", err)
					}
					for _, ni := range res.Nodes {
						if ni.ID == vid {
							t.Errorf("lookup returned the silent node")
						}
					}
				})
			}
			wg.Wait()
			return queries() - before
		}
		const concurrent = 16
		// The victim has answered before, so a few lookups may ask it at
		// once before the first attempt goes unanswered (inflightProven in
		// recall.go); without shared memory, every one would.
		if got := lookups(concurrent); got < 1 || got > 4 {
			t.Errorf("%d concurrent lookups sent %d queries to the silent node, want 1 to 4", concurrent, got)
		}
		if e, ok := querier.Table(false).Get(vid); ok && e.Failures == 0 {
			t.Error("the timeout was not counted against the node in the routing table")
		}
		if got := lookups(concurrent); got != 0 {
			t.Errorf("lookups right after its timeout sent %d queries to the silent node, want 0", got)
		}
		time.Sleep(2 * time.Minute) // fake time: past the first quiet window (quietBase)
		if got := lookups(concurrent); got < 1 || got > 4 {
			t.Errorf("after the quiet window, %d lookups sent %d queries to the silent node, want 1 to 4", concurrent, got)
		}
	})
}

// TestConcurrentLookupsShareUnansweredBootstrap: lookups started together
// on an empty table share one query to a bootstrap address that does not
// answer, and all of them end.
func TestConcurrentLookupsShareUnansweredBootstrap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim, err := simnet.New(simnet.Config{Latency: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer sim.Close()
		dead, _ := sim.NewConn4() // reads, never answers
		var (
			mu      sync.Mutex
			packets int
		)
		go func() {
			buf := make([]byte, 2048)
			for {
				if _, _, err := dead.ReadFromUDPAddrPort(buf); err != nil {
					return
				}
				mu.Lock()
				packets++
				mu.Unlock()
			}
		}()
		defer dead.Close()
		nc, _ := sim.NewConn4()
		node, err := lightdht.New(lightdht.LocalTestNet(lightdht.Config{Conn4: nc, NoMaintenance: true,
			Bootstrap: []netip.AddrPort{dead.AddrPort()}}))
		if err != nil {
			t.Fatal(err)
		}
		go node.Serve(context.Background())
		defer node.Close()
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				if _, err := node.FindNode(context.Background(), krpc.RandomID()); err == nil {
					t.Error("a lookup through a silent bootstrap node succeeded")
				}
			})
		}
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		if want := 1 + lightdht.DefaultRetries; packets != want {
			t.Errorf("8 lookups sent %d packets to the silent bootstrap node, want %d (one query)", packets, want)
		}
	})
}
