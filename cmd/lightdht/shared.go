package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/lightdht/lightdht/crawler"
	"github.com/lightdht/lightdht/db"
	"github.com/lightdht/lightdht/shard"
)

// sharedFlags are crawl's flags of a shared crawl (package shard): every
// process started with the same --db and --shared NAME crawls a share of
// one census.
type sharedFlags struct {
	name     *string
	bits     *int
	lease    *time.Duration
	parallel *int
	overlap  *bool
}

// addSharedFlags adds --shared, --zones-bits, --lease, --parallel and
// --overlap to crawl.
func (c *cli) addSharedFlags() sharedFlags {
	return sharedFlags{
		name: c.fs.String("shared", "", "join or create the shared crawl NAME in the PostgreSQL --db, and crawl its zones with the other processes until all are done"),
		bits: c.fs.Int("zones-bits", 0, fmt.Sprintf("with --shared: split the ID space into 2^N zones, 1-%d, when creating the crawl (0: the crawl's own, or %d for a new one)", shard.MaxBits, shard.DefaultBits)),
		lease: c.fs.Duration("lease", shard.DefaultLease,
			"with --shared: how long a zone stays claimed without renewal; a crawler that dies gives its zone up after this long"),
		parallel: c.fs.Int("parallel", shard.DefaultParallel,
			"with --shared: zones this process claims and crawls at once, on its one socket and within its one --rate; faster with many small zones, but a process that dies leaves that many half crawled"),
		overlap: c.fs.Bool("overlap", false,
			"with --shared: claim the next zone as soon as the current zone's crawl has only its last timeouts to wait for, and let that crawl end beside the next"),
	}
}

// check returns a usage error for a --shared crawl that cannot run as
// the flags say; set lists the flags that do not combine with it.
func (f sharedFlags) check(dbPath string, set map[string]bool) error {
	if *f.name == "" {
		for _, name := range []string{"zones-bits", "lease", "parallel", "overlap"} {
			if set[name] {
				return usagef("--%s needs --shared", name)
			}
		}
		return nil
	}
	switch {
	case !db.IsPostgres(dbPath):
		return usagef("--shared needs a PostgreSQL --db (postgres://…): the crawlers coordinate through the database server; got %q", dbPath)
	case *f.bits < 0 || *f.bits > shard.MaxBits:
		return usagef("--zones-bits %d out of range: want 1 to %d (0: the crawl's own)", *f.bits, shard.MaxBits)
	case *f.lease <= 0:
		return usagef("--lease must be positive")
	case *f.parallel < 1:
		return usagef("--parallel %d: want at least 1 zone at a time", *f.parallel)
	}
	for _, name := range []string{"zone", "continuous", "every", "count", "respond", "duration"} {
		if set[name] {
			return usagef("--%s does not combine with --shared: a shared crawl splits the ID space into zones itself and ends when every zone is done", name)
		}
	}
	return nil
}

// sharedSummary is the output of crawl --shared: the crawl's totals and
// this process's part.
type sharedSummary struct {
	Run          int64   `json:"run"`
	Name         string  `json:"shared"`
	Zones        int     `json:"zones"`
	Claims       int64   `json:"claims"`
	Nodes        int64   `json:"nodes"`
	Replied      int64   `json:"replied"`
	Queries      int64   `json:"queries"`
	Infohashes   int64   `json:"infohashes"`
	SizeEstimate float64 `json:"size_estimate"`
	Crawled      int     `json:"zones_crawled_here"`
	QueriesHere  int     `json:"queries_here"`
	Recorded     bool    `json:"recorded_end"`
	Vantage      string  `json:"vantage"`
	DurationMs   float64 `json:"duration_ms"`
}

// sharedCrawl works zones of the shared crawl f.name in the database at
// dbPath with the crawl template cfg (Bootstrap, Rate, …) until every
// zone is done, printing a line per zone, then prints the crawl's totals.
// An interrupted process leaves its zone claimed; another claims it once
// the lease runs out.
func (c *cli) sharedCrawl(ctx context.Context, f sharedFlags, dbPath, listen string, cfg crawler.Config, info db.RunInfo, neighbours bool) error {
	conn, err := listenUDP(listen, "listen", cfg.Bootstrap, has6(cfg.Bootstrap) && !has4(cfg.Bootstrap))
	if err != nil {
		return err
	}
	cfg.Conn, cfg.Recorder = conn, nil
	// A bad crawl configuration is a usage error before anything is
	// created in the database.
	probe := cfg
	probe.Conn = nopCloser{conn}
	if _, err := crawler.New(probe); err != nil {
		conn.Close()
		var ce *crawler.ConfigError
		switch {
		case errors.Is(err, crawler.ErrNeedsTestNet) && errors.As(err, &ce):
			return usagef("%s (a local test network needs --testnet)", ce.Reason)
		case errors.As(err, &ce):
			return usagef("%s", ce.Reason)
		}
		return usagef("%s", err)
	}
	d, err := db.Open(dbPath, db.Options{Reports: true, Neighbours: neighbours})
	if err != nil {
		conn.Close()
		return err
	}
	defer d.Close()
	host, _ := os.Hostname()
	vantage := conn.LocalAddr().String()
	start := time.Now()
	sh, err := shard.Open(ctx, shard.Config{URL: dbPath, Name: *f.name, Bits: *f.bits, Lease: *f.lease, Parallel: *f.parallel, Overlap: *f.overlap, Store: d,
		Crawler: cfg, Host: host, Info: info, Logger: c.log, Progress: func(e shard.Event) { c.sharedProgress(e) }})
	if err != nil {
		conn.Close()
		if errors.Is(err, shard.ErrBitsMismatch) {
			return usagef("%v", err)
		}
		return err
	}
	defer sh.Close()
	verb := "joined"
	if sh.Created() {
		verb = "created"
	}
	fmt.Fprintf(c.stderr, "shared crawl %q (run %d, %d zones): %s; vantage %s %s\n", *f.name, sh.ID(), 1<<sh.Bits(), verb, host, vantage)
	sum, err := sh.Run(ctx)
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintf(c.stderr, "interrupted: %d zones done here; a zone held is claimed again once its lease runs out\n", sum.Crawled)
			if err := d.Close(); err != nil {
				return err
			}
			return errInterrupted
		}
		return err
	}
	if err := d.Close(); err != nil {
		return err
	}
	out := sharedSummary{Run: sh.ID(), Name: *f.name, Zones: sum.Zones, Claims: sum.Claims, Nodes: sum.NodesFound,
		Replied: sum.NodesReplied, Queries: sum.QueriesSent, Infohashes: sum.Infohashes, SizeEstimate: sum.SizeEstimate,
		Crawled: sum.Crawled, QueriesHere: sum.Queries, Recorded: sum.RecordedEnd(), Vantage: vantage, DurationMs: ms(time.Since(start))}
	return c.output(out, func(w io.Writer) { printShared(w, out) })
}

// sharedProgress prints a line to stderr for each zone claimed, done or
// lost, and for the first wait in a row.
func (c *cli) sharedProgress(e shard.Event) {
	z := e.Zone
	switch e.Kind {
	case shard.EventClaimed:
		fmt.Fprintf(c.stderr, "zone %d (%s/%d) claimed (claim %d)\n", z.Number, z.Prefix.String()[:max(1, (z.Bits+3)/4)], z.Bits, z.Claims)
	case shard.EventDone:
		fmt.Fprintf(c.stderr, "zone %d done in %s: %d nodes, %d replied, %d queries, estimate %.0f nodes\n",
			z.Number, e.Result.Duration.Round(time.Millisecond), z.NodesFound, z.NodesReplied, z.QueriesSent, z.SizeEstimate)
	case shard.EventLost:
		fmt.Fprintf(c.stderr, "zone %d lost: its lease ran out and another crawler claimed it\n", z.Number)
	case shard.EventWaiting:
		fmt.Fprintf(c.stderr, "waiting: %d zones not done, held by others; next look in %s\n", e.Open, e.Wait.Round(time.Millisecond))
	}
}

func printShared(w io.Writer, s sharedSummary) {
	fmt.Fprintf(w, "shared crawl %q (run %d) done: %d zones, %d claims\n", s.Name, s.Run, s.Zones, s.Claims)
	fmt.Fprintf(w, "nodes found:    %d\n", s.Nodes)
	fmt.Fprintf(w, "nodes replied:  %d\n", s.Replied)
	fmt.Fprintf(w, "infohashes:     %d\n", s.Infohashes)
	fmt.Fprintf(w, "size estimate:  %.0f nodes\n", s.SizeEstimate)
	fmt.Fprintf(w, "queries sent:   %d\n", s.Queries)
	fmt.Fprintf(w, "this process:   %d zones, %d queries, from %s\n", s.Crawled, s.QueriesHere, s.Vantage)
	if s.Recorded {
		fmt.Fprintf(w, "this process marked the last zone done and recorded the crawl's end\n")
	}
}

// setFlags returns the names of the flags set on the command line (or
// from the environment or a config file, which set them the same way).
func setFlags(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

// nopCloser lends a socket to a crawler that is only checked, never run.
type nopCloser struct{ net.PacketConn }

// Close leaves the socket open.
func (nopCloser) Close() error { return nil }
