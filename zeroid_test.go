package lightdht_test

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lightdht/lightdht"
	"github.com/lightdht/lightdht/internal/simnet"
	"github.com/lightdht/lightdht/krpc"
)

// TestNoSightingWithoutID: a ping to an address that never answers, and a
// bootstrap from it, time out before the node knows who is there; the
// observer hears of neither (a sighting always carries a node ID).
func TestNoSightingWithoutID(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim, err := simnet.New(simnet.Config{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sim.Close() })
		silent := netip.MustParseAddrPort("127.77.0.1:6881")
		var (
			mu   sync.Mutex
			seen []lightdht.Sighting
		)
		c, _ := sim.NewConn4()
		n, err := lightdht.New(lightdht.Config{Conn4: c, Bootstrap: []netip.AddrPort{silent}, NoMaintenance: true, QueryTimeout: time.Second,
			Observer: lightdht.ObserverFunc(func(s lightdht.Sighting) {
				mu.Lock()
				seen = append(seen, s)
				mu.Unlock()
			})})
		if err != nil {
			t.Fatal(err)
		}
		go n.Serve(context.Background())
		t.Cleanup(func() { n.Close() })
		if _, _, err := n.Ping(context.Background(), silent); !errors.Is(err, krpc.ErrTimeout) {
			t.Fatalf("ping of a silent address: %v, want a timeout", err)
		}
		if _, err := n.Bootstrap(context.Background()); err == nil {
			t.Fatal("bootstrap from a silent address succeeded")
		}
		mu.Lock()
		defer mu.Unlock()
		if len(seen) != 0 {
			t.Errorf("%d sightings of an address whose ID was never learned, e.g. %+v", len(seen), seen[0])
		}
	})
}
