package crawler_test

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/lightdht/lightdht/crawler"
	"github.com/lightdht/lightdht/internal/synth"
)

// BenchmarkCrawl1M crawls a synthetic network of 1,000,000 nodes (10%
// silent, no latency, in memory) and reports coverage of the answering
// nodes, queries per answering node, the crawler's memory per node it
// tracked, and wall time. The simulated nodes answer on the same 2 cores
// as the crawler, so 1,024 queries in flight keep it busy; more only wait
// in queues, past the 1 s timeout. Run it with
//
//	go test -run '^$' -bench Crawl1M -benchtime 1x -timeout 30m ./crawler/
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
		c, err := crawler.New(crawler.Config{Conn: conn, Bootstrap: net.Bootstrap(), Recorder: rec,
			Rate: 1e7, MaxInFlight: 1024, Timeout: time.Second, Idle: time.Minute})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		res, err := c.Run(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		wall := time.Since(start)

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
		b.Logf("found %d of %d answering nodes; %d discovered; %d packets; %d timeouts (%d silent nodes), %d resends; %d queries still queued at the end; %d replies dropped on a full receive queue; crawl %v",
			found, answering, res.Discovered, res.Packets, res.Timeouts, len(truth.Nodes)-answering, res.Resends, res.Waiting, net.Sim().Stats().DroppedQueueFull, wall)
		runtime.KeepAlive(rec)
		net.Close()
	}
}
