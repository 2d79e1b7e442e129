package lightdht_test

import (
	"context"
	"errors"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lightdht/lightdht"
	"github.com/lightdht/lightdht/bep42"
	"github.com/lightdht/lightdht/internal/simnet"
	"github.com/lightdht/lightdht/krpc"
	"github.com/lightdht/lightdht/table"
)

// TestSecureIDEnforcement uses public-looking addresses, which exist only
// inside simnet: a querier whose ID follows BEP 42 for its IP enters the
// table; one whose ID does not is kept out when enforcement is on, and
// admitted (but reported as insecure) when it is off.
func TestSecureIDEnforcement(t *testing.T) {
	for _, enforce := range []bool{true, false} {
		t.Run(map[bool]string{true: "enforced", false: "off"}[enforce], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				sim, _ := simnet.New(simnet.Config{})
				defer sim.Close()
				nc, _ := sim.NewConn4()
				var insecureSeen atomic.Int32
				node, err := lightdht.New(lightdht.Config{Conn4: nc, NoMaintenance: true, EnforceSecureID: enforce,
					Observer: lightdht.ObserverFunc(func(s lightdht.Sighting) {
						if !s.SecureID {
							insecureSeen.Add(1)
						}
					})})
				if err != nil {
					t.Fatal(err)
				}
				go node.Serve(context.Background())
				defer node.Close()

				query := func(addr string, id krpc.ID) {
					c, err := sim.Listen(netip.MustParseAddrPort(addr))
					if err != nil {
						t.Fatal(err)
					}
					tr, _ := krpc.New(krpc.Config{Conn: c})
					go tr.Serve(context.Background())
					defer tr.Close()
					if _, err := tr.Query(context.Background(), nc.AddrPort(), &krpc.Msg{Q: krpc.MethodPing, A: krpc.Args{ID: id}}); err != nil {
						t.Fatalf("ping from %s: %v", addr, err)
					}
				}
				good := bep42.Derive(netip.MustParseAddr("124.31.75.21"), krpc.RandomID())
				bad := krpc.RandomID()
				for bep42.Valid(bad, netip.MustParseAddr("21.75.31.124")) {
					bad = krpc.RandomID()
				}
				query("124.31.75.21:6881", good)
				query("21.75.31.124:6881", bad)

				if _, ok := node.Table(false).Get(good); !ok {
					t.Error("node with a valid BEP 42 ID not admitted")
				}
				_, admitted := node.Table(false).Get(bad)
				if admitted == enforce {
					t.Errorf("insecure node admitted=%v with enforcement %v", admitted, enforce)
				}
				if insecureSeen.Load() != 1 {
					t.Errorf("%d sightings reported insecure, want 1", insecureSeen.Load())
				}
				if rejected := node.Stats().InsecureIDsRejected; (rejected > 0) != enforce {
					t.Errorf("InsecureIDsRejected = %d with enforcement %v", rejected, enforce)
				}
			})
		})
	}
}

// TestPublicIPGivesSecureID: a node told its public IP derives a BEP 42 ID.
func TestPublicIPGivesSecureID(t *testing.T) {
	sim, _ := simnet.New(simnet.Config{})
	defer sim.Close()
	nc, _ := sim.NewConn4()
	ip := netip.MustParseAddr("43.213.53.83")
	node, err := lightdht.New(lightdht.Config{Conn4: nc, PublicIP: ip})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	if !bep42.Valid(node.ID(), ip) {
		t.Errorf("ID %v is not BEP 42 secure for %v", node.ID(), ip)
	}
}

// TestMaintenance: Serve bootstraps by itself, refreshes stale buckets
// after 15 minutes, and stops with Close.
func TestMaintenance(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim, _ := simnet.New(simnet.Config{Latency: 5 * time.Millisecond})
		t.Cleanup(func() { sim.Close() }) // runs after the nodes' cleanups
		var boot []netip.AddrPort
		var nodes []*lightdht.Node
		for i := range 60 {
			c, _ := sim.NewConn4()
			// The plain table: 60 nodes fit in one extended bucket, which
			// the others' own refreshes keep fresh.
			n, err := lightdht.New(lightdht.Config{Conn4: c, Bootstrap: boot, PlainTable: true})
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- n.Serve(context.Background()) }()
			t.Cleanup(func() {
				n.Close()
				if err := <-done; err != nil {
					t.Errorf("Serve: %v", err)
				}
			})
			if i == 0 {
				boot = []netip.AddrPort{c.AddrPort()}
			}
			nodes = append(nodes, n)
			time.Sleep(time.Second) // let it join before the next one starts
		}
		last := nodes[len(nodes)-1]
		if last.Table(false).Len() < 8 {
			t.Fatalf("a node that bootstrapped by itself holds %d nodes", last.Table(false).Len())
		}
		before := last.Stats().Lookups
		time.Sleep(17 * time.Minute)
		synctest.Wait()
		if after := last.Stats().Lookups; after <= before {
			t.Errorf("no refresh lookups in 17 minutes (%d before, %d after)", before, after)
		}
	})
}

// TestResearchTableNode: a node on the prefix table keeps every node it
// has heard from, and its lookups still work.
func TestResearchTableNode(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tn := newTestNet(t, 100, simnet.Config{Seed: 4, Latency: 10 * time.Millisecond}, func(c *lightdht.Config) {
			c.Table = table.Prefix
		})
		first := tn.nodes[0]
		// Every other node joined through the first: it has heard from all.
		if got := first.Table(false).Len(); got != 99 {
			t.Errorf("prefix table of the bootstrap node holds %d nodes, want 99", got)
		}
		exact, _ := lookupAccuracy(t, tn, 50, 3)
		if exact != 50 {
			t.Errorf("%d/50 exact lookups", exact)
		}
	})
}

func TestPingAsync(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil)
		sim := r.sim
		c, _ := sim.NewConn4()
		pinger, err := lightdht.New(lightdht.Config{Conn4: c, NoMaintenance: true})
		if err != nil {
			t.Fatal(err)
		}
		go pinger.Serve(context.Background())
		defer pinger.Close()
		var calls atomic.Int32
		var got krpc.NodeInfo
		start := time.Now()
		pinger.PingAsync(context.Background(), r.addr, func(ni krpc.NodeInfo, rtt time.Duration, err error) {
			if err != nil || rtt != 2*time.Millisecond {
				t.Errorf("ping: rtt %v err %v", rtt, err)
			}
			got = ni
			calls.Add(1)
		})
		if time.Since(start) != 0 {
			t.Error("PingAsync blocked")
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if calls.Load() != 1 || got.ID != r.node.ID() {
			t.Errorf("callback ran %d times with %v", calls.Load(), got)
		}
	})
}

// TestCloseLeavesNoGoroutines: nodes with maintenance on and lookups in
// flight close cleanly, in real time.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		sim, _ := simnet.New(simnet.Config{Latency: time.Millisecond, Loss: 0.1, Seed: 8})
		defer sim.Close()
		var boot []netip.AddrPort
		var nodes []*lightdht.Node
		for i := range 20 {
			c, _ := sim.NewConn4()
			n, _ := lightdht.New(lightdht.Config{Conn4: c, Bootstrap: boot, QueryTimeout: 50 * time.Millisecond})
			go n.Serve(context.Background())
			if i == 0 {
				boot = []netip.AddrPort{c.AddrPort()}
			}
			nodes = append(nodes, n)
		}
		var wg sync.WaitGroup
		for _, n := range nodes {
			wg.Add(1)
			n.GetPeersAsync(context.Background(), krpc.RandomID(), nil, func(lightdht.GetPeersResult, error) { wg.Done() })
		}
		time.Sleep(20 * time.Millisecond)
		for _, n := range nodes {
			if err := n.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		}
		wg.Wait()
	}()
	// Close has returned, but the goroutines it ended may not have been
	// scheduled to exit yet: wait for them, a minute at most (a leak
	// never exits; a busy machine only delays the exits).
	deadline := time.Now().Add(time.Minute)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if after := runtime.NumGoroutine(); after > before {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines before, %d after closing\n%s", before, after, buf[:runtime.Stack(buf, true)])
	}
}

// TestCloseWhileServeStarts: Close may run while Serve is starting; the
// race detector checks that Serve's start of the maintenance goroutine is
// ordered with Close's wait for it.
func TestCloseWhileServeStarts(t *testing.T) {
	sim, err := simnet.New(simnet.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	for range 300 {
		c, _ := sim.NewConn4()
		n, err := lightdht.New(lightdht.Config{Conn4: c})
		if err != nil {
			t.Fatal(err)
		}
		served := make(chan error, 1)
		go func() { served <- n.Serve(context.Background()) }()
		n.Close()
		if err := <-served; err != nil && !errors.Is(err, krpc.ErrClosed) {
			t.Fatalf("Serve: %v", err)
		}
	}
}
