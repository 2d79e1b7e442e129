package shard_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"os"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lightdht/lightdht/crawler"
	"github.com/lightdht/lightdht/db"
	"github.com/lightdht/lightdht/internal/pgtest"
	"github.com/lightdht/lightdht/internal/synth"
	"github.com/lightdht/lightdht/krpc"
	"github.com/lightdht/lightdht/observe"
	"github.com/lightdht/lightdht/shard"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// readmeQueries returns the SQL blocks of the README's section on shared
// crawls.
func readmeQueries(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "## Crawling from several machines into one PostgreSQL database\n")
	if !ok {
		t.Fatal("README has no section on shared crawls")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var out []string
	for {
		_, rest, ok := strings.Cut(section, "```sql\n")
		if !ok {
			break
		}
		query, rest, _ := strings.Cut(rest, "```")
		out = append(out, query)
		section = rest
	}
	if len(out) != 5 {
		t.Fatalf("README's section on shared crawls has %d queries, want 5", len(out))
	}
	return out
}

// replies is a crawler.Recorder that keeps the IDs of the nodes that
// answered: the baseline crawl's findings.
type replies struct {
	mu  sync.Mutex
	ids map[krpc.ID]bool
}

func (r *replies) Observe(s observe.Sighting) {
	if s.Source == observe.SourceReply {
		r.mu.Lock()
		r.ids[s.Node.ID] = true
		r.mu.Unlock()
	}
}

func (r *replies) RecordSample(krpc.NodeInfo, time.Time, int, int, []krpc.ID) {}

// The network and zones of the shared-crawl tests and the benchmark:
// 5,000 nodes, a tenth of them silent, in 16 zones.
const netN, netBits = 5000, 4

// netConfig is the synthetic network of the shared-crawl tests and the
// benchmark.
func netConfig(seed uint64) synth.Config {
	return synth.Config{N: netN, Seed: seed, SilentShare: 0.1, PublicIPs: true, Latency: 20 * time.Millisecond}
}

// crawlConfig is the crawl of the tests and the benchmark, at rate
// queries per second for each crawler.
func crawlConfig(rate float64) crawler.Config {
	return crawler.Config{Rate: rate, Timeout: time.Second, MaxInFlight: 256, ProgressEvery: 100 * time.Millisecond}
}

// crawlAlone crawls the whole of net with one crawler, and returns its
// result and the IDs of the nodes that answered.
func crawlAlone(t testing.TB, net *synth.Network, rate float64) (crawler.Result, map[krpc.ID]bool) {
	t.Helper()
	conn, err := net.Sim().NewConn4()
	if err != nil {
		t.Fatal(err)
	}
	rec := &replies{ids: map[krpc.ID]bool{}}
	cfg := crawlConfig(rate)
	cfg.Conn, cfg.Bootstrap, cfg.Recorder = conn, net.Bootstrap(), rec
	c, err := crawler.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return res, rec.ids
}

// member is one crawler process of a shared crawl: its store and its
// part of the crawl.
type member struct {
	store *db.DB
	crawl *shard.Crawl
}

// join opens a store on url and joins the shared crawl name with a socket
// of its own on net. configure, if set, adjusts the Config.
func join(t testing.TB, url, name string, net *synth.Network, rate float64, configure func(*shard.Config)) *member {
	t.Helper()
	store, err := db.Open(url, db.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	conn, err := net.Sim().NewConn4()
	if err != nil {
		t.Fatal(err)
	}
	ccfg := crawlConfig(rate)
	ccfg.Conn, ccfg.Bootstrap = conn, net.Bootstrap()
	cfg := shard.Config{URL: url, Name: name, Bits: netBits, Store: store, Crawler: ccfg, Host: "test",
		Lease: 30 * time.Second, Now: time.Now}
	if configure != nil {
		configure(&cfg)
	}
	c, err := shard.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return &member{store: store, crawl: c}
}

// scalar runs a query of one number.
func scalar(t testing.TB, q *sql.DB, query string, args ...any) float64 {
	t.Helper()
	var v sql.NullFloat64
	if err := q.QueryRow(query, args...).Scan(&v); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return v.Float64
}

// TestFourCrawlersOneKilled: four crawlers share a crawl of 16 zones of
// a 5,000-node network, one zone at a time each; one is stopped in the
// middle of a zone, once it has finished one, without giving up the
// zone it holds. It is claimed again once its lease runs out, and
// the crawl completes: the union of the answering nodes visited is at
// least 99.5% of those one crawler alone finds, only the dead crawler's
// zone was claimed twice, the queries of all four are at most 30% above
// the lone crawler's, every zone records what its crawl learned (which
// the zones claimed later start from), the visits name four vantages, and
// the crawl_runs row has the zones' combined totals and size estimate,
// its end recorded once. The clock is synctest's, so leases run out by
// the crawl's own time, not by the machine's speed.
func TestFourCrawlersOneKilled(t *testing.T) {
	// The issue aims at 10% more queries at most. This network of 5,000
	// nodes in 16 zones of about 280 answering nodes, where each zone's
	// fixed costs weigh most, needed 13.4% to 21.8% more in ten runs
	// before the zones shared what they learn (crawler.Config.Share) and
	// started from the nodes the other zones saw (crawler.Config.Seeds);
	// since, 1.1% to 10.3% in 56 runs, 4.7% in the median; in 45 runs at
	// 70b403b, +5.4% in the median, at most +15.7%, more than 10% in four
	// (docs/shared-crawls.md). The four first zones still resend their
	// first timeouts before any resend's outcome is known, a later zone
	// asks its checks in full where another has just found a node, and
	// the dead crawler's zone is crawled twice. The bound guards against
	// worse.
	fourCrawlersOneKilled(t, killedCrawl{seed: 31, rate: 500, killAfter: 20, maxExtra: 0.25})
}

// TestFourCrawlersOneKilled40k is TestFourCrawlersOneKilled on the
// 40,000-node network of TestSharedCrawlSpeedup, at its 100 queries per
// second, with the crawler killed halfway through its second zone (about
// 2,800 queries each), and the bound: at most 10% more queries
// than one crawler.
func TestFourCrawlersOneKilled40k(t *testing.T) {
	if os.Getenv("LIGHTDHT_SHARED_SPEEDUP") == "" {
		t.Skip("two 40,000-node crawls; set LIGHTDHT_SHARED_SPEEDUP=1")
	}
	fourCrawlersOneKilled(t, killedCrawl{n: 40_000, seed: 7, rate: 100, killAfter: 1400, maxExtra: 0.1})
}

// killedCrawl is a run of fourCrawlersOneKilled: the network (n nodes,
// netN if 0, and its seed), each crawler's rate, how many queries into
// its second zone crawler 0 dies, and the most queries the four may send
// beyond one crawler's, as a share of its.
type killedCrawl struct {
	n         int
	seed      uint64
	rate      float64
	killAfter int
	maxExtra  float64
}

// fourCrawlersOneKilled runs and checks the crawl of
// TestFourCrawlersOneKilled on the network kc describes.
func fourCrawlersOneKilled(t *testing.T, kc killedCrawl) {
	url := pgtest.Database(t)
	synctest.Test(t, func(t *testing.T) {
		cfg := netConfig(kc.seed)
		if kc.n > 0 {
			cfg.N = kc.n
		}
		net, err := synth.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer net.Close()
		rate := kc.rate
		alone, aloneIDs := crawlAlone(t, net, rate)

		killCtx, kill := context.WithCancel(context.Background())
		defer kill()
		// Crawler 0 dies in the middle of a zone, once it has finished
		// one, holding the zones it is crawling (one: Config.Parallel).
		var (
			mu         sync.Mutex
			held       = map[int]bool{}
			doneByK    int
			heldAtKill map[int]bool
		)
		var members []*member
		for i := range 4 {
			m := join(t, url, "census", net, rate, func(cfg *shard.Config) {
				if i != 0 {
					return
				}
				cfg.Progress = func(e shard.Event) {
					mu.Lock()
					defer mu.Unlock()
					switch e.Kind {
					case shard.EventClaimed:
						held[e.Zone.Number] = true
					case shard.EventDone:
						doneByK++
						delete(held, e.Zone.Number)
					case shard.EventLost:
						delete(held, e.Zone.Number)
					}
				}
				cfg.Crawler.Progress = func(p crawler.Progress) {
					mu.Lock()
					defer mu.Unlock()
					if heldAtKill == nil && doneByK >= 1 && len(held) > 0 && p.Queries > kc.killAfter {
						heldAtKill = maps.Clone(held)
						kill()
					}
				}
			})
			members = append(members, m)
		}
		sums := make([]shard.Summary, 4)
		errs := make([]error, 4)
		var wg sync.WaitGroup
		for i, m := range members {
			ctx := context.Background()
			if i == 0 {
				ctx = killCtx
			}
			wg.Go(func() { sums[i], errs[i] = m.crawl.Run(ctx) })
		}
		wg.Wait()
		if !errors.Is(errs[0], context.Canceled) {
			t.Fatalf("killed crawler: Run = %v, want context.Canceled", errs[0])
		}
		if sums[0].Crawled < 1 || heldAtKill == nil {
			t.Fatalf("killed crawler marked %d zones done, held %v when killed; want it killed after its first", sums[0].Crawled, heldAtKill)
		}
		t.Logf("summaries: %+v", sums)
		queries, last := sums[0].Queries, 0
		for i := 1; i < 4; i++ {
			if errs[i] != nil {
				t.Fatalf("crawler %d: %v", i, errs[i])
			}
			queries += sums[i].Queries
			if sums[i].Last {
				last++
			}
		}
		if last != 1 {
			t.Errorf("%d crawlers recorded the end of the crawl, want 1", last)
		}
		for _, m := range members {
			if err := m.store.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		q := members[1].store.SQL()
		id := members[1].crawl.ID()

		// Coverage: the answering nodes visited, against the lone crawl.
		rows, err := q.Query(`SELECT DISTINCT id FROM visit_details WHERE crawl = $1 AND outcome IN ('replied', 'error')`, id)
		if err != nil {
			t.Fatal(err)
		}
		union := map[krpc.ID]bool{}
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			nid, err := krpc.ParseID(s)
			if err != nil {
				t.Fatal(err)
			}
			union[nid] = true
		}
		rows.Close()
		covered, answering := 0, 0
		for nid := range aloneIDs {
			if union[nid] {
				covered++
			}
		}
		for _, n := range net.Truth().Nodes {
			if n.Answering {
				answering++
			}
		}
		t.Logf("alone: %d answering nodes found, %d queries; shared: %d found (%d of the lone crawl's), %d queries (%+.1f%%); %d answering in truth",
			len(aloneIDs), alone.Queries, len(union), covered, queries, 100*(float64(queries)/float64(alone.Queries)-1), answering)
		if float64(covered) < 0.995*float64(len(aloneIDs)) {
			t.Errorf("shared crawl found %d of the %d answering nodes one crawler finds, want at least 99.5%%", covered, len(aloneIDs))
		}
		if float64(queries) > (1+kc.maxExtra)*float64(alone.Queries) {
			t.Errorf("shared crawl sent %d queries, one crawler %d: want at most %.0f%% more", queries, alone.Queries, 100*kc.maxExtra)
		}

		// Zones: every one done once, but the dead crawler's, done by another.
		zones, err := members[1].crawl.Zones(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		twice := 0
		for _, z := range zones {
			switch {
			case z.State != shard.StateDone:
				t.Errorf("zone %d is %s, want done", z.Number, z.State)
			case z.Claims == 2:
				twice++
				if !heldAtKill[z.Number] {
					t.Errorf("zone %d claimed twice, but the dead crawler did not hold it (it held %v)", z.Number, heldAtKill)
				}
				if z.Holder == members[0].crawl.Holder() {
					t.Errorf("zone %d, claimed twice, was finished by the crawler that died", z.Number)
				}
			case z.Claims != 1:
				t.Errorf("zone %d claimed %d times", z.Number, z.Claims)
			}
		}
		if twice != len(heldAtKill) {
			t.Errorf("%d zones claimed twice, want the dead crawler's %v", twice, heldAtKill)
		}
		t.Logf("the dead crawler held zones %v; %d zones claimed twice", heldAtKill, twice)
		// What each zone's crawl learned is recorded, and the zones
		// claimed once four were done start from it: on this network
		// the nodes that time out never answer a resend, so a crawl
		// that knows it resends one timeout in 50, where the first
		// zones, learning, resent about as many as timed out.
		if n := scalar(t, q, "SELECT count(*) FROM crawl_zones WHERE crawl = $1 AND (resends_sent IS NULL OR checks_sent IS NULL OR checks_found IS NULL)", id); n != 0 {
			t.Errorf("%v zones done without what their crawls learned", n)
		}
		first := scalar(t, q, `SELECT avg(resends_sent) FROM (SELECT resends_sent FROM crawl_zones WHERE crawl = $1 ORDER BY finished LIMIT 4) f`, id)
		later := scalar(t, q, `SELECT avg(resends_sent) FROM crawl_zones WHERE crawl = $1
			AND started >= (SELECT finished FROM crawl_zones WHERE crawl = $1 ORDER BY finished LIMIT 1 OFFSET 3)`, id)
		t.Logf("resends per zone: %.1f in the first four zones done, %.1f in the zones claimed after them", first, later)
		if !(later < first/2) {
			t.Errorf("zones claimed once four were done resent %.1f each, the first four %.1f: want fewer than half", later, first)
		}
		// The first four zones, crawled at once, learn together that the
		// checks find nothing here (crawler.Config.Share): their checks
		// stop once they number 300 or so in all, as a lone crawl's do,
		// where each used to ask its own 150 or so.
		checks := scalar(t, q, `SELECT sum(checks_sent) FROM (SELECT checks_sent FROM crawl_zones WHERE crawl = $1 ORDER BY finished LIMIT 4) f`, id)
		t.Logf("checks: %v in the first four zones done", checks)
		perZone, err := q.Query(`SELECT zone, checks_sent, checks_found FROM crawl_zones WHERE crawl = $1 ORDER BY finished`, id)
		if err != nil {
			t.Fatal(err)
		}
		var line []string
		for perZone.Next() {
			var z, sent, found int
			if err := perZone.Scan(&z, &sent, &found); err != nil {
				t.Fatal(err)
			}
			line = append(line, fmt.Sprintf("%d:%d/%d", z, sent, found))
		}
		perZone.Close()
		t.Logf("checks sent/found per zone, in the order done: %s", strings.Join(line, " "))
		t.Logf("resends %v and checks %v (finding %v) in all zones; the lone crawl's: %d and %d (finding %d)",
			scalar(t, q, "SELECT sum(resends_sent) FROM crawl_zones WHERE crawl = $1", id),
			scalar(t, q, "SELECT sum(checks_sent) FROM crawl_zones WHERE crawl = $1", id),
			scalar(t, q, "SELECT sum(checks_found) FROM crawl_zones WHERE crawl = $1", id),
			alone.Resends, alone.Checks, alone.Learned.Checks.Answered)
		if n := scalar(t, q, "SELECT count(DISTINCT vantage) FROM visits WHERE crawl = $1", id); n != 4 {
			t.Errorf("visits name %v vantages, want 4", n)
		}
		// Each node in the census is visited once: the zones do not overlap.
		if n := scalar(t, q, "SELECT count(*) FROM (SELECT node FROM visits WHERE crawl = $1 GROUP BY node HAVING count(*) > 1) d", id); n != 0 {
			t.Errorf("%v nodes visited more than once", n)
		}

		// The crawl's record: the zones' sums, ended once.
		tot, err := members[1].crawl.Totals(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var (
			ended                   sql.NullInt64
			found, replied, queried int64
			size                    float64
			visitsReplied           int64
		)
		err = q.QueryRow(`SELECT ended, nodes_found, nodes_replied, queries_sent, size_estimate, visits_replied
			FROM crawl_runs WHERE id = $1`, id).Scan(&ended, &found, &replied, &queried, &size, &visitsReplied)
		if err != nil {
			t.Fatal(err)
		}
		if !ended.Valid {
			t.Error("crawl_runs.ended not set")
		}
		if found != tot.NodesFound || replied != tot.NodesReplied || queried != tot.QueriesSent || size != tot.SizeEstimate {
			t.Errorf("crawl_runs has found %d, replied %d, queries %d, size %v; the zones sum to %+v", found, replied, queried, size, tot)
		}
		if visitsReplied != replied {
			t.Errorf("crawl_runs.visits_replied %d, nodes_replied %d: want the visits of the zones only", visitsReplied, replied)
		}
		if want := int64(1<<netBits + twice); tot.Claims != want {
			t.Errorf("%d claims, want %d", tot.Claims, want)
		}
		real := 0
		for _, n := range net.Truth().Nodes {
			if !n.Bogon {
				real++
			}
		}
		if size < 0.95*float64(real) || size > 1.05*float64(real) {
			t.Errorf("size estimate %.0f for %d nodes, want within 5%%", size, real)
		}
		if n := scalar(t, q, "SELECT count(*) FROM shared_crawls WHERE crawl = $1 AND finished IS NOT NULL AND finisher IS NOT NULL", id); n != 1 {
			t.Errorf("shared_crawls: %v rows finished, want 1", n)
		}

		// The README's queries run on this crawl; those of the zones and
		// the run return rows (the vantage views may have none: each
		// node was visited from one vantage).
		for i, query := range readmeQueries(t) {
			rows, err := q.Query(strings.ReplaceAll(query, "'census-1'", "'census'"))
			if err != nil {
				t.Errorf("README query %d: %v\n%s", i+1, err, query)
				continue
			}
			n := 0
			for rows.Next() {
				n++
			}
			if err := rows.Err(); err != nil {
				t.Errorf("README query %d: %v", i+1, err)
			}
			rows.Close()
			if i < 3 && n == 0 {
				t.Errorf("README query %d returned no rows:\n%s", i+1, query)
			}
		}
	})
}

// TestParallelOverlap: four crawlers, each crawling two zones at once on
// its one socket and claiming the next zone as a crawl reaches its tail
// (Config.Parallel, Config.Overlap), complete the crawl with every zone
// claimed once, at least 99.5% of the answering nodes visited, each
// node visited once, from four vantages, and the end recorded once. It
// runs in real time (no lease runs out): outcomes, not speed, are
// checked.
func TestParallelOverlap(t *testing.T) {
	url := pgtest.Database(t)
	net, err := synth.New(netConfig(32))
	if err != nil {
		t.Fatal(err)
	}
	defer net.Close()
	var members []*member
	for range 4 {
		members = append(members, join(t, url, "overlap", net, 500, func(cfg *shard.Config) {
			cfg.Parallel, cfg.Overlap = 2, true
		}))
	}
	sums := make([]shard.Summary, 4)
	errs := make([]error, 4)
	var wg sync.WaitGroup
	for i, m := range members {
		wg.Go(func() { sums[i], errs[i] = m.crawl.Run(context.Background()) })
	}
	wg.Wait()
	last := 0
	for i := range sums {
		if errs[i] != nil {
			t.Fatalf("crawler %d: %v", i, errs[i])
		}
		if sums[i].Last {
			last++
		}
		if err := members[i].store.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if last != 1 {
		t.Errorf("%d crawlers recorded the end, want 1", last)
	}
	zones, err := members[0].crawl.Zones(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, z := range zones {
		if z.State != shard.StateDone || z.Claims != 1 {
			t.Errorf("zone %d: %s, %d claims; want done once", z.Number, z.State, z.Claims)
		}
	}
	q, id := members[0].store.SQL(), members[0].crawl.ID()
	answering := 0
	for _, n := range net.Truth().Nodes {
		if n.Answering {
			answering++
		}
	}
	found := scalar(t, q, "SELECT count(DISTINCT id) FROM visit_details WHERE crawl = $1 AND outcome IN ('replied', 'error')", id)
	t.Logf("%v of %d answering nodes visited", found, answering)
	if found < 0.995*float64(answering) {
		t.Errorf("%v of %d answering nodes visited, want at least 99.5%%", found, answering)
	}
	if n := scalar(t, q, "SELECT count(*) FROM (SELECT node FROM visits WHERE crawl = $1 GROUP BY node HAVING count(*) > 1) d", id); n != 0 {
		t.Errorf("%v nodes visited more than once", n)
	}
	if n := scalar(t, q, "SELECT count(DISTINCT vantage) FROM visits WHERE crawl = $1", id); n != 4 {
		t.Errorf("visits name %v vantages, want 4", n)
	}
}
