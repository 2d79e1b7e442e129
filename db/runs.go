package db

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"
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
	// CountVisits takes the run's totals by outcome from the visits
	// table rather than from this DB's own tally: for a run that several
	// DBs wrote (JoinRun).
	CountVisits bool
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
		var err error
		id, err = w.be.insertRun(runRow{
			started: info.Started.UnixMilli(), config: cfg, programVersion: info.ProgramVersion,
			bootstrap: string(bb), kind: info.Kind, vantage: nullString(info.Vantage), host: nullString(info.Host),
			neighbours: d.opts.Neighbours,
		})
		if err != nil {
			return err
		}
		return w.open(id, info.Host, info.Vantage)
	})
	if err != nil {
		return 0, &Error{Op: "run", Path: d.path, Err: err}
	}
	return id, nil
}

// JoinRun makes run id, which another DB (another process, on another
// machine) started on the same database, the run that visits and
// neighbours queued from now on go to, and names this writer's vantage
// in it (host and address, as in RunInfo). It is how several crawlers
// record one shared crawl; see package shard. It ends no run: the run's
// end is recorded once, by EndRun with RunCounts.CountVisits.
func (d *DB) JoinRun(id int64, host, vantage string) error {
	err := d.request(context.Background(), func(w *writer) error {
		ok, err := w.be.runExists(id)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("no crawl run %d", id)
		}
		return w.open(id, host, vantage)
	})
	if err != nil {
		return &Error{Op: "run", Path: d.path, Err: err}
	}
	return nil
}

// open makes run id the open run, with this writer's vantage in it.
func (w *writer) open(id int64, host, vantage string) error {
	ref, err := w.be.vantage(host, vantage)
	if err != nil {
		return err
	}
	w.cur = runState{id: id, vantage: ref}
	return nil
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
		// The visits' totals: counted in the table for a run that
		// several writers shared, else this writer's tally if id is the
		// run its visits went to.
		var totals [5]any
		switch {
		case c.CountVisits:
			t, err := visitTotals(w.d.r, id)
			if err != nil {
				return err
			}
			for o, n := range t {
				totals[o] = n
			}
		case w.cur.id == id:
			for o, n := range w.cur.counts {
				totals[o] = n
			}
		}
		if w.cur.id == id {
			w.cur = runState{}
		}
		found, err := w.be.endRun(id, endRow{
			ended: c.Ended.UnixMilli(), nodesFound: c.NodesFound, nodesReplied: c.NodesReplied,
			infohashes: c.Infohashes, queries: c.QueriesSent, shed: c.SightingsShed, size: size, totals: totals,
		})
		if err == nil && !found {
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

// visitTotals counts run id's visits in the visits table, by
// observe.Outcome, through the read pool: either store's, and the
// committer calls it after everything before the request is committed.
func visitTotals(q *sql.DB, id int64) ([5]int64, error) {
	var t [5]int64
	rows, err := q.QueryContext(context.Background(),
		"SELECT outcome, count(*) FROM visits WHERE crawl = $1 GROUP BY outcome", id)
	if err != nil {
		return t, err
	}
	defer rows.Close()
	for rows.Next() {
		var o, n int64
		if err := rows.Scan(&o, &n); err != nil {
			return t, err
		}
		if o > 0 && o < int64(len(t)) {
			t[o] = n
		}
	}
	return t, rows.Err()
}
