package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/lightdht/lightdht"
	"github.com/lightdht/lightdht/crawler"
	"github.com/lightdht/lightdht/db"
	"github.com/lightdht/lightdht/krpc"
	"github.com/lightdht/lightdht/metrics"
	"github.com/lightdht/lightdht/observe"
)

// parseZone parses --zone PREFIX/BITS: PREFIX is up to 40 hex digits
// (zero-padded on the right), BITS 1 to 32 and at most 4 x len(PREFIX).
func parseZone(s string) (crawler.Zone, error) {
	var z crawler.Zone
	if s == "" {
		return z, nil
	}
	prefix, bitsStr, ok := strings.Cut(s, "/")
	bits, err := strconv.Atoi(bitsStr)
	if !ok || err != nil || bits < 1 || bits > 32 || prefix == "" || len(prefix) > 2*krpc.IDLen {
		return z, usagef("bad --zone %q: want PREFIX/BITS with a hex PREFIX and BITS from 1 to 32, e.g. ab/8", s)
	}
	if bits > 4*len(prefix) {
		return z, usagef("bad --zone %q: %d bits need at least %d hex digits", s, bits, (bits+3)/4)
	}
	full := prefix + strings.Repeat("0", 2*krpc.IDLen-len(prefix))
	if _, err := hex.Decode(z.Prefix[:], []byte(full)); err != nil {
		return z, usagef("bad --zone %q: prefix is not hexadecimal", s)
	}
	z.Bits = bits
	return z, nil
}

// recorder forwards to the database once it is open, so that the crawl's
// configuration is checked before the file is created.
// It also counts each sighting in the metrics, when there are any.
type recorder struct {
	d *db.DB
	m *metrics.Set // nil: no --metrics
}

func (r *recorder) Observe(s lightdht.Sighting) {
	if r.m != nil {
		r.m.Observe(s)
	}
	r.d.Observe(s)
}
func (r *recorder) RecordSample(n krpc.NodeInfo, t time.Time, num, interval int, samples []krpc.ID) {
	r.d.RecordSample(n, t, num, interval, samples)
}
func (r *recorder) RecordVisit(v observe.Visit) { r.d.RecordVisit(v) }
func (r *recorder) RecordPeer(ih krpc.ID, peer netip.AddrPort, source string, t time.Time) {
	r.d.RecordPeer(ih, peer, source, t)
}

// crawlSummary is crawl's output.
type crawlSummary struct {
	Run      int64  `json:"run"`
	DB       string `json:"db"`
	Nodes    int    `json:"nodes"`
	Replied  int    `json:"replied"`
	Queried  int    `json:"queried"`
	Timeouts int    `json:"timeouts"`
	Waiting  int    `json:"waiting,omitempty"`
	Bogons   int    `json:"bogons"`
	// Sanitizing (crawler.Result): contacts not queried because only
	// discounted nodes listed them, and the nodes discounted.
	Discounted          int     `json:"discounted,omitempty"`
	DiscountedReporters int     `json:"discounted_reporters,omitempty"`
	Infohashes          int     `json:"infohashes"`
	Samples             int     `json:"samples"`
	Peers               int     `json:"peers,omitempty"`
	Incoming            int     `json:"incoming_queries,omitempty"`
	Passive             int     `json:"passive_infohashes,omitempty"`
	SizeEstimate        float64 `json:"size_estimate,omitempty"`
	// A zone crawl's 95% intervals, and its estimate of the nodes that
	// answer (crawler.Result).
	SizeLow           float64 `json:"size_low,omitempty"`
	SizeHigh          float64 `json:"size_high,omitempty"`
	ZoneAnswering     int     `json:"zone_answering,omitempty"`
	AnsweringEstimate float64 `json:"answering_estimate,omitempty"`
	AnsweringLow      float64 `json:"answering_low,omitempty"`
	AnsweringHigh     float64 `json:"answering_high,omitempty"`
	// The second pass (crawler.Result): nodes asked for their nearest
	// neighbours, and those left once the checks stopped finding nodes.
	Checks     int `json:"checks,omitempty"`
	ChecksLeft int `json:"checks_left,omitempty"`
	// Resends after a timeout, and of those the ones held back at first
	// and sent once resends were seen to pay (crawler.Result).
	Resends     int     `json:"resends"`
	Redeemed    int     `json:"resends_redeemed,omitempty"`
	Queries     int     `json:"queries"`
	Packets     uint64  `json:"packets"`
	DurationMs  float64 `json:"duration_ms"`
	Interrupted bool    `json:"interrupted,omitempty"`
	Shed        uint64  `json:"sightings_shed,omitempty"`
}

// crawlConfig is what a crawl run stores as its configuration.
type crawlConfig struct {
	Rate          float64 `json:"rate"`
	PerIPInterval string  `json:"per_ip_interval"`
	Duration      string  `json:"duration,omitempty"`
	Zone          string  `json:"zone,omitempty"`
	Continuous    bool    `json:"continuous"`
	Infohashes    bool    `json:"infohashes"`
	Peers         bool    `json:"peers,omitempty"`
	PeersLimit    int     `json:"peers_limit,omitempty"`
	Respond       bool    `json:"respond,omitempty"`
	TestNet       bool    `json:"testnet"`
	Visits        bool    `json:"visits"`
	Neighbours    bool    `json:"neighbours,omitempty"`
	Every         string  `json:"every,omitempty"`
	Adaptive      bool    `json:"adaptive,omitempty"`
}

func crawlCmd(c *cli) func(context.Context, []string) error {
	c.addJSON()
	bootstrap := c.addBootstrap()
	dbPath := c.addDB()
	listen := c.fs.String("listen", "", "local UDP address (default: 127.0.0.1:0 for a loopback bootstrap, 0.0.0.0:0 otherwise)")
	rate := c.fs.Float64("rate", crawler.DefaultRate, "queries per second, at most: the ceiling of the adaptive sender, which slows down when round trips grow or timeouts rise")
	adaptive := c.fs.Bool("adaptive", false, "adapt the send rate to the path, with --rate as its ceiling (slow where round trips are heavy-tailed, as on the live DHT; see docs/crawler.md)")
	perIP := c.fs.Duration("per-ip-interval", crawler.DefaultPerIPInterval, "least time between two queries to one IP")
	duration := c.fs.Duration("duration", 0, "stop each crawl after this long (0: when the crawl is done; --continuous: never)")
	idle := c.fs.Duration("idle", crawler.DefaultIdle, "end a crawl once no new node has been found for this long")
	zone := c.fs.String("zone", "", "crawl only the IDs starting with PREFIX/BITS (hex prefix, 1-32 bits), e.g. ab/8, and estimate the DHT's size")
	continuous := c.fs.Bool("continuous", false, "keep crawling, revisiting nodes, until interrupted or --duration")
	infohashes := c.fs.Bool("infohashes", false, "harvest infohashes with BEP 51 sample_infohashes")
	peers := c.fs.Bool("peers", false, "with --infohashes: end by asking the nodes closest to each harvested infohash for its peers")
	peersLimit := c.fs.Int("peers-limit", 0, "with --peers: ask about at most this many infohashes (0: all)")
	respond := c.fs.Bool("respond", false, "answer queries instead of being read-only, and record the infohashes of incoming get_peers and announce_peer")
	testnet := c.fs.Bool("testnet", false, "allow loopback and private addresses: crawl a local test network")
	progress := c.fs.Duration("progress", 10*time.Second, "interval of the status lines when stderr is not a terminal (0: none)")
	visits := c.fs.Bool("visits", true, "record a visit per node per crawl (the crawl history); --visits=false keeps only the per-node totals")
	neighbours := c.fs.Bool("neighbours", false, "record who listed whom in each crawl (the neighbours table; large)")
	every := c.fs.Duration("every", 0, "repeat the full crawl, one run each, starting every INTERVAL (0: crawl once)")
	count := c.fs.Int("count", 0, "with --every: stop after this many crawls (0: until interrupted)")
	ef := c.addEnrichFlags()
	metricsAddr := c.addMetrics()
	shared := c.addSharedFlags()
	return func(ctx context.Context, args []string) error {
		switch {
		case *peers && !*infohashes:
			return usagef("--peers needs --infohashes (it asks for the peers of harvested infohashes)")
		case *peersLimit < 0:
			return usagef("--peers-limit must not be negative")
		case *every < 0 || *count < 0:
			return usagef("--every and --count must not be negative")
		case *every > 0 && *continuous:
			return usagef("--every repeats crawls that end; a --continuous crawl never does")
		case *count > 0 && *every == 0:
			return usagef("--count needs --every")
		}
		if err := nargs(args, 0, 0, "no arguments"); err != nil {
			return err
		}
		z, err := parseZone(*zone)
		if err != nil {
			return err
		}
		if err := shared.check(*dbPath, setFlags(c.fs)); err != nil {
			return err
		}
		if *rate <= 0 || *perIP < 0 || *duration < 0 || *idle <= 0 || *progress < 0 {
			return usagef("--rate and --idle must be positive; --per-ip-interval, --duration and --progress not negative")
		}
		boot, err := c.resolveBootstrap(ctx, *bootstrap)
		if err != nil {
			return err
		}
		enricher, err := ef.open()
		if err != nil {
			return err
		}
		if enricher != nil {
			defer enricher.Close()
		}
		set, _, stopMetrics, err := c.startMetrics(*metricsAddr)
		if err != nil {
			return err
		}
		defer stopMetrics()
		rec := &recorder{m: set}
		var last lastProgress
		term := isTerminal(c.stderr)
		var lastPrint time.Time
		cfg := crawler.Config{Bootstrap: boot, Rate: *rate, PerIPInterval: *perIP, Idle: *idle,
			Continuous: *continuous, Zone: z, Infohashes: *infohashes, Peers: *peers, PeersLimit: *peersLimit,
			Respond: *respond, TestNet: *testnet, Recorder: rec, NoVisits: !*visits, Logger: c.log,
			ProgressEvery: time.Second, Adaptive: *adaptive}
		if *progress > 0 && *progress < time.Second {
			cfg.ProgressEvery = *progress
		}
		cfg.Progress = func(p crawler.Progress) {
			last.set(p)
			line := fmt.Sprintf("%s: %d nodes, %d replied, %d queued, %d in flight, %d queries, %.0f q/s (allowed %.0f)",
				p.Elapsed.Truncate(time.Second), p.Discovered, p.Replied, p.Queued, p.InFlight, p.Queries, p.QPS, p.Rate)
			switch {
			case term:
				fmt.Fprintf(c.stderr, "\r\033[K%s", line)
			case *progress > 0 && time.Since(lastPrint) >= *progress:
				lastPrint = time.Now()
				fmt.Fprintln(c.stderr, line)
			}
		}
		if *shared.name != "" {
			info := db.RunInfo{Config: crawlConfig{Rate: *rate, PerIPInterval: perIP.String(), Infohashes: *infohashes,
				Peers: *peers, PeersLimit: *peersLimit, TestNet: *testnet, Visits: *visits, Neighbours: *neighbours},
				ProgramVersion: "lightdht " + programVersion, Bootstrap: netipStrings(boot)}
			return c.sharedCrawl(ctx, shared, *dbPath, *listen, cfg, info, *neighbours)
		}
		// The first crawler is made before the database is opened, so
		// that a bad configuration creates no file.
		newCrawler := func() (*crawler.Crawler, string, error) {
			conn, err := listenUDP(*listen, "listen", boot, has6(boot) && !has4(boot))
			if err != nil {
				return nil, "", err
			}
			cc := cfg
			cc.Conn = conn
			cr, err := crawler.New(cc)
			if err != nil {
				conn.Close()
				var ce *crawler.ConfigError
				switch {
				case errors.Is(err, crawler.ErrNeedsTestNet) && errors.As(err, &ce):
					return nil, "", usagef("%s (a local test network needs --testnet)", ce.Reason)
				case errors.As(err, &ce):
					return nil, "", usagef("%s", ce.Reason)
				}
				return nil, "", usagef("%s", err)
			}
			if set != nil {
				set.AddTransport(cr.TransportStats)
			}
			return cr, conn.LocalAddr().String(), nil
		}
		cr, vantage, err := newCrawler()
		if err != nil {
			return err
		}
		d, err := db.Open(*dbPath, db.Options{Reports: true, Neighbours: *neighbours})
		if err != nil {
			cr.Close()
			return err
		}
		defer d.Close()
		rec.d = d
		if set != nil {
			set.SetDB(d)
			set.SetCrawl(last.get)
		}
		ccfg := crawlConfig{Rate: *rate, PerIPInterval: perIP.String(), Zone: *zone, Continuous: *continuous,
			Infohashes: *infohashes, Peers: *peers, PeersLimit: *peersLimit, Respond: *respond, TestNet: *testnet,
			Visits: *visits, Neighbours: *neighbours, Adaptive: *adaptive}
		if *duration > 0 {
			ccfg.Duration = duration.String()
		}
		if *every > 0 {
			ccfg.Every = every.String()
		}
		host, _ := os.Hostname()
		for i := 1; ; i++ {
			started := time.Now()
			sum, err := c.crawlOnce(ctx, cr, d, db.RunInfo{Started: started, Config: ccfg, ProgramVersion: "lightdht " + programVersion,
				Bootstrap: netipStrings(boot), Vantage: vantage, Host: host}, *duration, term)
			if err != nil {
				return err
			}
			if enricher != nil {
				// The new IPs get their country and network before the
				// next crawl, and before the summary says it is done.
				if _, err := enrichDB(context.WithoutCancel(ctx), d, enricher, false); err != nil {
					return err
				}
			}
			if err := c.output(sum, func(w io.Writer) { printSummary(w, sum) }); err != nil {
				return err
			}
			if sum.Interrupted {
				return errInterrupted
			}
			if *every == 0 || (*count > 0 && i == *count) {
				break
			}
			wait := time.Until(started.Add(*every))
			if wait <= 0 {
				c.log.Warn().Dur("took", time.Since(started)).Dur("every", *every).Msg("crawl took longer than --every: the next starts now")
			}
			select {
			case <-time.After(max(wait, 0)):
			case <-ctx.Done():
				return errInterrupted
			}
			if cr, vantage, err = newCrawler(); err != nil {
				return err
			}
		}
		return d.Close()
	}
}

// crawlOnce runs one crawl as one run of d and returns its summary. A
// crawl that ctx interrupted is ended and summarised too, with
// Interrupted set.
func (c *cli) crawlOnce(ctx context.Context, cr *crawler.Crawler, d *db.DB, info db.RunInfo, duration time.Duration, term bool) (crawlSummary, error) {
	runID, err := d.StartRun(info)
	if err != nil {
		cr.Close()
		return crawlSummary{}, err
	}
	cctx := ctx
	if duration > 0 {
		var cancel context.CancelFunc
		cctx, cancel = context.WithTimeout(ctx, duration)
		defer cancel()
	}
	shedBefore := d.Stats().Shed
	res, runErr := cr.Run(cctx)
	if term {
		fmt.Fprintln(c.stderr)
	}
	interrupted := ctx.Err() != nil
	if runErr != nil && (interrupted || errors.Is(runErr, context.DeadlineExceeded)) {
		runErr = nil
	}
	shed := d.Stats().Shed - shedBefore
	endErr := d.EndRun(runID, db.RunCounts{NodesFound: int64(res.Discovered), NodesReplied: int64(res.Replied),
		Infohashes: int64(res.Infohashes), QueriesSent: int64(res.Queries), SightingsShed: int64(shed), SizeEstimate: res.SizeEstimate})
	if err := errors.Join(runErr, endErr); err != nil {
		return crawlSummary{}, err
	}
	return crawlSummary{Run: runID, DB: d.Path(), Nodes: res.Discovered, Replied: res.Replied, Queried: res.Queried,
		Timeouts: res.Timeouts, Waiting: res.Waiting, Bogons: res.Bogons,
		Discounted: res.Discounted, DiscountedReporters: res.DiscountedReporters, Infohashes: res.Infohashes, Samples: res.Samples, Peers: res.Peers,
		Incoming: res.Incoming, Passive: res.Passive,
		SizeEstimate: res.SizeEstimate, SizeLow: res.SizeLow, SizeHigh: res.SizeHigh, ZoneAnswering: res.ZoneAnswering,
		AnsweringEstimate: res.AnsweringEstimate, AnsweringLow: res.AnsweringLow, AnsweringHigh: res.AnsweringHigh,
		Checks: res.Checks, ChecksLeft: res.ChecksLeft, Resends: res.Resends, Redeemed: res.Redeemed,
		Queries: res.Queries, Packets: res.Packets, DurationMs: ms(res.Duration),
		Interrupted: interrupted, Shed: shed}, nil
}

func printSummary(w io.Writer, s crawlSummary) {
	state := "done"
	if s.Interrupted {
		state = "interrupted"
	}
	fmt.Fprintf(w, "crawl run %d %s in %s, recorded in %s\n", s.Run, state, time.Duration(s.DurationMs*1e6).Round(time.Millisecond), s.DB)
	fmt.Fprintf(w, "nodes found:    %d\n", s.Nodes)
	fmt.Fprintf(w, "nodes replied:  %d\n", s.Replied)
	fmt.Fprintf(w, "timeouts:       %d\n", s.Timeouts)
	if s.Resends > 0 {
		fmt.Fprintf(w, "resends:        %d after a timeout", s.Resends)
		if s.Redeemed > 0 {
			fmt.Fprintf(w, ", %d of them held back until resends were seen to be answered", s.Redeemed)
		}
		fmt.Fprintln(w)
	}
	if s.Waiting > 0 {
		fmt.Fprintf(w, "still queued:   %d queries (the crawl ended before their turn; see --idle)\n", s.Waiting)
	}
	if s.Checks > 0 || s.ChecksLeft > 0 {
		fmt.Fprintf(w, "checks:         %d nodes asked again for their nearest neighbours", s.Checks)
		if s.ChecksLeft > 0 {
			fmt.Fprintf(w, ", %d left (the last asked found no new node)", s.ChecksLeft)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "not queried:    %d (private or reserved addresses)\n", s.Bogons)
	if s.Discounted > 0 || s.DiscountedReporters > 0 {
		fmt.Fprintf(w, "discounted:     %d contacts not queried, listed only by %d discounted nodes (visits.discounted says why)\n",
			s.Discounted, s.DiscountedReporters)
	}
	fmt.Fprintf(w, "infohashes:     %d (from %d BEP 51 samples)\n", s.Infohashes, s.Samples)
	if s.Peers > 0 {
		fmt.Fprintf(w, "peers:          %d (for harvested infohashes)\n", s.Peers)
	}
	if s.Incoming > 0 {
		fmt.Fprintf(w, "queries in:     %d (%d infohashes in get_peers and announce_peer)\n", s.Incoming, s.Passive)
	}
	if s.SizeEstimate > 0 {
		// The answering nodes are the census's target; the listed count
		// takes in contacts that never answer, fakes included.
		fmt.Fprintf(w, "size estimate:  %.0f nodes answering (95%%: %.0f to %.0f, from %d answering in the zone)\n",
			s.AnsweringEstimate, s.AnsweringLow, s.AnsweringHigh, s.ZoneAnswering)
		fmt.Fprintf(w, "                %.0f nodes listed, answering or not (95%%: %.0f to %.0f)\n", s.SizeEstimate, s.SizeLow, s.SizeHigh)
	} else {
		fmt.Fprintf(w, "size estimate:  none (use --zone)\n")
	}
	fmt.Fprintf(w, "queries sent:   %d (%d packets)\n", s.Queries, s.Packets)
	if s.Shed > 0 {
		fmt.Fprintf(w, "sightings shed: %d\n", s.Shed)
	}
}
