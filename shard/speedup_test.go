package shard_test

import (
	"context"
	"os"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lightdht/lightdht/internal/pgtest"
	"github.com/lightdht/lightdht/internal/synth"
	"github.com/lightdht/lightdht/shard"
)

// TestSharedCrawlSpeedup measures what a four-way shared crawl gains
// over one crawler when the query rate is what limits a crawl, as it is
// on the live DHT at a polite rate: 40,000 nodes, every crawler capped
// at 100 queries/s, in a synctest bubble, so that the times are the
// crawl's own (simulated) and not this machine's, whose 2 cores would
// otherwise be the limit of four crawlers. BenchmarkSharedCrawl4 gives
// the same comparison in real time on a small network, where each
// zone's fixed cost weighs more. It requires the shared crawl to find
// 99.5% of the answering nodes the lone one found, and logs the times
// and queries. Measured at 963bff6: 3.38 to 3.39 times faster a zone at
// a time, 3.60 to 3.63 with Overlap, for 7.7% to 8.4% more queries
// (docs/shared-crawls.md). By hand (two 40,000-node crawls, about 20 s
// each):
//
//	LIGHTDHT_SHARED_SPEEDUP=1 go test -run TestSharedCrawlSpeedup -v ./shard/
func TestSharedCrawlSpeedup(t *testing.T) {
	if os.Getenv("LIGHTDHT_SHARED_SPEEDUP") == "" {
		t.Skip("two 40,000-node crawls; set LIGHTDHT_SHARED_SPEEDUP=1")
	}
	const rate = 100
	for _, tc := range []struct {
		name    string
		bits    int
		overlap bool
	}{{"zones=16", 4, false}, {"zones=16/overlap", 4, true}} {
		t.Run(tc.name, func(t *testing.T) {
			url := pgtest.Database(t)
			synctest.Test(t, func(t *testing.T) {
				cfg := netConfig(7)
				cfg.N = 40_000
				net, err := synth.New(cfg)
				if err != nil {
					t.Fatal(err)
				}
				defer net.Close()
				start := time.Now()
				alone, ids := crawlAlone(t, net, rate)
				aloneTook := time.Since(start)

				members := make([]*member, 4)
				for i := range members {
					members[i] = join(t, url, "speedup", net, rate, func(c *shard.Config) {
						c.Bits, c.Overlap = tc.bits, tc.overlap
					})
				}
				sums := make([]shard.Summary, len(members))
				errs := make([]error, len(members))
				var wg sync.WaitGroup
				start = time.Now()
				for i, m := range members {
					wg.Go(func() { sums[i], errs[i] = m.crawl.Run(context.Background()) })
				}
				wg.Wait()
				sharedTook := time.Since(start)
				queries := 0
				for i := range sums {
					if errs[i] != nil {
						t.Fatal(errs[i])
					}
					queries += sums[i].Queries
				}
				for _, m := range members {
					if err := m.store.Flush(context.Background()); err != nil {
						t.Fatal(err)
					}
				}
				answered := int(scalar(t, members[0].store.SQL(),
					"SELECT count(DISTINCT n.id) FROM visits v JOIN nodes n ON n.ref = v.node WHERE v.outcome IN (1, 2)"))
				speedup := aloneTook.Seconds() / sharedTook.Seconds()
				t.Logf("one crawler: %v, %d queries, %d answering; four: %v, %d queries (%+.1f%%), %d answering; speedup %.2f",
					aloneTook.Round(time.Second), alone.Queries, len(ids), sharedTook.Round(time.Second), queries,
					100*(float64(queries)/float64(alone.Queries)-1), answered, speedup)
				if float64(answered) < 0.995*float64(len(ids)) {
					t.Errorf("the shared crawl found %d answering nodes, the lone one %d", answered, len(ids))
				}
				// The aims, reported rather than asserted: a zone at a
				// time falls short of the speedup (docs/shared-crawls.md).
				if float64(queries) > 1.10*float64(alone.Queries) || speedup < 3.5 {
					t.Logf("short of the aims: queries at most 10%% above the lone crawler's, a speedup of at least 3.5")
				}
			})
		})
	}
}
