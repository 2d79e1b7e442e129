package lightdht_test

import (
	"context"
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
