package lightdht_test

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lightdht/lightdht"
	"github.com/lightdht/lightdht/internal/simnet"
	"github.com/lightdht/lightdht/krpc"
)

// TestRetriesAndSendRateReachTransport: the node's defaults, not the
// transport's, decide the resends of a query and the send cap.
func TestRetriesAndSendRateReachTransport(t *testing.T) {
	for _, tc := range []struct {
		name        string
		retries     int
		wantResends uint64
	}{
		{"default", 0, lightdht.DefaultRetries},
		{"two", 2, 2},
		{"none", -1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				sim, _ := simnet.New(simnet.Config{})
				defer sim.Close()
				silent, _ := sim.NewConn4() // never read: no reply
				c, _ := sim.NewConn4()
				n, err := lightdht.New(lightdht.Config{Conn4: c, NoMaintenance: true, Retries: tc.retries})
				if err != nil {
					t.Fatal(err)
				}
				go n.Serve(context.Background())
				defer n.Close()
				if _, _, err := n.Ping(context.Background(), silent.AddrPort()); err == nil {
					t.Fatal("ping of a silent address succeeded")
				}
				if got := n.Stats().Transport4.Resends; got != tc.wantResends {
					t.Errorf("resends %d, want %d", got, tc.wantResends)
				}
			})
		})
	}

	for _, tc := range []struct {
		name     string
		sendRate float64
		wantSent uint64 // of 500 pings, sent at once
	}{
		{"default cap", 0, lightdht.DefaultSendRate / 10}, // the bucket: a tenth of a second
		{"no cap", -1, 500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				sim, _ := simnet.New(simnet.Config{})
				defer sim.Close()
				silent, _ := sim.NewConn4()
				c, _ := sim.NewConn4()
				n, err := lightdht.New(lightdht.Config{Conn4: c, NoMaintenance: true, SendRate: tc.sendRate})
				if err != nil {
					t.Fatal(err)
				}
				go n.Serve(context.Background())
				defer n.Close()
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				for range 500 {
					n.PingAsync(ctx, silent.AddrPort(), func(krpc.NodeInfo, time.Duration, error) {})
				}
				synctest.Wait()
				if got := n.Stats().Transport4.PacketsSent; got != tc.wantSent {
					t.Errorf("%d packets sent at once, want %d", got, tc.wantSent)
				}
			})
		})
	}
}

// TestLocalTestNet: the profile lifts the public-DHT limits left at their
// defaults and keeps the ones a caller set.
func TestLocalTestNet(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   lightdht.Config
		want lightdht.Config
	}{
		{"defaults", lightdht.Config{K: 4},
			lightdht.Config{K: 4, PerIPRate: -1, PrefixReplyRate: -1, SendRate: -1, IPsPerBucket: -1}},
		{"limits set", lightdht.Config{PerIPRate: 5, PrefixReplyRate: 1000, SendRate: 200, IPsPerBucket: 2},
			lightdht.Config{PerIPRate: 5, PrefixReplyRate: 1000, SendRate: 200, IPsPerBucket: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := lightdht.LocalTestNet(tc.in)
			if got.PerIPRate != tc.want.PerIPRate || got.PrefixReplyRate != tc.want.PrefixReplyRate ||
				got.SendRate != tc.want.SendRate || got.IPsPerBucket != tc.want.IPsPerBucket || got.K != tc.want.K {
				t.Errorf("LocalTestNet(%+v) = %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}

	// On a node: 100 queries from one address in one instant are all
	// answered, where the default per-IP burst of a new source is 25.
	synctest.Test(t, func(t *testing.T) {
		sim, _ := simnet.New(simnet.Config{})
		defer sim.Close()
		c, _ := sim.NewConn4()
		n, err := lightdht.New(lightdht.LocalTestNet(lightdht.Config{Conn4: c, NoMaintenance: true}))
		if err != nil {
			t.Fatal(err)
		}
		go n.Serve(context.Background())
		defer n.Close()
		qc, _ := sim.NewConn4()
		q, err := krpc.New(krpc.Config{Conn: qc, Retries: krpc.NoRetries})
		if err != nil {
			t.Fatal(err)
		}
		go q.Serve(context.Background())
		defer q.Close()
		var answered atomic.Int32
		for range 100 {
			q.QueryAsync(context.Background(), c.AddrPort(), &krpc.Msg{Q: krpc.MethodPing, A: krpc.Args{ID: krpc.RandomID()}},
				func(_ krpc.Response, err error) {
					if err == nil {
						answered.Add(1)
					}
				})
		}
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if got := answered.Load(); got != 100 {
			t.Errorf("%d of 100 queries answered", got)
		}
	})
}
