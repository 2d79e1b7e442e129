package lightdht_test

import (
	"context"
	"net/netip"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lightdht/lightdht"
	"github.com/lightdht/lightdht/internal/simnet"
	"github.com/lightdht/lightdht/krpc"
)

// TestGetPeersAsyncCallbacks: on a dual-stack network where many nodes
// hold peers, GetPeersAsync's onPeers is never called concurrently (the two
// families' lookups run at once), never after done, and never twice with
// one peer; done comes once, with every peer streamed.
func TestGetPeersAsyncCallbacks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim, err := simnet.New(simnet.Config{Seed: 8, Latency: 5 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sim.Close() }) // registered first: runs after the nodes close
		nodes, _ := dualStackNodes(t, sim, 60)
		ctx := context.Background()
		for range 2 {
			for _, n := range nodes[1:] {
				n.Bootstrap(ctx)
			}
		}
		ih := krpc.RandomID()
		for i, n := range nodes[1:21] {
			if _, err := n.Announce(ctx, ih, 20000+i); err != nil {
				t.Fatalf("announce %d: %v", i, err)
			}
		}

		var (
			inCall, calls, afterDone, dones atomic.Int32
			ended                           atomic.Bool
			streamed                        []netip.AddrPort // guarded by inCall being 1
			result                          lightdht.GetPeersResult
		)
		finished := make(chan struct{})
		nodes[0].GetPeersAsync(ctx, ih, func(ps []netip.AddrPort) {
			if inCall.Add(1) != 1 {
				t.Error("onPeers called concurrently")
			}
			calls.Add(1)
			if ended.Load() {
				afterDone.Add(1)
			}
			streamed = append(streamed, ps...)
			for range 100 {
				runtime.Gosched() // give another caller the chance to overlap
			}
			inCall.Add(-1)
		}, func(r lightdht.GetPeersResult, err error) {
			if err != nil {
				t.Errorf("GetPeersAsync: %v", err)
			}
			if inCall.Load() != 0 {
				t.Error("done called during onPeers")
			}
			ended.Store(true)
			result = r
			if dones.Add(1) == 1 {
				close(finished)
			}
		})
		<-finished
		time.Sleep(30 * time.Second) // every query has ended
		synctest.Wait()

		if n := dones.Load(); n != 1 {
			t.Errorf("done called %d times", n)
		}
		if n := afterDone.Load(); n != 0 {
			t.Errorf("onPeers called %d times after done", n)
		}
		if calls.Load() < 2 {
			t.Errorf("onPeers called %d times, want several batches", calls.Load())
		}
		sorted := slices.Clone(streamed)
		slices.SortFunc(sorted, netip.AddrPort.Compare)
		if len(slices.Compact(sorted)) != len(streamed) {
			t.Errorf("onPeers repeated peers: %v", streamed)
		}
		final := slices.Clone(result.Peers)
		slices.SortFunc(final, netip.AddrPort.Compare)
		if !slices.Equal(sorted, final) {
			t.Errorf("streamed %v, done had %v", sorted, final)
		}
		if len(final) != 40 { // 20 announcers, each over IPv4 and IPv6
			t.Errorf("found %d peers, want 40", len(final))
		}
	})
}

// TestLateReply: a bootstrap node that answers after the lookup has ended
// still enters the routing table; the lookup did not wait for it.
func TestLateReply(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim, err := simnet.New(simnet.Config{Seed: 9, Latency: 5 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer sim.Close()
		var boot []netip.AddrPort
		for i := range 20 {
			c, _ := sim.NewConn4()
			// Every node is in 127.0.0.0/24. Without LocalTestNet's lifted
			// limits, about 1 run in 60 had a node drop the lookup's query,
			// and the lookup waited out its 2 s timeout: a test of the slow
			// node alone needs every other node to answer.
			n, err := lightdht.New(lightdht.LocalTestNet(lightdht.Config{Conn4: c, Bootstrap: boot, NoMaintenance: true}))
			if err != nil {
				t.Fatal(err)
			}
			go n.Serve(context.Background())
			defer n.Close()
			if i == 0 {
				boot = []netip.AddrPort{c.AddrPort()}
			} else {
				n.Bootstrap(context.Background())
			}
		}

		// slow answers its first query 1.5s late, within the querier's
		// 2s timeout but long after the lookup's other queries.
		// Its ID differs from the seeker's in the last bit only, so it
		// belongs in the seeker's deepest bucket, which has room.
		seekerID := krpc.RandomID()
		slowID := seekerID
		slowID[krpc.IDLen-1] ^= 1
		slowConn, _ := sim.NewConn4()
		go func() {
			buf := make([]byte, 1500)
			nb, from, err := slowConn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			var q krpc.Msg
			if err := krpc.Unmarshal(buf[:nb], &q); err != nil {
				t.Errorf("slow node: %v", err)
				return
			}
			time.Sleep(1500 * time.Millisecond)
			reply := krpc.Msg{T: q.T, Y: krpc.KindReply, R: krpc.Return{ID: slowID}}
			b, _ := reply.AppendBinary(nil)
			slowConn.WriteToUDPAddrPort(b, from)
		}()

		c, _ := sim.NewConn4()
		seeker, err := lightdht.New(lightdht.Config{ID: seekerID, Conn4: c, NoMaintenance: true, FixedTimeouts: true,
			Bootstrap: []netip.AddrPort{slowConn.AddrPort(), boot[0]}})
		if err != nil {
			t.Fatal(err)
		}
		go seeker.Serve(context.Background())
		defer seeker.Close()
		inTable := func() bool {
			found := false
			for _, e := range seeker.Table(false).Closest(slowID, 1) {
				found = e.ID == slowID
			}
			return found
		}

		res, err := seeker.FindNode(context.Background(), slowID)
		if err != nil {
			t.Fatal(err)
		}
		if elapsed := res.Stats.Duration; elapsed >= 1500*time.Millisecond {
			t.Fatalf("the lookup took %v: it waited for the slow node; stats %+v, %d nodes", elapsed, res.Stats, len(res.Nodes))
		}
		if inTable() {
			t.Fatal("the slow node is in the table before it answered")
		}
		for _, ni := range res.Nodes {
			if ni.ID == slowID {
				t.Fatal("the slow node is in the result before it answered")
			}
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if !inTable() {
			t.Error("the slow node's late reply did not reach the routing table")
		}
	})
}
