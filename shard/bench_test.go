package shard_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/lightdht/lightdht/internal/pgtest"
	"github.com/lightdht/lightdht/internal/synth"
	"github.com/lightdht/lightdht/shard"
)

// BenchmarkSharedCrawl4: the wall time of a four-way shared crawl of the
// 5,000-node network against one crawler alone on the same network, each
// crawler capped at the same 200 queries per second, in real time: 16
// zones crawled one at a time by each process (the default) and two at
// a time (Config.Parallel), and 4 zones. Metrics: speedup (alone / shared; the issue aims
// at 3.5 or more), the two wall times and the queries of each. The lone
// crawler writes to no database, the shared ones to PostgreSQL: the
// comparison is not tilted toward the shared crawl. Each zone's crawl
// ends, as any crawl does, with a tail of a few seconds (the last
// timeouts, the gap probes), which a process pays once per zone.
func BenchmarkSharedCrawl4(b *testing.B) {
	const rate = 200
	for _, tc := range []struct {
		bits, parallel int
		overlap        bool
	}{{4, 1, false}, {4, 1, true}, {4, 2, false}, {2, 1, false}} {
		b.Run(fmt.Sprintf("zones=%d/parallel=%d/overlap=%v", 1<<tc.bits, tc.parallel, tc.overlap), func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				benchShared(b, tc.bits, tc.parallel, tc.overlap, rate, uint64(40+i))
			}
		})
	}
}

// benchShared runs one round of BenchmarkSharedCrawl4 and reports its
// metrics.
func benchShared(b *testing.B, bits, parallel int, overlap bool, rate float64, seed uint64) {
	url := pgtest.Database(b)
	net, err := synth.New(netConfig(seed))
	if err != nil {
		b.Fatal(err)
	}
	defer net.Close()
	start := time.Now()
	res, _ := crawlAlone(b, net, rate)
	alone := time.Since(start)

	members := make([]*member, 4)
	for j := range members {
		members[j] = join(b, url, "bench", net, rate, func(cfg *shard.Config) {
			cfg.Now, cfg.Bits, cfg.Parallel, cfg.Overlap = nil, bits, parallel, overlap
		})
	}
	sums := make([]shard.Summary, 4)
	errs := make([]error, 4)
	var wg sync.WaitGroup
	start = time.Now()
	for j, m := range members {
		wg.Go(func() { sums[j], errs[j] = m.crawl.Run(context.Background()) })
	}
	wg.Wait()
	shared := time.Since(start)
	queries := 0
	for j := range sums {
		if errs[j] != nil {
			b.Fatal(errs[j])
		}
		queries += sums[j].Queries
	}
	b.ReportMetric(alone.Seconds()/shared.Seconds(), "speedup")
	b.ReportMetric(alone.Seconds(), "alone-s")
	b.ReportMetric(shared.Seconds(), "shared-s")
	b.ReportMetric(float64(res.Queries), "alone-queries")
	b.ReportMetric(float64(queries), "shared-queries")
}
