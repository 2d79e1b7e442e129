package db

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/lightdht/lightdht/observe"
)

// RunInfo describes a crawl run for StartRun.
type RunInfo struct {
	// Started is when the run began. Zero: now.
	Started time.Time
	// Config is stored as JSON in crawl_runs.config (nil: NULL). A
	// json.RawMessage is stored as is.
	Config any
	// ProgramVersion is the crawler's version string.
	ProgramVersion string
	// Bootstrap lists the bootstrap addresses, stored as a JSON array.
	Bootstrap []string
	// Kind is the kind of run: "crawl" (a crawl from the bootstrap
	// addresses; the runs the crawl views compare) or "revisit" (visits
	// to nodes already in the database). Empty: "crawl".
	Kind string
	// Vantage is where the run looks from: the local address of the
	// crawler's socket. Host is the machine's host name. Either may be
	// empty (NULL).
	Vantage, Host string
}

// RunCounts are the final figures of a crawl run, for EndRun.
type RunCounts struct {
	// Ended is when the run ended. Zero: now.
	Ended         time.Time
	NodesFound    int64 // distinct nodes found
	NodesReplied  int64 // nodes that replied
	Infohashes    int64 // infohashes found
	QueriesSent   int64 // queries sent
	SightingsShed int64 // sightings the database shed (Stats().Shed)
	// SizeEstimate is the estimated number of DHT nodes; 0 stores NULL.
	SizeEstimate float64
}

// StartRun commits everything queued so far, then inserts a crawl_runs row
// and returns its id. Visits (RecordVisit) and, with Options.Neighbours,
// neighbours queued from then until EndRun belong to the run. A DB
// records one run at a time: a StartRun while a run is open makes the new
// run the one visits go to, and leaves the other's end unrecorded.
func (d *DB) StartRun(info RunInfo) (int64, error) {
	if info.Started.IsZero() {
		info.Started = time.Now()
	}
	if info.Kind == "" {
		info.Kind = "crawl"
	}
	if info.Kind != "crawl" && info.Kind != "revisit" {
		return 0, &Error{Op: "run", Path: d.path, Err: fmt.Errorf("run kind %q: want crawl or revisit", info.Kind)}
	}
	var cfg any // NULL unless info.Config is set
	if info.Config != nil {
		b, err := json.Marshal(info.Config)
		if err != nil {
			return 0, &Error{Op: "run", Path: d.path, Err: fmt.Errorf("config: %w", err)}
		}
		cfg = string(b)
	}
	boot := info.Bootstrap
	if boot == nil {
		boot = []string{}
	}
	bb, err := json.Marshal(boot)
	if err != nil {
		return 0, &Error{Op: "run", Path: d.path, Err: err}
	}
	var id int64
	err = d.request(context.Background(), func(w *writer) error {
		res, err := w.conn.ExecContext(context.Background(),
			`INSERT INTO crawl_runs (started, config, program_version, bootstrap, kind, vantage, host, neighbours)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			info.Started.UnixMilli(), cfg, info.ProgramVersion, string(bb), info.Kind,
			nullString(info.Vantage), nullString(info.Host), d.opts.Neighbours)
		if err != nil {
			return err
		}
		if id, err = res.LastInsertId(); err != nil {
			return err
		}
		w.hist.run, w.hist.counts = id, [5]int64{}
		return nil
	})
	if err != nil {
		return 0, &Error{Op: "run", Path: d.path, Err: err}
	}
	return id, nil
}

// EndRun commits everything queued so far, then records the end time and
// final counts of run id, with its visits' totals by outcome if it is the
// open run, and closes it. An unknown id is an error.
func (d *DB) EndRun(id int64, c RunCounts) error {
	if c.Ended.IsZero() {
		c.Ended = time.Now()
	}
	var size any // NULL when unknown
	if c.SizeEstimate != 0 {
		size = c.SizeEstimate
	}
	err := d.request(context.Background(), func(w *writer) error {
		// The visits' totals, when id is the run the visits went to.
		var totals [5]any
		if w.hist.run == id {
			for o, n := range w.hist.counts {
				totals[o] = n
			}
			w.hist.run = 0
		}
		res, err := w.conn.ExecContext(context.Background(), `UPDATE crawl_runs SET ended = ?, nodes_found = ?,
			nodes_replied = ?, infohashes = ?, queries_sent = ?, sightings_shed = ?, size_estimate = ?,
			visits_replied = ?, visits_error = ?, visits_timeout = ?, visits_not_queried = ?
			WHERE id = ?`,
			c.Ended.UnixMilli(), c.NodesFound, c.NodesReplied, c.Infohashes, c.QueriesSent, c.SightingsShed, size,
			totals[observe.OutcomeReplied], totals[observe.OutcomeError], totals[observe.OutcomeTimeout],
			totals[observe.OutcomeNotQueried], id)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err == nil && n == 0 {
			err = fmt.Errorf("no crawl run %d", id)
		}
		return err
	})
	if err != nil {
		return &Error{Op: "run", Path: d.path, Err: err}
	}
	return nil
}

// nullString returns s, or nil (NULL) for "".
func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}
