package crawler_test

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lightdht/lightdht/crawler"
	"github.com/lightdht/lightdht/internal/simnet"
	"github.com/lightdht/lightdht/observe"
)

// sightings keeps every sighting a crawl records.
type sightings struct {
	*recorder
	mu  sync.Mutex
	all []observe.Sighting
}

func (r *sightings) Observe(s observe.Sighting) {
	r.recorder.Observe(s)
	r.mu.Lock()
	r.all = append(r.all, s)
	r.mu.Unlock()
}

// TestNoSightingWithoutID: a bootstrap address that never answers times
// out before its ID is known, and is not recorded at all (it used to be,
// with the all-zero ID); the network's nodes behind the other bootstrap
// address are recorded, each with its ID.
func TestNoSightingWithoutID(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(t, simnet.Config{Seed: 9, Latency: 5 * time.Millisecond})
		dn := newDHTNet(t, sim, loopbackAddrs(10), nil)
		conn, _ := sim.NewConn4()
		silent := []netip.AddrPort{netip.MustParseAddrPort("127.77.0.1:6881"), netip.MustParseAddrPort("127.77.0.2:6881")}
		rec := &sightings{recorder: newRecorder()}
		c, err := crawler.New(crawler.Config{Conn: conn, Bootstrap: append(silent, dn.addrs[0]), TestNet: true, Rate: 1000,
			Timeout: time.Second, Recorder: rec})
		if err != nil {
			t.Fatal(err)
		}
		res, err := c.Run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if res.Replied != len(dn.nodes) {
			t.Errorf("%d nodes replied, want the network's %d", res.Replied, len(dn.nodes))
		}
		rec.mu.Lock()
		defer rec.mu.Unlock()
		for _, s := range rec.all {
			if s.Node.ID.IsZero() {
				t.Errorf("sighting with no ID: %+v", s)
			}
			for _, a := range silent {
				if s.Node.Addr == a {
					t.Errorf("the silent bootstrap address %v was recorded: %+v", a, s)
				}
			}
		}
		if len(rec.all) == 0 {
			t.Fatal("nothing recorded")
		}
	})
}
