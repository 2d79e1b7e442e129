package crawler_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lightdht/lightdht"
	"github.com/lightdht/lightdht/crawler"
	"github.com/lightdht/lightdht/internal/simnet"
	"github.com/lightdht/lightdht/krpc"
	"github.com/lightdht/lightdht/observe"
)

// recorder keeps what a crawl reports.
type recorder struct {
	mu          sync.Mutex
	replied     map[krpc.ID]bool
	timedOut    map[krpc.ID]bool     // nodes with a timeout recorded
	timeoutsBy  map[krpc.ID][]string // node -> methods of its queries that timed out
	lastReply   map[krpc.ID]time.Time
	sources     map[observe.Source]int
	samples     map[krpc.ID][]time.Time // node -> times it was sampled
	harvest     map[krpc.ID]bool
	reported    int
	intervals   []int
	peers       map[krpc.ID][]netip.AddrPort
	sampleAddrs map[krpc.ID][]netip.AddrPort
}

func newRecorder() *recorder {
	return &recorder{replied: map[krpc.ID]bool{}, timedOut: map[krpc.ID]bool{}, timeoutsBy: map[krpc.ID][]string{},
		lastReply: map[krpc.ID]time.Time{}, sources: map[observe.Source]int{},
		samples: map[krpc.ID][]time.Time{}, sampleAddrs: map[krpc.ID][]netip.AddrPort{}, harvest: map[krpc.ID]bool{}}
}

func (r *recorder) Observe(s observe.Sighting) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sources[s.Source]++
	switch s.Source {
	case observe.SourceReply:
		r.replied[s.Node.ID] = true
		r.lastReply[s.Node.ID] = s.Time
	case observe.SourceTimeout:
		r.timedOut[s.Node.ID] = true
		r.timeoutsBy[s.Node.ID] = append(r.timeoutsBy[s.Node.ID], s.Method)
	}
}

func (r *recorder) RecordPeer(ih krpc.ID, peer netip.AddrPort, source string, t time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.peers == nil {
		r.peers = map[krpc.ID][]netip.AddrPort{}
	}
	r.peers[ih] = append(r.peers[ih], peer)
}

func (r *recorder) RecordSample(n krpc.NodeInfo, t time.Time, num, interval int, samples []krpc.ID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.samples[n.ID] = append(r.samples[n.ID], t)
	r.intervals = append(r.intervals, interval)
	r.sampleAddrs[n.ID] = append(r.sampleAddrs[n.ID], n.Addr)
	for _, ih := range samples {
		r.harvest[ih] = true
	}
}

// dhtNet is a network of lightdht nodes on simnet, with the addresses the
// test chose.
type dhtNet struct {
	sim   *simnet.Network
	nodes []*lightdht.Node
	addrs []netip.AddrPort
}

// newDHTNet starts one node per address, joined through the first, and
// must run inside a synctest bubble.
func newDHTNet(t *testing.T, sim *simnet.Network, addrs []netip.AddrPort, tweak func(*lightdht.Config)) *dhtNet {
	t.Helper()
	dn := &dhtNet{sim: sim, addrs: addrs}
	for i, a := range addrs {
		conn, err := sim.Listen(a)
		if err != nil {
			t.Fatal(err)
		}
		// No send cap (as in LocalTestNet): the joins below make bursts
		// at one instant of the bubble's clock that left some nodes'
		// reply budgets under the half kept for sources with a record,
		// so a crawler's query arriving then went unanswered or not
		// depending on the order the goroutines ran in.
		cfg := lightdht.Config{Conn4: conn, NoMaintenance: true, QueryTimeout: time.Second, IPsPerBucket: -1, PerIPRate: -1, PrefixReplyRate: -1, SendRate: -1}
		if i > 0 {
			cfg.Bootstrap = addrs[:1]
		}
		if tweak != nil {
			tweak(&cfg)
		}
		n, err := lightdht.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		go n.Serve(context.Background())
		t.Cleanup(func() { n.Close() })
		dn.nodes = append(dn.nodes, n)
	}
	// Join one at a time, then a second round so that early nodes learn
	// of later ones (as table maintenance would).
	for _, n := range dn.nodes[1:] {
		n.Bootstrap(context.Background())
	}
	var wg sync.WaitGroup
	for _, n := range dn.nodes[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.Bootstrap(context.Background())
		}()
	}
	wg.Wait()
	return dn
}

// loopbackAddrs returns n addresses 127.2.x.y:6881.
func loopbackAddrs(n int) []netip.AddrPort {
	out := make([]netip.AddrPort, n)
	for i := range out {
		out[i] = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 2, byte(i / 250), byte(i%250 + 1)}), 6881)
	}
	return out
}

func newSim(t *testing.T, cfg simnet.Config) *simnet.Network {
	t.Helper()
	sim, err := simnet.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() }) // registered first, so it runs after the nodes close
	return sim
}

// TestCrawlFindsAnsweringNodes: on 300 nodes of which 10% have gone
// silent (still in everyone's tables), the crawl finds and records at
// least 98% of the answering nodes (on this small network a crawl can
// miss a few nodes that few tables hold), never records a silent node as
// replied, and sends at most 2 queries per answering node.
func TestCrawlFindsAnsweringNodes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(t, simnet.Config{Seed: 3, Latency: 10 * time.Millisecond})
		dn := newDHTNet(t, sim, loopbackAddrs(300), nil)
		silent := map[krpc.ID]bool{}
		for i := 10; i < len(dn.nodes); i += 10 {
			silent[dn.nodes[i].ID()] = true
			dn.nodes[i].Close()
		}
		conn, _ := sim.NewConn4()
		rec := newRecorder()
		var progress []crawler.Progress
		c, err := crawler.New(crawler.Config{Conn: conn, Bootstrap: dn.addrs[:1], TestNet: true, Rate: 1000, Timeout: time.Second,
			Recorder: rec, Progress: func(p crawler.Progress) { progress = append(progress, p) }})
		if err != nil {
			t.Fatal(err)
		}
		res, err := c.Run(context.Background())
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		answering, recorded := 0, 0
		for _, n := range dn.nodes {
			if silent[n.ID()] {
				continue
			}
			answering++
			if rec.replied[n.ID()] {
				recorded++
			}
		}
		if recorded < answering*98/100 || recorded != res.Replied {
			t.Errorf("recorded %d of %d answering nodes as replied (result says %d), want at least 98%%", recorded, answering, res.Replied)
		}
		for id := range silent {
			if rec.replied[id] {
				t.Errorf("silent node %v recorded as replied", id)
			}
		}
		perNode := float64(res.Packets) / float64(answering)
		t.Logf("result %+v; %.2f packets per answering node", res, perNode)
		// Every node that timed out is a silent one, and nearly all the
		// silent ones were found (in tables) and timed out.
		if res.Timeouts > len(silent) || res.Timeouts < len(silent)*9/10 {
			t.Errorf("timeouts %d, want at most and nearly all of the %d silent nodes", res.Timeouts, len(silent))
		}
		if perNode > 2.0 {
			t.Errorf("%.2f queries per answering node, want at most 2", perNode)
		}
		if res.Waiting != 0 {
			t.Errorf("%d queries still queued after a crawl that ran dry", res.Waiting)
		}
		if len(progress) < 2 || progress[len(progress)-1].Replied != res.Replied {
			t.Errorf("%d progress reports, last %+v", len(progress), progress[len(progress)-1])
		}
	})
}

// TestPoliteness: many nodes behind one IP (different ports) are never
// queried more often than once per PerIPInterval, the global rate holds,
// and bogon addresses are never queried outside TestNet mode.
func TestPoliteness(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(t, simnet.Config{Latency: 5 * time.Millisecond})
		// 200 nodes on public-looking addresses (in memory only), 40 of
		// them sharing 11.0.0.1, and 10 on private addresses.
		var addrs []netip.AddrPort
		for i := range 160 {
			addrs = append(addrs, netip.AddrPortFrom(netip.AddrFrom4([4]byte{11, 1, byte(i / 200), byte(i%200 + 1)}), 6881))
		}
		for i := range 40 {
			addrs = append(addrs, netip.AddrPortFrom(netip.MustParseAddr("11.0.0.1"), uint16(7000+i)))
		}
		for i := range 10 {
			addrs = append(addrs, netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 168, 0, byte(i + 1)}), 6881))
		}
		dn := newDHTNet(t, sim, addrs, nil)

		conn, _ := sim.Listen(netip.MustParseAddrPort("11.9.9.9:6881"))
		var mu sync.Mutex
		sent := map[netip.Addr][]time.Time{}
		var all []time.Time
		sim.SetLinkFilter(func(from, to netip.AddrPort) bool {
			if from == conn.AddrPort() {
				mu.Lock()
				sent[to.Addr()] = append(sent[to.Addr()], time.Now())
				all = append(all, time.Now())
				mu.Unlock()
			}
			return true
		})
		const rate = 20
		// 40 nodes behind one IP take 80 s at one query per 2 s: the idle
		// limit must not end the crawl first.
		c, err := crawler.New(crawler.Config{Conn: conn, Bootstrap: dn.addrs[:1], Rate: rate, Timeout: time.Second, Idle: 5 * time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		res, err := c.Run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		for ip, times := range sent {
			if ip.IsPrivate() {
				t.Errorf("queried private address %v", ip)
			}
			for i := 1; i < len(times); i++ {
				if gap := times[i].Sub(times[i-1]); gap < 2*time.Second {
					t.Errorf("two queries to %v %v apart", ip, gap)
					break
				}
			}
		}
		if got := len(sent[netip.MustParseAddr("11.0.0.1")]); got < 40 {
			t.Errorf("the shared IP got %d queries, want all 40 of its nodes", got)
		}
		if res.Bogons != 10 {
			t.Errorf("%d bogons skipped, want 10", res.Bogons)
		}
		// The rate cap, measured over every 5-second window while the
		// crawl was saturated (well past its start and before its end).
		start, end := all[0], all[len(all)-1]
		worst := 0.0
		for w := start.Add(2 * time.Second); w.Add(5 * time.Second).Before(end.Add(-2 * time.Second)); w = w.Add(time.Second) {
			n := 0
			for _, at := range all {
				if !at.Before(w) && at.Before(w.Add(5*time.Second)) {
					n++
				}
			}
			worst = max(worst, float64(n)/5)
		}
		t.Logf("%d packets in %v, busiest 5 s window %.1f/s (cap %d/s)", len(all), end.Sub(start), worst, rate)
		if worst > rate*1.05 {
			t.Errorf("busiest window %.1f queries/s exceeds the %d/s cap by more than 5%%", worst, rate)
		}
		if res.Replied < 198 {
			t.Errorf("replied %d, want at least 198 of the 200 public nodes", res.Replied)
		}
	})
}

// TestHarvestInfohashes: with Infohashes on, every infohash announced into
// the network is harvested through BEP 51, and each node is sampled once.
func TestHarvestInfohashes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(t, simnet.Config{Seed: 9, Latency: 5 * time.Millisecond})
		dn := newDHTNet(t, sim, loopbackAddrs(100), nil)
		want := map[krpc.ID]bool{}
		wantPeer := map[krpc.ID]netip.AddrPort{}
		for i := range 60 {
			ih := krpc.RandomID()
			want[ih] = true
			n := dn.nodes[i%len(dn.nodes)]
			wantPeer[ih] = netip.AddrPortFrom(n.Addr().Addr(), uint16(6000+i))
			if _, err := n.Announce(context.Background(), ih, 6000+i); err != nil {
				t.Fatalf("announce: %v", err)
			}
		}
		conn, _ := sim.NewConn4()
		rec := newRecorder()
		c, err := crawler.New(crawler.Config{Conn: conn, Bootstrap: dn.addrs[:1], TestNet: true, Rate: 1000, Timeout: time.Second,
			Infohashes: true, Peers: true, Recorder: rec})
		if err != nil {
			t.Fatal(err)
		}
		res, err := c.Run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		rec.mu.Lock()
		defer rec.mu.Unlock()
		// Config.Peers: every harvested infohash's peer was asked for and
		// recorded, once.
		for ih, p := range wantPeer {
			if got := rec.peers[ih]; len(got) != 1 || got[0] != p {
				t.Errorf("peers of %v: %v, want [%v]", ih, got, p)
			}
		}
		if res.Peers != len(wantPeer) || res.PeerQueries > 8*len(wantPeer) {
			t.Errorf("peers phase: %d peers with %d queries, want %d peers with at most %d", res.Peers, res.PeerQueries, len(wantPeer), 8*len(wantPeer))
		}
		missing := 0
		for ih := range want {
			if !rec.harvest[ih] {
				missing++
			}
		}
		t.Logf("result %+v intervals %v", res, rec.intervals[:10])
		if missing > 0 {
			t.Errorf("%d of %d announced infohashes not harvested", missing, len(want))
		}
		for id, times := range rec.samples {
			if len(times) != 1 {
				t.Errorf("node %v sampled %d times in one crawl at %v from %v", id, len(times), times, rec.sampleAddrs[id])
			}
		}
		if res.Replied != len(dn.nodes) {
			t.Errorf("replied %d of %d", res.Replied, len(dn.nodes))
		}
	})
}

// runContinuous runs, in a synctest bubble, a continuous infohash crawl
// (revisits every minute) of a network of size lightdht nodes with a
// 3-minute BEP 51 interval for d, and returns the network, what the crawl
// recorded, its result and when it stopped. setup, if set, runs before
// the crawl with the crawler's address.
//
// The nodes have the plain table: with the extended one (the node's
// default) and no maintenance, the crawl of a 40-node network missed
// some nodes in 2 of 60 runs (replies list only nodes that have
// answered, and the far buckets hold the whole network). The tests that
// use it are about revisits, not coverage.
func runContinuous(t *testing.T, sim *simnet.Network, size int, d time.Duration, setup func(dn *dhtNet, crawlerAddr netip.AddrPort)) (*dhtNet, *recorder, crawler.Result, time.Time) {
	t.Helper()
	dn := newDHTNet(t, sim, loopbackAddrs(size), func(c *lightdht.Config) {
		c.SampleInterval = 3 * time.Minute
		c.PlainTable = true
	})
	conn, _ := sim.NewConn4()
	if setup != nil {
		setup(dn, conn.AddrPort())
	}
	rec := newRecorder()
	c, err := crawler.New(crawler.Config{Conn: conn, Bootstrap: dn.addrs[:1], TestNet: true, Rate: 1000, Timeout: time.Second,
		Infohashes: true, Continuous: true, Revisit: time.Minute, Recorder: rec})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	res, err := c.Run(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("continuous crawl ended with %v, want the context's deadline", err)
	}
	return dn, rec, res, start.Add(d)
}

// TestContinuousRevisits: in continuous mode every node is asked again
// each Revisit, never before its BEP 51 interval, until the context ends
// (how many times depends on when a node was first found).
func TestContinuousRevisits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(t, simnet.Config{Seed: 2, Latency: 5 * time.Millisecond})
		dn, rec, res, end := runContinuous(t, sim, 40, 10*time.Minute+30*time.Second, nil)
		rec.mu.Lock()
		defer rec.mu.Unlock()
		for id, times := range rec.samples {
			// Never inside the 3-minute interval...
			for i := 1; i < len(times); i++ {
				if gap := times[i].Sub(times[i-1]); gap < 3*time.Minute {
					t.Errorf("node %v sampled again after %v, before its 3-minute interval", id, gap)
				}
			}
			// ...and revisited until the end: the last sample is less
			// than one interval (plus a round trip) before the crawl
			// stopped, and there are at least 3 in 10.5 minutes.
			if last := times[len(times)-1]; end.Sub(last) > 3*time.Minute+time.Second || len(times) < 3 {
				t.Errorf("node %v sampled %d times, last %v before the end", id, len(times), end.Sub(last))
			}
		}
		for i, n := range dn.nodes {
			if id := n.ID(); rec.samples[id] == nil {
				t.Errorf("node %d (%v at %v) never sampled: replied %v, timed out %v; result %+v; its stats %+v; network %+v",
					i, id, dn.addrs[i], rec.replied[id], rec.timedOut[id], res, n.Stats(), sim.Stats())
			}
		}
	})
}

// TestContinuousLostSample: in continuous mode a node whose first
// sample_infohashes is lost answers the find_node that follows it, and is
// asked for the sample again in the next round rather than counted as a
// node that drops the method for the rest of the crawl. If that sample is
// lost too, the node is asked find_node in the same round and stays in
// the crawl, answering every round.
func TestContinuousLostSample(t *testing.T) {
	for _, tc := range []struct {
		name string
		drop []int // the crawler's packets to the victim that are lost, from 1
	}{
		{"once", []int{1}},
		{"twice", []int{1, 3}}, // 2: the find_node that follows the first
	} {
		t.Run(tc.name, func(t *testing.T) { continuousLostSample(t, tc.drop) })
	}
}

func continuousLostSample(t *testing.T, drop []int) {
	synctest.Test(t, func(t *testing.T) {
		sim := newSim(t, simnet.Config{Seed: 3, Latency: 5 * time.Millisecond})
		var sent atomic.Int64
		dn, rec, _, end := runContinuous(t, sim, 20, 8*time.Minute, func(dn *dhtNet, me netip.AddrPort) {
			victim := dn.addrs[7]
			sim.SetLinkFilter(func(from, to netip.AddrPort) bool {
				// The crawler's first packet to the victim is its sample
				// (a node found in a reply, its ID known, is asked for
				// one first).
				return from != me || to != victim || !slices.Contains(drop, int(sent.Add(1)))
			})
		})
		rec.mu.Lock()
		defer rec.mu.Unlock()
		id := dn.nodes[7].ID()
		want := slices.Repeat([]string{krpc.MethodSampleInfohashes}, len(drop))
		if !slices.Equal(rec.timeoutsBy[id], want) {
			t.Fatalf("the victim's timeouts: %v after %d packets to it, want %v", rec.timeoutsBy[id], sent.Load(), want)
		}
		times := rec.samples[id]
		if len(drop) == 1 {
			// Sampled in the round after the loss and then every 3
			// minutes: at least twice in the 7 minutes left.
			if len(times) < 2 {
				t.Errorf("victim sampled %d times after its first sample was lost, want at least 2", len(times))
			}
		} else if len(times) > 0 {
			t.Errorf("victim sampled %d times, though both samples were lost", len(times))
		}
		for i := 1; i < len(times); i++ {
			if gap := times[i].Sub(times[i-1]); gap < 3*time.Minute {
				t.Errorf("victim sampled again after %v, before its 3-minute interval", gap)
			}
		}
		// Still revisited: it answered within the last round and a bit.
		if last := rec.lastReply[id]; end.Sub(last) > time.Minute+time.Second {
			t.Errorf("victim last answered %v before the end, want within a revisit", end.Sub(last))
		}
	})
}

// TestSmallNetworksCrawled: crawls of 30-node networks find (nearly) every
// node, run after run: none finds fewer than 28, and all 20 together miss
// at most 2 nodes. (A crawl that never asks for a shallow bucket stays in
// one half of the ID space and finds about 15.)
func TestSmallNetworksCrawled(t *testing.T) {
	missed := 0
	defer func() {
		if missed > 2 {
			t.Errorf("20 crawls of 30 nodes missed %d nodes in all, want at most 2", missed)
		}
	}()
	for run := range 20 {
		synctest.Test(t, func(t *testing.T) {
			sim := newSim(t, simnet.Config{Seed: int64(run + 1), Latency: 2 * time.Millisecond})
			dn := newDHTNet(t, sim, loopbackAddrs(30), nil)
			conn, _ := sim.NewConn4()
			rec := newRecorder()
			c, err := crawler.New(crawler.Config{Conn: conn, Bootstrap: dn.addrs[:1], TestNet: true, Rate: 1000, Timeout: time.Second, Recorder: rec})
			if err != nil {
				t.Fatal(err)
			}
			res, err := c.Run(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			missed += 30 - res.Replied
			if res.Replied < 28 {
				t.Errorf("run %d: found %d of 30 nodes", run, res.Replied)
			}
		})
	}
}

// TestIdleEndsCrawl: 20 nodes behind one IP take 40 s to query at one
// query per 2 s, and all of them are known after a few replies. A 5 s
// idle limit ends the crawl with queries still queued, and the result
// says how many; with a long idle limit the crawl runs dry and none are.
// (When the first idle limit runs out in that wait, the checks start and
// Idle counts again, so the crawl ends a limit or two later, its checks
// among the queries queued.)
func TestIdleEndsCrawl(t *testing.T) {
	for _, idle := range []time.Duration{5 * time.Second, 5 * time.Minute} {
		synctest.Test(t, func(t *testing.T) {
			sim := newSim(t, simnet.Config{Latency: 5 * time.Millisecond})
			addrs := []netip.AddrPort{netip.MustParseAddrPort("127.4.0.1:6881")}
			for i := range 20 {
				addrs = append(addrs, netip.AddrPortFrom(netip.MustParseAddr("127.4.0.2"), uint16(7000+i)))
			}
			dn := newDHTNet(t, sim, addrs, nil)
			conn, _ := sim.NewConn4()
			c, err := crawler.New(crawler.Config{Conn: conn, Bootstrap: dn.addrs[:1], TestNet: true, Timeout: time.Second, Idle: idle})
			if err != nil {
				t.Fatal(err)
			}
			res, err := c.Run(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("idle %v: %+v", idle, res)
			switch {
			case idle < time.Minute && (res.Waiting == 0 || res.Replied == res.Discovered || res.Duration > 30*time.Second):
				t.Errorf("idle %v: crawl ended after %v with %d replied and %d queued of %d found, want it ended early with the rest queued",
					idle, res.Duration, res.Replied, res.Waiting, res.Discovered)
			case idle > time.Minute && (res.Waiting != 0 || res.Replied != res.Discovered):
				t.Errorf("idle %v: %d replied, %d queued of %d found, want all replied and none queued", idle, res.Replied, res.Waiting, res.Discovered)
			}
		})
	}
}

// TestReceiveBuffer: New sizes the socket's receive buffer to hold a reply
// to every query in flight, so 1,000 replies that arrive before any is
// read are all kept (the in-memory network's default holds 256).
func TestReceiveBuffer(t *testing.T) {
	sim := newSim(t, simnet.Config{})
	conn, _ := sim.NewConn4()
	if _, err := crawler.New(crawler.Config{Conn: conn, Bootstrap: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:6881")},
		TestNet: true, MaxInFlight: 1000}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	from, _ := sim.NewConn4()
	defer from.Close()
	for range 1000 {
		if _, err := from.WriteToUDPAddrPort([]byte("d1:y1:re"), conn.AddrPort()); err != nil {
			t.Fatal(err)
		}
	}
	if st := sim.Stats(); st.DroppedQueueFull != 0 || st.Delivered != 1000 {
		t.Errorf("%d of 1,000 packets delivered, %d dropped on a full queue", st.Delivered, st.DroppedQueueFull)
	}
}

// TestCrawlTwoNetworks crawls two separate networks together, laid out so
// that each hides the other's gaps: 10 of the first network's 12 nodes
// lie in half 0 of the ID space and 2 in half 1, so that the 2 are no
// other node's nearest neighbours and are listed only by replies about
// farther buckets; the second network's 8 nodes fill both halves. Judged
// as one network, half 1 is covered; judged by the nodes each network's
// replies join (its island), it has a gap beside 10 nodes, and asking
// those about it finds the 2. Every node of both is found in every run.
func TestCrawlTwoNetworks(t *testing.T) {
	half := func(bit byte) krpc.ID {
		var p krpc.ID
		p[0] = bit << 7
		return krpc.RandomIDWithPrefix(p, 1)
	}
	for run := range 10 {
		t.Run(fmt.Sprint(run), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				sim := newSim(t, simnet.Config{Seed: int64(run + 1), Latency: 10 * time.Millisecond})
				a := make([]netip.AddrPort, 12)
				b := make([]netip.AddrPort, 8)
				for i := range a {
					a[i] = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 2, 0, byte(i + 1)}), 6881)
				}
				for i := range b {
					b[i] = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 5, 0, byte(i + 1)}), 6881)
				}
				i := 0
				netA := newDHTNet(t, sim, a, func(c *lightdht.Config) {
					c.ID = half(byte(i / 10))
					i++
				})
				j := 0
				netB := newDHTNet(t, sim, b, func(c *lightdht.Config) {
					c.ID = half(byte(j % 2))
					j++
				})
				conn, _ := sim.NewConn4()
				rec := newRecorder()
				c, err := crawler.New(crawler.Config{Conn: conn, Bootstrap: []netip.AddrPort{a[0], b[0]}, TestNet: true,
					Rate: 1000, Timeout: time.Second, Recorder: rec})
				if err != nil {
					t.Fatal(err)
				}
				res, err := c.Run(context.Background())
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
				for _, n := range append(netA.nodes, netB.nodes...) {
					if !rec.replied[n.ID()] {
						t.Errorf("node %v %v not recorded as replied", n.Addr(), n.ID())
					}
				}
				if res.Replied != 20 {
					t.Errorf("%d nodes replied, want 20", res.Replied)
				}
			})
		})
	}
}
