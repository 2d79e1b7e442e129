package interop

// BenchmarkLookup5000 compares get_peers and find_node lookups of lightdht
// and anacrolix/dht/v2 on the in-memory network (internal/simnet: no
// packet leaves the process). Run it with
//
//	go test -run '^$' -bench Lookup5000 -benchtime 100x -timeout 60m ./interop_test/
//
// Each implementation gets a network of its own, made only of its nodes,
// built once without latency or loss and then measured at 20 ms one-way
// latency with 0% and 5% packet loss, for each method in turn.
// Sub-benchmarks are named <impl>/<method>/loss=<x>%. Every sub-benchmark
// makes at least minLookups lookups, one at a time, from random nodes for
// random targets (the same sequence for both implementations and both
// methods), whatever b.N.

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2"
	"github.com/anacrolix/dht/v2/int160"
	akrpc "github.com/anacrolix/dht/v2/krpc"
	peer_store "github.com/anacrolix/dht/v2/peer-store"
	"github.com/anacrolix/dht/v2/traversal"
	alog "github.com/anacrolix/log"

	"github.com/lightdht/lightdht"
	"github.com/lightdht/lightdht/internal/simnet"
	"github.com/lightdht/lightdht/krpc"
)

const (
	benchNodes      = 5000                  // nodes in each network
	benchLatency    = 20 * time.Millisecond // one-way, while measuring
	minLookups      = 100                   // per sub-benchmark, whatever b.N
	buildWorkers    = 64                    // bootstraps running at once
	lookupTimeout   = 60 * time.Second      // a lookup taking longer fails the benchmark
	benchQueueLen   = 4096                  // simnet receive queue; the first node is hit by every bootstrap
	anacrolixResend = time.Second           // QueryResendDelay, to match lightdht's QueryTimeout
)

// lookupSample is the outcome of one lookup.
type lookupSample struct {
	dur     time.Duration
	queries int     // queries the lookup counted (see lookupNet.lookup)
	packets uint64  // packets sent on the whole network while it ran
	closest krpc.ID // nearest node that replied; zero if none
	err     error
}

// lookupNet is a network of one implementation, built and ready for
// lookups.
type lookupNet struct {
	sn  *simnet.Network
	ids []krpc.ID // node IDs by index
	// lookup runs one lookup of method (krpc.MethodGetPeers or
	// krpc.MethodFindNode) from node from for target and returns its query
	// count and the nearest node that replied.
	lookup func(ctx context.Context, from int, method string, target krpc.ID) (queries int, closest krpc.ID, err error)
}

// lookupMethods are the lookups measured, in this order.
var lookupMethods = []string{krpc.MethodGetPeers, krpc.MethodFindNode}

// newBenchSimnet returns a lossless network without latency, closed at
// cleanup, whose conns queue up to benchQueueLen packets.
func newBenchSimnet(tb testing.TB) *simnet.Network {
	tb.Helper()
	sn, err := simnet.New(simnet.Config{Seed: 7, QueueLen: benchQueueLen})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { sn.Close() })
	return sn
}

// runBounded calls f(i) for i in [from, to), at most workers at a time.
func runBounded(from, to, workers int, f func(i int)) {
	var (
		wg   sync.WaitGroup
		next atomic.Int64
	)
	next.Store(int64(from))
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= to {
					return
				}
				f(i)
			}
		})
	}
	wg.Wait()
}

// sizes summarises routing table sizes as "min/median/max".
func sizes(s []int) string {
	slices.Sort(s)
	return fmt.Sprintf("%d/%d/%d", s[0], s[len(s)/2], s[len(s)-1])
}

// buildLightdht starts count lightdht nodes (newNodeWith: QueryTimeout
// 1s, 3 retries, StallAfter 500ms, Alpha 3, K 8, no rate limits, no
// maintenance) that all bootstrap from the first, twice: the second round
// lets early joiners learn of late ones.
func buildLightdht(tb testing.TB, count int) *lookupNet {
	return buildLightdhtWith(tb, count, false)
}

// buildLightdhtPlain is buildLightdht with BEP 5's table of K entries in
// every bucket (Config.PlainTable) instead of the default extended one.
func buildLightdhtPlain(tb testing.TB, count int) *lookupNet {
	return buildLightdhtWith(tb, count, true)
}

func buildLightdhtWith(tb testing.TB, count int, plain bool) *lookupNet {
	sn := newBenchSimnet(tb)
	nodes := make([]*lightdht.Node, count)
	ids := make([]krpc.ID, count)
	for i := range nodes {
		conn, err := sn.NewConn4()
		if err != nil {
			tb.Fatal(err)
		}
		var boot []netip.AddrPort
		if i > 0 {
			boot = []netip.AddrPort{nodes[0].Addr()}
		}
		nodes[i] = newNodeWith(tb, conn, func(c *lightdht.Config) {
			c.Bootstrap, c.QueryTimeout, c.PlainTable = boot, time.Second, plain
		})
		ids[i] = nodes[i].ID()
	}
	ctx := context.Background()
	var failed atomic.Int64
	for round, first := range []int{1, 0} { // the first node has no one to ask in round 1
		failed.Store(0)
		runBounded(first, count, buildWorkers, func(i int) {
			if _, err := nodes[i].Bootstrap(ctx); err != nil {
				failed.Add(1)
			}
		})
		if f := failed.Load(); f > 0 {
			tb.Logf("lightdht bootstrap round %d: %d of %d failed", round+1, f, count-first)
		}
	}
	tables := make([]int, count)
	for i, n := range nodes {
		tables[i] = n.Table(false).Len()
	}
	tb.Logf("lightdht: %d nodes, routing tables min/median/max %s", count, sizes(tables))
	return &lookupNet{sn: sn, ids: ids, lookup: func(ctx context.Context, from int, method string, target krpc.ID) (int, krpc.ID, error) {
		var closest krpc.ID
		if method == krpc.MethodFindNode {
			res, err := nodes[from].FindNode(ctx, target)
			if len(res.Nodes) > 0 {
				closest = res.Nodes[0].ID
			}
			return res.Stats.Queries, closest, err
		}
		res, err := nodes[from].GetPeers(ctx, target)
		if len(res.Nodes) > 0 {
			closest = res.Nodes[0].ID
		}
		return res.Stats.Queries, closest, err
	}}
}

// buildAnacrolix starts count anacrolix servers that all bootstrap from
// the first, twice, like buildLightdht, each round followed by a ping of
// every node in every table (see below). Each has QueryResendDelay 1s (one
// send per query, abandoned after 1s) and an in-memory PeerStore: without
// one an anacrolix server issues no get_peers tokens, and its traversal,
// which keeps only token-bearing replies among the closest, then never
// converges and queries every node it hears of. The servers run no
// TableMaintainer, as lightdht nodes run no maintenance.
func buildAnacrolix(tb testing.TB, count int) *lookupNet {
	sn := newBenchSimnet(tb)
	servers := make([]*dht.Server, count)
	ids := make([]krpc.ID, count)
	configure := func(cfg *dht.ServerConfig) {
		cfg.QueryResendDelay = func() time.Duration { return anacrolixResend }
		cfg.PeerStore = &peer_store.InMemory{}
		cfg.Logger = alog.Default.FilterLevel(alog.Critical)
	}
	var first *net.UDPAddr
	for i := range servers {
		conn, err := sn.NewConn4()
		if err != nil {
			tb.Fatal(err)
		}
		if i == 0 {
			servers[i] = newAnacrolixTB(tb, conn, configure)
			first = udpAddr(conn.AddrPort())
		} else {
			servers[i] = newAnacrolixTB(tb, conn, configure, first)
		}
		ids[i] = krpc.ID(servers[i].ID())
	}
	ctx := context.Background()
	var failed, pings atomic.Int64
	for round, from := range []int{1, 0} {
		failed.Store(0)
		runBounded(from, count, buildWorkers, func(i int) {
			if _, err := servers[i].BootstrapContext(ctx); err != nil {
				failed.Add(1)
			}
		})
		if f := failed.Load(); f > 0 {
			tb.Logf("anacrolix bootstrap round %d: %d of %d failed", round+1, f, count-from)
		}
		// What one pass of TableMaintainer would do first: ping the
		// table's nodes, so that the ones only heard from (untested)
		// become good, the only ones a server returns to get_peers and
		// find_node. Without it the first server, which queries no one,
		// returns no node, and every table stays at one node.
		runBounded(0, count, buildWorkers, func(i int) {
			for _, ni := range servers[i].Nodes() {
				servers[i].Ping(ni.Addr.UDP())
				pings.Add(1)
			}
		})
	}
	tables := make([]int, count)
	for i, s := range servers {
		tables[i] = s.NumNodes()
	}
	tb.Logf("anacrolix: %d servers, routing tables min/median/max %s, %d table pings", count, sizes(tables), pings.Load())
	return &lookupNet{sn: sn, ids: ids, lookup: func(ctx context.Context, from int, method string, target krpc.ID) (int, krpc.ID, error) {
		if method == krpc.MethodFindNode {
			return anacrolixFindNode(ctx, servers[from], target)
		}
		return anacrolixLookup(ctx, servers[from], target)
	}}
}

// anacrolixLookup runs an anacrolix get_peers traversal for ih without
// announcing, and waits until it has finished: its Peers channel closes
// once the traversal has stalled and its queries have returned. Its query
// count is TraversalStats.NumAddrsTried, the addresses queried; with
// anacrolix's default of one send per query that is also the queries
// sent. closest is the nearest node among the replies.
func anacrolixLookup(ctx context.Context, s *dht.Server, ih krpc.ID) (int, krpc.ID, error) {
	a, err := s.AnnounceTraversal(ih)
	if err != nil {
		return 0, krpc.ID{}, err
	}
	defer a.Close()
	var closest krpc.ID
	for {
		select {
		case pv, ok := <-a.Peers:
			if !ok {
				return int(a.TraversalStats().NumAddrsTried), closest, nil
			}
			id := krpc.ID(pv.NodeInfo.ID)
			if closest.IsZero() || krpc.CloserTo(ih, id, closest) {
				closest = id
			}
		case <-ctx.Done():
			return int(a.NumContacted()), closest, fmt.Errorf("anacrolix traversal for %v: %w", ih, ctx.Err())
		}
	}
}

// anacrolixFindNode runs an anacrolix find_node traversal for target, the
// one its bootstrap and bucket refreshes run (traversal.Start with
// Server.FindNode queries, its defaults of alpha 3 and K 8, and the
// server's node filter), from the server's table, and waits until it has
// stalled and its queries have returned, as a get_peers traversal does
// before closing its Peers channel. Queries and closest are counted as in
// anacrolixLookup: NumAddrsTried, and the nearest node among the replies.
func anacrolixFindNode(ctx context.Context, s *dht.Server, target krpc.ID) (int, krpc.ID, error) {
	var (
		mu      sync.Mutex
		closest krpc.ID
	)
	op := traversal.Start(traversal.OperationInput{
		Target: akrpc.ID(target),
		DoQuery: func(_ context.Context, addr akrpc.NodeAddr) traversal.QueryResult {
			res := s.FindNode(dht.NewAddr(addr.UDP()), int160.FromByteArray(target), dht.QueryRateLimiting{}).TraversalQueryResult(addr)
			if from := res.ResponseFrom; from != nil {
				id := krpc.ID(from.ID)
				mu.Lock()
				if closest.IsZero() || krpc.CloserTo(target, id, closest) {
					closest = id
				}
				mu.Unlock()
			}
			return res
		},
		NodeFilter: s.TraversalNodeFilter,
	})
	tried := func() int { return int(atomic.LoadUint32(&op.Stats().NumAddrsTried)) }
	nodes, err := s.TraversalStartingNodes()
	if err != nil {
		op.Stop()
		<-op.Stopped()
		return 0, krpc.ID{}, err
	}
	op.AddNodes(nodes)
	select {
	case <-op.Stalled():
	case <-ctx.Done():
		op.Stop()
		<-op.Stopped()
		return tried(), krpc.ID{}, fmt.Errorf("anacrolix find_node traversal for %v: %w", target, ctx.Err())
	}
	op.Stop()
	<-op.Stopped()
	mu.Lock()
	defer mu.Unlock()
	return tried(), closest, nil
}

// trueClosest returns the ID in ids nearest to target, leaving out index
// skip.
func trueClosest(target krpc.ID, ids []krpc.ID, skip int) krpc.ID {
	var best krpc.ID
	for i, id := range ids {
		if i != skip && (best.IsZero() || krpc.CloserTo(target, id, best)) {
			best = id
		}
	}
	return best
}

// measureLookups sets the network to benchLatency and loss, runs at least
// minLookups lookups of method one at a time (b.N of them timed by b.Loop,
// the rest after), and reports:
//
//   - ns/op: mean lookup duration (the built-in value is replaced, as
//     lookups beyond b.N are not timed by the framework);
//   - ms-median, ms-p99: lookup duration percentiles (nearest rank);
//   - queries/lookup: mean queries per lookup as each implementation
//     counts them;
//   - packets/lookup: mean packets sent on the network while a lookup ran
//     (its queries, resends and the replies; late replies to a previous
//     lookup's abandoned queries may fall in the next one);
//   - closest-found-%: lookups whose nearest replying node is the nearest
//     node of the whole network other than the querier;
//   - failed-%: lookups that returned an error;
//   - lookups: how many lookups the figures cover.
func measureLookups(b *testing.B, ln *lookupNet, method string, loss float64) {
	if err := ln.sn.SetConditions(benchLatency, 0, loss); err != nil {
		b.Fatal(err)
	}
	defer ln.sn.SetConditions(0, 0, 0)
	seed := [32]byte{byte(loss * 100)}
	rng := rand.New(rand.NewChaCha8(seed))
	var samples []lookupSample
	one := func() {
		from := rng.IntN(len(ln.ids))
		var target krpc.ID
		for i := range target {
			target[i] = byte(rng.Uint32())
		}
		ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
		defer cancel()
		before := ln.sn.Stats().Sent
		start := time.Now()
		q, closest, err := ln.lookup(ctx, from, method, target)
		s := lookupSample{dur: time.Since(start), queries: q, packets: ln.sn.Stats().Sent - before, err: err}
		if ctx.Err() != nil {
			b.Fatalf("lookup from node %d for %v did not end in %v", from, target, lookupTimeout)
		}
		if closest == trueClosest(target, ln.ids, from) {
			s.closest = closest
		}
		samples = append(samples, s)
	}
	for b.Loop() {
		one()
	}
	for len(samples) < minLookups {
		one()
	}

	n := float64(len(samples))
	durs := make([]time.Duration, len(samples))
	var sumDur time.Duration
	var queries, packets, found, failed float64
	for i, s := range samples {
		durs[i] = s.dur
		sumDur += s.dur
		queries += float64(s.queries)
		packets += float64(s.packets)
		if !s.closest.IsZero() {
			found++
		}
		if s.err != nil {
			failed++
		}
	}
	slices.SortFunc(durs, cmp.Compare)
	rank := func(p float64) time.Duration { // nearest-rank percentile
		i := int(p*n+0.999999) - 1
		return durs[max(0, min(i, len(durs)-1))]
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(float64(sumDur)/n, "ns/op")
	b.ReportMetric(ms(rank(0.5)), "ms-median")
	b.ReportMetric(ms(rank(0.99)), "ms-p99")
	b.ReportMetric(queries/n, "queries/lookup")
	b.ReportMetric(packets/n, "packets/lookup")
	b.ReportMetric(100*found/n, "closest-found-%")
	b.ReportMetric(100*failed/n, "failed-%")
	b.ReportMetric(n, "lookups")
}

// BenchmarkLookup5000 measures get_peers and find_node lookups on a
// network of 5,000 lightdht nodes (with the default extended routing table
// and with the plain one) and on one of 5,000 anacrolix servers;
// see the comment at the top of the file and measureLookups for the
// figures.
func BenchmarkLookup5000(b *testing.B) {
	if testing.Short() {
		b.Skip("builds two networks of 5,000 nodes")
	}
	impls := []struct {
		name  string
		build func(testing.TB, int) *lookupNet
	}{
		{"lightdht", buildLightdht},
		{"lightdht-plain", buildLightdhtPlain},
		{"anacrolix", buildAnacrolix},
	}
	for _, impl := range impls {
		// The network is built once per implementation, shared by its
		// sub-benchmarks and closed when they are done.
		b.Run(impl.name, func(b *testing.B) {
			start := time.Now()
			ln := impl.build(b, benchNodes)
			b.Logf("%s: built %d nodes in %v", impl.name, benchNodes, time.Since(start).Round(time.Millisecond))
			for _, method := range lookupMethods {
				b.Run(method, func(b *testing.B) {
					for _, loss := range []float64{0, 0.05} {
						b.Run(fmt.Sprintf("loss=%g%%", loss*100), func(b *testing.B) {
							measureLookups(b, ln, method, loss)
						})
					}
				})
			}
		})
	}
}
