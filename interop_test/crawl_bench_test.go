package interop

// BenchmarkCrawl10kVsAnacrolix compares a crawl of a 10,000-node network by
// lightdht's crawler with a "crawler" built from anacrolix/dht/v2's own
// lookups: random-target get_peers traversals run back to back, several at
// once, by one anacrolix server. Run it with
//
//	go test -run '^$' -bench Crawl10kVsAnacrolix -benchtime 1x -timeout 30m ./interop_test/
//
// Each side crawls a freshly built internal/synth network (in memory: no
// packet leaves the process) of the same Config, so both face the same
// nodes, IDs, routing tables and silent nodes. synth.Config.PublicIPs is
// off: newAnacrolixTB accepts only loopback starting nodes, so the nodes
// live on 127.1.0.0 upwards and lightdht's crawler runs with TestNet.
// The network has 20 ms one-way latency, in real time.
//
// Coverage, on both sides, is the share of answering nodes that received
// at least one query from the crawler (synth's per-node query counters; the
// network loses no packet and an answering node answers every query, so a
// node queried is a node that answered). Queries are the packets the
// synthetic nodes received during the crawl (synth Stats().Packets: only
// the crawler sends on its network), resends and anything else the crawler
// sends (anacrolix's table pings) included. lightdht crawls to the end
// (nothing left to query); its wall time is the whole Run. anacrolix
// traverses until it has reached lightdht's coverage (in nodes), or
// crawlCap; its wall time and queries are taken when it gets there.
//
// The work is done once per sub-benchmark, whatever b.N.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2"
	alog "github.com/anacrolix/log"

	"github.com/lightdht/lightdht/crawler"
	"github.com/lightdht/lightdht/internal/synth"
	"github.com/lightdht/lightdht/krpc"
)

const (
	crawlNodes       = 10000
	crawlSeed        = 29
	crawlSilent      = 0.1
	crawlLatency     = 20 * time.Millisecond
	crawlTimeout     = time.Second // per query, both sides
	crawlRate        = 5000        // lightdht queries per second
	crawlInFlight    = 512         // lightdht queries awaiting a reply
	crawlTraversals  = 8           // anacrolix traversals at once
	crawlCap         = 10 * time.Minute
	crawlPoll        = 10 * time.Millisecond // coverage sampling period
	crawlMaxDuration = 5 * time.Minute       // lightdht crawl deadline
)

// crawlMilestones are the coverages (percent of answering nodes) whose
// time and query count are logged on the way.
var crawlMilestones = []float64{50, 90, 99, 99.9}

// crawlOutcome is what one side reached.
type crawlOutcome struct {
	found, answering int
	queries          uint64
	wall             time.Duration
	reached          bool // anacrolix: got to the target coverage
	// at holds, per crawlMilestones entry reached, when and after how
	// many queries.
	at []milestone
}

type milestone struct {
	wall    time.Duration
	queries uint64
}

func (o crawlOutcome) coverage() float64 { return 100 * float64(o.found) / float64(o.answering) }

// crawlNet is a synthetic network with the indexes of its answering nodes.
type crawlNet struct {
	net       *synth.Network
	answering []int
}

func newCrawlNet(tb testing.TB) *crawlNet {
	tb.Helper()
	n, err := synth.New(synth.Config{N: crawlNodes, Seed: crawlSeed, SilentShare: crawlSilent, Latency: crawlLatency})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { n.Close() })
	cn := &crawlNet{net: n}
	for i, nt := range n.Truth().Nodes {
		if nt.Answering {
			cn.answering = append(cn.answering, i)
		}
	}
	return cn
}

// found counts the answering nodes that received a query.
func (cn *crawlNet) found() int {
	c := 0
	for _, i := range cn.answering {
		if cn.net.QueriesTo(i) > 0 {
			c++
		}
	}
	return c
}

// monitor samples coverage every crawlPoll from start, logs each
// milestone the first time it is reached and appends it to *at, and calls
// onTarget (once) with the time and packets when target nodes have been
// found. stop ends it and waits for it; *at may be read after.
func (cn *crawlNet) monitor(tb testing.TB, name string, start time.Time, at *[]milestone, target int, onTarget func(time.Duration, uint64)) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(crawlPoll)
		defer tick.Stop()
		next, hit := 0, false
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			f := cn.found()
			pct := 100 * float64(f) / float64(len(cn.answering))
			for next < len(crawlMilestones) && pct >= crawlMilestones[next] {
				m := milestone{time.Since(start), cn.net.Stats().Packets}
				tb.Logf("%s: %.1f%% coverage (%d nodes) after %.2fs, %d queries", name, crawlMilestones[next], f, m.wall.Seconds(), m.queries)
				*at = append(*at, m)
				next++
			}
			if !hit && target > 0 && f >= target {
				hit = true
				onTarget(time.Since(start), cn.net.Stats().Packets)
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// crawlLightdht crawls a fresh network with lightdht's crawler.
func crawlLightdht(b *testing.B) crawlOutcome {
	cn := newCrawlNet(b)
	conn, err := cn.net.Sim().NewConn4()
	if err != nil {
		b.Fatal(err)
	}
	c, err := crawler.New(crawler.Config{
		Conn: conn, Bootstrap: cn.net.Bootstrap(), TestNet: true,
		Rate: crawlRate, MaxInFlight: crawlInFlight, Timeout: crawlTimeout,
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), crawlMaxDuration)
	defer cancel()
	b.ResetTimer()
	start := time.Now()
	var (
		at   []milestone
		last milestone // when every answering node had been found
	)
	stop := cn.monitor(b, "lightdht", start, &at, len(cn.answering), func(wall time.Duration, queries uint64) {
		last = milestone{wall, queries}
	})
	res, err := c.Run(ctx)
	wall := time.Since(start)
	b.StopTimer()
	stop()
	if err != nil {
		b.Fatalf("crawl: %v", err)
	}
	o := crawlOutcome{found: cn.found(), answering: len(cn.answering), queries: cn.net.Stats().Packets, wall: wall, reached: true, at: at}
	if last.wall > 0 {
		b.Logf("lightdht: 100%% coverage after %.2fs, %d queries; the rest of the run waits out the last queries", last.wall.Seconds(), last.queries)
	}
	b.Logf("lightdht: found %d of %d answering nodes (%.2f%%) in %.2fs with %d queries (crawler: %d replied, %d queries, %d packets, %d timeouts)",
		o.found, o.answering, o.coverage(), wall.Seconds(), o.queries, res.Replied, res.Queries, res.Packets, res.Timeouts)
	return o
}

// crawlAnacrolix crawls a fresh network with random-target get_peers
// traversals of one anacrolix server, crawlTraversals at a time, until
// target answering nodes have been queried or crawlCap.
func crawlAnacrolix(b *testing.B, target int) crawlOutcome {
	cn := newCrawlNet(b)
	conn, err := cn.net.Sim().NewConn4()
	if err != nil {
		b.Fatal(err)
	}
	boot := cn.net.Bootstrap()
	starting := make([]*net.UDPAddr, len(boot))
	for i, a := range boot {
		starting[i] = udpAddr(a)
	}
	s := newAnacrolixTB(b, conn, func(cfg *dht.ServerConfig) {
		cfg.QueryResendDelay = func() time.Duration { return crawlTimeout }
		cfg.Logger = alog.Default.FilterLevel(alog.Critical)
	}, starting...)

	ctx, cancel := context.WithTimeout(context.Background(), crawlCap)
	defer cancel()
	var (
		o          = crawlOutcome{answering: len(cn.answering)}
		mu         sync.Mutex
		traversals atomic.Int64
		wg         sync.WaitGroup
	)
	b.ResetTimer()
	start := time.Now()
	stop := cn.monitor(b, "anacrolix", start, &o.at, target, func(wall time.Duration, queries uint64) {
		mu.Lock()
		o.wall, o.queries, o.reached = wall, queries, true
		mu.Unlock()
		cancel()
	})
	for w := range crawlTraversals {
		rng := rand.New(rand.NewPCG(crawlSeed, uint64(w)))
		wg.Go(func() {
			for ctx.Err() == nil {
				var ih krpc.ID
				for j := range ih {
					ih[j] = byte(rng.Uint32())
				}
				if err := anacrolixTraverse(ctx, s, ih); err != nil {
					b.Errorf("anacrolix traversal: %v", err)
					return
				}
				traversals.Add(1)
			}
		})
	}
	<-ctx.Done()
	wall, queries := time.Since(start), cn.net.Stats().Packets
	b.StopTimer()
	stop()
	wg.Wait()
	o.found = cn.found()
	mu.Lock()
	defer mu.Unlock()
	if !o.reached {
		o.wall, o.queries = wall, queries
		b.Logf("anacrolix: did not reach the target of %d nodes within %v", target, crawlCap)
	}
	b.Logf("anacrolix: found %d of %d answering nodes (%.2f%%) in %.2fs with %d queries, %d traversals completed, server stats %+v",
		o.found, o.answering, o.coverage(), o.wall.Seconds(), o.queries, traversals.Load(), s.Stats())
	return o
}

// anacrolixTraverse runs one get_peers traversal for ih without announcing
// and waits until it has finished, or stops it when ctx ends. Its Peers
// channel must be drained: the traversal's queries block on it.
func anacrolixTraverse(ctx context.Context, s *dht.Server, ih krpc.ID) error {
	a, err := s.AnnounceTraversal(ih)
	if err != nil {
		return err
	}
	defer a.Close()
	stopped := false
	for {
		select {
		case _, ok := <-a.Peers:
			if !ok {
				return nil
			}
		case <-ctx.Done():
			if !stopped {
				a.StopTraversing()
				stopped = true
			}
		}
	}
}

// BenchmarkCrawl10kVsAnacrolix: see the top of the file.
func BenchmarkCrawl10kVsAnacrolix(b *testing.B) {
	if testing.Short() {
		b.Skip("crawls of a 10,000-node network in real time")
	}
	var light *crawlOutcome
	report := func(b *testing.B, o crawlOutcome) {
		b.ReportMetric(o.coverage(), "coverage-%")
		b.ReportMetric(float64(o.queries), "queries")
		b.ReportMetric(o.wall.Seconds(), "wall-s")
	}
	b.Run("lightdht", func(b *testing.B) {
		o := crawlLightdht(b)
		light = &o
		report(b, o)
	})
	b.Run("anacrolix", func(b *testing.B) {
		if light == nil { // the lightdht sub-benchmark was filtered out
			o := crawlLightdht(b)
			light = &o
		}
		o := crawlAnacrolix(b, light.found)
		report(b, o)
		// The parent benchmark's log is not printed: log the ratios here.
		for j, m := range o.at {
			if j < len(light.at) {
				l := light.at[j]
				b.Logf("at %.1f%% coverage: anacrolix/lightdht wall time x%.1f, queries x%.2f",
					crawlMilestones[j], m.wall.Seconds()/l.wall.Seconds(), float64(m.queries)/float64(l.queries))
			}
		}
		verdict := "at equal coverage"
		if !o.reached {
			verdict = fmt.Sprintf("anacrolix did NOT reach lightdht's coverage: %.2f%% vs %.2f%%, lightdht's full run against anacrolix's capped one", o.coverage(), light.coverage())
		}
		b.Logf("anacrolix/lightdht: wall time x%.1f, queries x%.2f (%s)",
			o.wall.Seconds()/light.wall.Seconds(), float64(o.queries)/float64(light.queries), verdict)
	})
}
