package crawler_test

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/lightdht/lightdht/crawler"
	"github.com/lightdht/lightdht/db"
	"github.com/lightdht/lightdht/internal/synth"
)

// fixedForBench keeps the benchmarks on the fixed-rate sender: they
// measure the crawler's own cost at full speed, and the simulated nodes
// share its CPU in real time, so round trips grow with the load and the
// adaptive sender would measure the scheduler rather than the crawler
// (and the figures would not compare with those measured before it).
const fixedForBench = true

// BenchmarkCrawl1M crawls a synthetic network of 1,000,000 nodes (10%
// silent, no latency, in memory) and reports coverage of the answering
// nodes, queries per answering node, the crawler's memory per node it
// tracked, and wall time. The simulated nodes answer on the same 2 cores
// as the crawler, so 1,024 queries in flight keep it busy; more only wait
// in queues, past the 1 s timeout. Run it with
//
//	go test -run '^$' -bench Crawl1M -benchtime 1x -timeout 30m ./crawler/
//
// The crawler's goroutines (its loop and its transport's) carry the
// profiler label part=crawler, so that a CPU profile tells the crawler's
// own CPU time from the simulated nodes':
//
//	go test -run '^$' -bench 'Crawl1M$' -benchtime 1x -timeout 30m -cpuprofile cpu.out ./crawler/
//	go tool pprof -tagfocus part=crawler -top cpu.out | head -3   # the crawler's share
func BenchmarkCrawl1M(b *testing.B) {
	if testing.Short() {
		b.Skip("1,000,000-node network")
	}
	for b.Loop() {
		net, err := synth.New(synth.Config{N: 1_000_000, Seed: 21, SilentShare: 0.1, PublicIPs: true})
		if err != nil {
			b.Fatal(err)
		}
		conn, err := net.Sim().NewConn4()
		if err != nil {
			b.Fatal(err)
		}
		rec := newRecorder()
		var (
			c     *crawler.Crawler
			res   crawler.Result
			start time.Time
		)
		pprof.Do(context.Background(), pprof.Labels("part", "crawler"), func(ctx context.Context) {
			c, err = crawler.New(crawler.Config{Conn: conn, Bootstrap: net.Bootstrap(), Recorder: rec,
				Rate: 1e7, MaxInFlight: 1024, Timeout: time.Second, Idle: time.Minute, Adaptive: !fixedForBench})
			if err != nil {
				b.Fatal(err)
			}
			start = time.Now()
			res, err = c.Run(ctx)
		})
		if err != nil {
			b.Fatal(err)
		}
		wall := time.Since(start)
		b.ReportMetric(float64(res.Packets), "packets")

		// The crawler's own memory: the heap with it, minus the heap once
		// it is gone (the network and the recorder stay alive throughout).
		runtime.GC()
		var with, without runtime.MemStats
		runtime.ReadMemStats(&with)
		runtime.KeepAlive(c)
		c = nil
		runtime.GC()
		runtime.ReadMemStats(&without)
		perNode := float64(int64(with.HeapAlloc)-int64(without.HeapAlloc)) / float64(res.Discovered)

		truth := net.Truth()
		answering, found := coverage(truth, rec)
		b.ReportMetric(100*float64(found)/float64(answering), "coverage-%")
		b.ReportMetric(float64(res.Packets)/float64(answering), "queries/answering-node")
		b.ReportMetric(perNode, "crawler-B/node")
		b.ReportMetric(wall.Seconds(), "wall-s")
		b.Logf("found %d of %d answering nodes; %d discovered; %d packets; %d timeouts (%d silent nodes), %d resends; checks %d (%d found, %d left); %d queries still queued at the end; %d replies dropped on a full receive queue; crawl %v",
			found, answering, res.Discovered, res.Packets, res.Timeouts, len(truth.Nodes)-answering, res.Resends,
			res.Checks, res.Learned.Checks.Answered, res.ChecksLeft, res.Waiting, net.Sim().Stats().DroppedQueueFull, wall)
		runtime.KeepAlive(rec)
		net.Close()
	}
}

// BenchmarkCrawl1MHistory is BenchmarkCrawl1M into a SQLite database
// with the crawl history on (visits, one run; reports as the command line
// records them): it reports the file's size, bytes per node, the
// sightings and visits written, what the database shed (nothing: a
// crawl's recorder waits for room) and wall time, to compare with
// BenchmarkCrawl1M's. Run it with
//
//	go test -run '^$' -bench Crawl1MHistory -benchtime 1x -timeout 60m ./crawler/
func BenchmarkCrawl1MHistory(b *testing.B) {
	if testing.Short() {
		b.Skip("1,000,000-node network")
	}
	for b.Loop() {
		net, err := synth.New(synth.Config{N: 1_000_000, Seed: 21, SilentShare: 0.1, PublicIPs: true})
		if err != nil {
			b.Fatal(err)
		}
		conn, err := net.Sim().NewConn4()
		if err != nil {
			b.Fatal(err)
		}
		path := filepath.Join(b.TempDir(), "crawl.db")
		d, err := db.Open(path, db.Options{Reports: true})
		if err != nil {
			b.Fatal(err)
		}
		c, err := crawler.New(crawler.Config{Conn: conn, Bootstrap: net.Bootstrap(), Recorder: d,
			Rate: 1e7, MaxInFlight: 1024, Timeout: time.Second, Idle: time.Minute, Adaptive: !fixedForBench})
		if err != nil {
			b.Fatal(err)
		}
		run, err := d.StartRun(db.RunInfo{})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		res, err := c.Run(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		crawled := time.Since(start)
		if err := d.EndRun(run, db.RunCounts{NodesFound: int64(res.Discovered), NodesReplied: int64(res.Replied)}); err != nil {
			b.Fatal(err)
		}
		wall := time.Since(start)
		var visits, sessions int64
		if err := d.SQL().QueryRow("SELECT count(*), (SELECT count(*) FROM sessions) FROM visits").Scan(&visits, &sessions); err != nil {
			b.Fatal(err)
		}
		st := d.Stats()
		if err := d.Close(); err != nil {
			b.Fatal(err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(wall.Seconds(), "wall-s")
		b.ReportMetric(crawled.Seconds(), "crawl-s")
		b.ReportMetric(float64(fi.Size())/1e6, "file-MB")
		b.ReportMetric(float64(fi.Size())/float64(res.Discovered), "file-B/node")
		b.ReportMetric(float64(st.Shed), "shed")
		b.ReportMetric(float64(visits), "visits")
		b.Logf("%d nodes discovered, %d replied; %d items written (%d sightings and samples, %d visits), %d shed, %d sessions; crawl %v, until EndRun %v; file %d bytes",
			res.Discovered, res.Replied, st.Written, int64(st.Written)-visits, visits, st.Shed, sessions, crawled, wall, fi.Size())
		net.Close()
	}
}
