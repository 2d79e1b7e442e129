package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"time"

	"github.com/lightdht/lightdht/crawler"
	"github.com/lightdht/lightdht/db"
)

// revisitSummary is revisit's output.
type revisitSummary struct {
	Run          int64   `json:"run"`
	DB           string  `json:"db"`
	Nodes        int     `json:"nodes"`
	Visits       int     `json:"visits"`
	FailedVisits int     `json:"failed_visits"`
	Answered     int     `json:"answered"`
	GivenUp      int     `json:"given_up"`
	Queries      int     `json:"queries"`
	DurationMs   float64 `json:"duration_ms"`
	Interrupted  bool    `json:"interrupted,omitempty"`
}

// revisitConfig is what a revisit run stores as its configuration.
type revisitConfig struct {
	Rate          float64 `json:"rate"`
	PerIPInterval string  `json:"per_ip_interval"`
	Min           string  `json:"min"`
	Max           string  `json:"max"`
	GiveUp        string  `json:"give_up"`
	Since         string  `json:"since"`
	Duration      string  `json:"duration,omitempty"`
	Rounds        int     `json:"rounds,omitempty"`
	Timeout       string  `json:"timeout"`
	Infohashes    bool    `json:"infohashes"`
	TestNet       bool    `json:"testnet"`
	Adaptive      bool    `json:"adaptive,omitempty"`
}

func revisitCmd(c *cli) func(context.Context, []string) error {
	c.addJSON()
	dbPath := c.addDB()
	listen := c.fs.String("listen", "", "local UDP address (default: 127.0.0.1:0 when the nodes are on loopback, 0.0.0.0:0 otherwise)")
	rate := c.fs.Float64("rate", crawler.DefaultRate, "queries per second, at most: the ceiling of the adaptive sender, which slows down when round trips grow or timeouts rise")
	adaptive := c.fs.Bool("adaptive", false, "adapt the send rate to the path, with --rate as its ceiling (slow where round trips are heavy-tailed, as on the live DHT; see docs/crawler.md)")
	perIP := c.fs.Duration("per-ip-interval", crawler.DefaultPerIPInterval, "least time between two queries to one IP")
	minWait := c.fs.Duration("min", crawler.DefaultRevisitMin, "least time between two visits of a node")
	maxWait := c.fs.Duration("max", crawler.DefaultRevisitMax, "most time between two visits of a node")
	giveUp := c.fs.Duration("give-up", crawler.DefaultRevisitGiveUp, "stop visiting a node once it has been down this long (negative: never)")
	since := c.fs.Duration("since", 24*time.Hour, "also revisit nodes whose session ended by a timeout within this long")
	duration := c.fs.Duration("duration", 0, "stop after this long (0: until interrupted, every node given up, or --rounds done)")
	rounds := c.fs.Int("rounds", 0, "stop once every node has been visited this many times (0: no limit; 1: one pass)")
	timeout := c.fs.Duration("timeout", crawler.DefaultTimeout, "wait for each attempt of a query")
	infohashes := c.fs.Bool("infohashes", false, "ask BEP 51 nodes for a sample instead of a ping when their interval is over")
	testnet := c.fs.Bool("testnet", false, "allow loopback and private addresses: revisit a local test network")
	return func(ctx context.Context, args []string) error {
		if err := nargs(args, 0, 0, "no arguments"); err != nil {
			return err
		}
		if *rate <= 0 || *perIP < 0 || *minWait <= 0 || *maxWait < *minWait || *since < 0 || *duration < 0 || *rounds < 0 || *timeout <= 0 {
			return usagef("--rate, --min and --timeout must be positive, --max at least --min, and --per-ip-interval, --since, --duration and --rounds not negative")
		}
		if err := needDB(*dbPath, ": crawl into it first"); err != nil {
			return err
		}
		d, err := db.Open(*dbPath, db.Options{})
		if err != nil {
			return err
		}
		defer d.Close()
		states, err := d.NodesToRevisit(ctx, time.Now().Add(-*since))
		if err != nil {
			return err
		}
		if len(states) == 0 {
			return fmt.Errorf("%s holds no node to revisit (no open session, none closed within --since %s)", *dbPath, *since)
		}
		known := make([]crawler.Known, len(states))
		dests := make([]netip.AddrPort, 0, 16)
		for i, s := range states {
			known[i] = crawler.Known{Node: s.Node, Up: s.Up, Since: s.Since, BEP51: s.BEP51}
			if i < cap(dests) {
				dests = append(dests, s.Node.Addr)
			}
		}
		conn, err := listenUDP(*listen, "listen", dests, has6(dests) && !has4(dests))
		if err != nil {
			return err
		}
		cr, err := crawler.New(crawler.Config{Conn: conn, Nodes: known, Rate: *rate, PerIPInterval: *perIP,
			RevisitMin: *minWait, RevisitMax: *maxWait, RevisitGiveUp: *giveUp, RevisitRounds: *rounds,
			Timeout: *timeout, Infohashes: *infohashes, Adaptive: *adaptive,
			TestNet: *testnet, Recorder: &recorder{d: d}, Logger: c.log})
		if err != nil {
			conn.Close()
			var ce *crawler.ConfigError
			switch {
			case errors.Is(err, crawler.ErrNeedsTestNet) && errors.As(err, &ce):
				return usagef("%s (a local test network needs --testnet)", ce.Reason)
			case errors.As(err, &ce):
				return usagef("%s", ce.Reason)
			}
			return err
		}
		host, _ := os.Hostname()
		cfg := revisitConfig{Rate: *rate, PerIPInterval: perIP.String(), Min: minWait.String(), Max: maxWait.String(),
			GiveUp: giveUp.String(), Since: since.String(), Rounds: *rounds, Timeout: timeout.String(),
			Infohashes: *infohashes, TestNet: *testnet, Adaptive: *adaptive}
		if *duration > 0 {
			cfg.Duration = duration.String()
		}
		runID, err := d.StartRun(db.RunInfo{Kind: "revisit", Config: cfg, ProgramVersion: "lightdht " + programVersion,
			Bootstrap: []string{}, Vantage: conn.LocalAddr().String(), Host: host})
		if err != nil {
			cr.Close()
			return err
		}
		fmt.Fprintf(c.stderr, "revisiting %d nodes (run %d); interrupt to stop\n", len(known), runID)
		cctx := ctx
		if *duration > 0 {
			var cancel context.CancelFunc
			cctx, cancel = context.WithTimeout(ctx, *duration)
			defer cancel()
		}
		res, runErr := cr.Run(cctx)
		interrupted := ctx.Err() != nil
		if runErr != nil && (interrupted || errors.Is(runErr, context.DeadlineExceeded)) {
			runErr = nil
		}
		endErr := d.EndRun(runID, db.RunCounts{NodesFound: int64(res.Discovered), NodesReplied: int64(res.Replied),
			Infohashes: int64(res.Infohashes), QueriesSent: int64(res.Queries), SightingsShed: int64(d.Stats().Shed)})
		if err := errors.Join(runErr, endErr, d.Close()); err != nil {
			return err
		}
		sum := revisitSummary{Run: runID, DB: db.Redact(*dbPath), Nodes: res.Discovered, Visits: res.Visits, FailedVisits: res.FailedVisits,
			Answered: res.Replied, GivenUp: res.GivenUp, Queries: res.Queries, DurationMs: ms(res.Duration), Interrupted: interrupted}
		if err := c.output(sum, func(w io.Writer) {
			state := "done"
			if interrupted {
				state = "interrupted"
			}
			fmt.Fprintf(w, "revisit run %d %s in %s, recorded in %s\n", sum.Run, state, res.Duration.Round(time.Millisecond), sum.DB)
			fmt.Fprintf(w, "nodes:          %d (%d answered at least once, %d given up)\n", sum.Nodes, sum.Answered, sum.GivenUp)
			fmt.Fprintf(w, "visits:         %d (%d timed out)\n", sum.Visits, sum.FailedVisits)
			fmt.Fprintf(w, "queries sent:   %d\n", sum.Queries)
		}); err != nil {
			return err
		}
		if interrupted {
			return errInterrupted
		}
		return nil
	}
}
