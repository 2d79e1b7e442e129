package lightdht_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lightdht/lightdht"
	"github.com/lightdht/lightdht/internal/simnet"
	"github.com/lightdht/lightdht/krpc"
)

// testNet is a network of lightdht nodes on simnet.
type testNet struct {
	sim   *simnet.Network
	nodes []*lightdht.Node
}

// newTestNet starts size nodes, each bootstrapping from the first, then
// runs a second bootstrap round so that early nodes learn of later ones,
// then applies netCfg's loss. It must run inside a synctest bubble.
func newTestNet(t *testing.T, size int, netCfg simnet.Config, tweak func(*lightdht.Config)) *testNet {
	t.Helper()
	// The network is built without loss, as a network whose tables have
	// formed over time; the requested loss applies to what the test
	// then measures.
	build := netCfg
	build.Loss = 0
	sim, err := simnet.New(build)
	if err != nil {
		t.Fatal(err)
	}
	tn := &testNet{sim: sim}
	var first netip.AddrPort
	for i := range size {
		conn, err := sim.NewConn4()
		if err != nil {
			t.Fatal(err)
		}
		// One host, one /24: the limits meant for the public DHT would
		// drop thousands of replies here (per /24 and per send cap) and
		// make lookups depend on which ones; tweak sets a limit a test is
		// about.
		cfg := lightdht.LocalTestNet(lightdht.Config{Conn4: conn, NoMaintenance: true, QueryTimeout: time.Second})
		if i > 0 {
			cfg.Bootstrap = []netip.AddrPort{first}
		} else {
			first = conn.AddrPort()
		}
		if tweak != nil {
			tweak(&cfg)
		}
		n, err := lightdht.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		go n.Serve(context.Background())
		tn.nodes = append(tn.nodes, n)
	}
	t.Cleanup(func() {
		for _, n := range tn.nodes {
			n.Close()
		}
		sim.Close()
	})
	ctx := context.Background()
	for round := range 2 {
		var wg sync.WaitGroup
		for i, n := range tn.nodes[1:] {
			if round == 0 {
				// Join one at a time, as a growing network does.
				n.Bootstrap(ctx)
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := n.Bootstrap(ctx); err != nil {
					t.Logf("node %d: second bootstrap: %v", i+1, err)
				}
			}()
		}
		wg.Wait()
	}
	// Fake time: past the quiet windows of the addresses whose queries
	// timed out while hundreds of bootstraps ran at once (full receive
	// queues), which lookups would otherwise skip as a formed network's
	// would not (see recall.go); short of the 15 minutes after which the
	// table entries stop being good.
	time.Sleep(5 * time.Minute)
	if err := sim.SetConditions(netCfg.Latency, netCfg.Jitter, netCfg.Loss); err != nil {
		t.Fatal(err)
	}
	return tn
}

// trueClosest returns the k node IDs closest to target, leaving out skip.
func (tn *testNet) trueClosest(target krpc.ID, k int, skip krpc.ID) []krpc.ID {
	ids := make([]krpc.ID, 0, len(tn.nodes))
	for _, n := range tn.nodes {
		if n.ID() != skip {
			ids = append(ids, n.ID())
		}
	}
	slices.SortFunc(ids, func(a, b krpc.ID) int { return a.Xor(target).Cmp(b.Xor(target)) })
	return ids[:k]
}

func lookupAccuracy(t *testing.T, tn *testNet, trials int, seed uint64) (exact int, queries int) {
	t.Helper()
	skipped := 0
	defer func() { t.Logf("%d candidates skipped as recently timed out", skipped) }()
	r := rand.New(rand.NewPCG(seed, 1))
	for range trials {
		from := tn.nodes[r.IntN(len(tn.nodes))]
		var target krpc.ID
		for i := range target {
			target[i] = byte(r.Uint32())
		}
		res, err := from.FindNode(context.Background(), target)
		if err != nil {
			t.Errorf("FindNode: %v", err)
			continue
		}
		queries += res.Stats.Queries
		skipped += res.Stats.Skipped
		got := make([]krpc.ID, len(res.Nodes))
		for i, ni := range res.Nodes {
			got[i] = ni.ID
		}
		if slices.Equal(got, tn.trueClosest(target, 8, from.ID())) {
			exact++
		}
	}
	return exact, queries
}

// lossPhases are the conditions the 500-node tests measure one network
// under, in turn: building a network of that size is most of their cost
// under the race detector, so it is built once per test.
var lossPhases = []struct {
	name string
	loss float64
}{{"no loss", 0}, {"5% loss", 0.05}}

// TestLookupFindsTrueClosest: on 500 nodes, find_node lookups return
// exactly the 8 closest nodes in at least 99% of trials, with no loss and
// with 5% loss.
func TestLookupFindsTrueClosest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const latency = 20 * time.Millisecond
		tn := newTestNet(t, 500, simnet.Config{Seed: 42, Latency: latency}, nil)
		for p, ph := range lossPhases {
			if err := tn.sim.SetConditions(latency, 0, ph.loss); err != nil {
				t.Fatal(err)
			}
			const trials = 200
			exact, queries := lookupAccuracy(t, tn, trials, 9+uint64(p)) // new lookups, not the last phase's again
			t.Logf("%s: %d/%d lookups exact, %.1f queries per lookup", ph.name, exact, trials, float64(queries)/trials)
			if exact*100 < trials*99 {
				t.Errorf("%s: %d/%d lookups found the true 8 closest nodes, want at least 99%%", ph.name, exact, trials)
			}
		}
	})
}

// TestAnnounceThenGetPeers: a peer announced by one node is found by
// get_peers from another, with and without loss, in both API styles.
func TestAnnounceThenGetPeers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const latency = 20 * time.Millisecond
		tn := newTestNet(t, 500, simnet.Config{Seed: 5, Latency: latency}, nil)
		ctx := context.Background()
		for p, ph := range lossPhases {
			if err := tn.sim.SetConditions(latency, 0, ph.loss); err != nil {
				t.Fatal(err)
			}
			r := rand.New(rand.NewPCG(3, 4+uint64(p)))
			for trial := range 20 {
				ih := krpc.RandomID()
				announcer := tn.nodes[r.IntN(len(tn.nodes))]
				port := 10000 + 100*p + trial
				ar, err := announcer.Announce(ctx, ih, port)
				if err != nil {
					t.Fatalf("%s: Announce: %v", ph.name, err)
				}
				if len(ar.AnnouncedTo) == 0 {
					t.Fatalf("%s: announced to no node", ph.name)
				}
				want := netip.AddrPortFrom(announcer.Addr().Addr(), uint16(port))
				seeker := tn.nodes[r.IntN(len(tn.nodes))]
				if trial%2 == 0 {
					res, err := seeker.GetPeers(ctx, ih)
					if err != nil {
						t.Fatalf("%s: GetPeers: %v", ph.name, err)
					}
					if !slices.Contains(res.Peers, want) {
						t.Errorf("%s, trial %d: get_peers found %v, want %v (announced to %d nodes)", ph.name, trial, res.Peers, want, len(ar.AnnouncedTo))
					}
					continue
				}
				// Callback style: peers stream in before completion.
				var streamed []netip.AddrPort
				done := make(chan lightdht.GetPeersResult, 1)
				seeker.GetPeersAsync(ctx, ih, func(ps []netip.AddrPort) {
					streamed = append(streamed, ps...)
				}, func(res lightdht.GetPeersResult, err error) {
					if err != nil {
						t.Errorf("%s: GetPeersAsync: %v", ph.name, err)
					}
					done <- res
				})
				res := <-done
				if !slices.Contains(streamed, want) || !slices.Equal(streamed, res.Peers) {
					t.Errorf("%s, trial %d: streamed %v, final %v, want %v in both", ph.name, trial, streamed, res.Peers, want)
				}
			}
		}
	})
}

// TestObserverSeesEverything checks the observer hook reports replies,
// queries and reported nodes with their details.
func TestObserverSeesEverything(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		counts := map[lightdht.Source]int{}
		var withRTT, withVersion, withReporter atomic.Int32
		tn := newTestNet(t, 50, simnet.Config{Seed: 1, Latency: 10 * time.Millisecond}, func(c *lightdht.Config) {
			c.Observer = lightdht.ObserverFunc(func(s lightdht.Sighting) {
				mu.Lock()
				counts[s.Source]++
				mu.Unlock()
				if s.Source == lightdht.SourceReply && s.RTT == 20*time.Millisecond {
					withRTT.Add(1)
				}
				if s.Version == string(lightdht.DefaultVersion) {
					withVersion.Add(1)
				}
				if s.Source == lightdht.SourceReported && !s.Reporter.ID.IsZero() {
					withReporter.Add(1)
				}
				if !s.SecureID {
					t.Errorf("loopback node %v not reported as BEP 42 exempt", s.Node)
				}
			})
		})
		_ = tn
		mu.Lock()
		defer mu.Unlock()
		if counts[lightdht.SourceReply] == 0 || counts[lightdht.SourceQuery] == 0 || counts[lightdht.SourceReported] == 0 {
			t.Fatalf("sightings by source: %v", counts)
		}
		if int(withRTT.Load()) != counts[lightdht.SourceReply] {
			t.Errorf("%d of %d reply sightings carry the 20ms RTT", withRTT.Load(), counts[lightdht.SourceReply])
		}
		if int(withReporter.Load()) != counts[lightdht.SourceReported] {
			t.Errorf("%d of %d reported sightings name their reporter", withReporter.Load(), counts[lightdht.SourceReported])
		}
		if withVersion.Load() == 0 {
			t.Error("no sighting carried the client version")
		}
	})
}

func TestLookupWithoutNodes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim, _ := simnet.New(simnet.Config{})
		defer sim.Close()
		conn, _ := sim.NewConn4()
		n, err := lightdht.New(lightdht.Config{Conn4: conn, NoMaintenance: true})
		if err != nil {
			t.Fatal(err)
		}
		go n.Serve(context.Background())
		defer n.Close()
		if _, err := n.FindNode(context.Background(), krpc.RandomID()); !errors.Is(err, lightdht.ErrNoNodes) {
			t.Errorf("lookup on an empty node: %v, want ErrNoNodes", err)
		}
	})
}

func TestConfigErrors(t *testing.T) {
	sim, _ := simnet.New(simnet.Config{})
	defer sim.Close()
	conn, _ := sim.NewConn4()
	for _, tc := range []struct {
		name      string
		cfg       lightdht.Config
		wantField string
	}{
		{"no socket", lightdht.Config{}, "Conn4/Conn6"},
		{"negative K", lightdht.Config{Conn4: conn, K: -1}, "K"},
		{"negative Alpha", lightdht.Config{Conn4: conn, Alpha: -1}, "Alpha"},
		{"negative QueryTimeout", lightdht.Config{Conn4: conn, QueryTimeout: -time.Second}, "QueryTimeout"},
		{"negative StallAfter", lightdht.Config{Conn4: conn, StallAfter: -1}, "StallAfter"},
		{"negative PerIPBurst", lightdht.Config{Conn4: conn, PerIPBurst: -1}, "PerIPBurst"},
		{"negative PrefixReplyBurst", lightdht.Config{Conn4: conn, PrefixReplyBurst: -1}, "PrefixReplyBurst"},
		{"negative PeerTTL", lightdht.Config{Conn4: conn, PeerTTL: -1}, "PeerTTL"},
		{"negative MaxValues", lightdht.Config{Conn4: conn, MaxValues: -1}, "MaxValues"},
		{"negative SampleInterval", lightdht.Config{Conn4: conn, SampleInterval: -1}, "SampleInterval"},
		{"SampleInterval above BEP 51", lightdht.Config{Conn4: conn, SampleInterval: lightdht.MaxSampleInterval + 1}, "SampleInterval"},
		{"negative ItemTTL", lightdht.Config{Conn4: conn, ItemTTL: -1}, "ItemTTL"},
		{"negative MaxItems", lightdht.Config{Conn4: conn, MaxItems: -1}, "MaxItems"},
		{"amplification below 1", lightdht.Config{Conn4: conn, MaxAmplification: 0.5}, "MaxAmplification"},
		{"zero bootstrap address", lightdht.Config{Conn4: conn, Bootstrap: []netip.AddrPort{{}}}, "Bootstrap[0]"},
		{"bootstrap port 0", lightdht.Config{Conn4: conn, Bootstrap: []netip.AddrPort{
			netip.MustParseAddrPort("127.0.0.1:6881"), netip.MustParseAddrPort("127.0.0.1:0")}}, "Bootstrap[1]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := lightdht.New(tc.cfg)
			if err == nil {
				t.Fatalf("New accepted %+v", tc.cfg)
			}
			var ce *lightdht.ConfigError
			if !errors.As(err, &ce) || ce.Field != tc.wantField {
				t.Fatalf("New: %v (%T), want a *lightdht.ConfigError for %s", err, err, tc.wantField)
			}
			if want := "lightdht: config: " + tc.wantField + ": "; !strings.HasPrefix(err.Error(), want) {
				t.Errorf("error %q does not start with %q", err, want)
			}
		})
	}
}
