package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/lightdht/lightdht/db"
)

// statsResult is the output of stats.
type statsResult struct {
	DB         string        `json:"db"`
	Nodes      int64         `json:"nodes"`
	Replied    int64         `json:"replied"`
	IPs        int64         `json:"ips"`
	Infohashes int64         `json:"infohashes"`
	Peers      int64         `json:"peers"`
	Versions   []versionStat `json:"versions"`
	CrawlRuns  int64         `json:"crawl_runs"`
	LastRun    *runStat      `json:"last_run,omitempty"`
	History    *historyStat  `json:"history,omitempty"`
}

// historyStat summarises the crawl history (schema 4 and later).
type historyStat struct {
	Visits         int64 `json:"visits"`
	CrawlsVisited  int64 `json:"crawls_with_visits"`
	SessionsOpen   int64 `json:"sessions_open"`
	SessionsClosed int64 `json:"sessions_closed"`
}

type versionStat struct {
	Version string `json:"version"`
	Nodes   int64  `json:"nodes"`
	Replied int64  `json:"replied"`
}

type runStat struct {
	ID           int64    `json:"id"`
	Kind         string   `json:"kind,omitempty"`
	Started      string   `json:"started"`
	Ended        *string  `json:"ended"`
	NodesFound   *int64   `json:"nodes_found"`
	NodesReplied *int64   `json:"nodes_replied"`
	Infohashes   *int64   `json:"infohashes"`
	QueriesSent  *int64   `json:"queries_sent"`
	SizeEstimate *float64 `json:"size_estimate"`
}

func msTime(v int64) string { return time.UnixMilli(v).UTC().Format(time.RFC3339) }

// readStats reads the summary of a database through a read-only
// connection.
func readStats(ctx context.Context, path string) (statsResult, error) {
	out := statsResult{DB: db.Redact(path), Versions: []versionStat{}}
	if !db.IsPostgres(path) {
		if _, err := os.Stat(path); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return out, fmt.Errorf("no database at %s", path)
			}
			return out, err
		}
	}
	s, err := db.OpenReadOnly(path)
	if err != nil {
		return out, err
	}
	defer s.Close()
	wrap := func(err error) error {
		return fmt.Errorf("read %s: %w (is it a lightdht database?)", out.DB, err)
	}
	if err := s.QueryRowContext(ctx, `SELECT count(*), count(CASE WHEN replies > 0 THEN 1 END), count(DISTINCT ip) FROM nodes`).
		Scan(&out.Nodes, &out.Replied, &out.IPs); err != nil {
		return out, wrap(err)
	}
	if err := s.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM infohashes), (SELECT count(*) FROM peers), (SELECT count(*) FROM crawl_runs)`).
		Scan(&out.Infohashes, &out.Peers, &out.CrawlRuns); err != nil {
		return out, wrap(err)
	}
	rows, err := s.QueryContext(ctx, `SELECT version, nodes, replied FROM client_versions ORDER BY replied DESC, nodes DESC, version LIMIT 10`)
	if err != nil {
		return out, wrap(err)
	}
	for rows.Next() {
		var v versionStat
		if err := rows.Scan(&v.Version, &v.Nodes, &v.Replied); err != nil {
			rows.Close()
			return out, wrap(err)
		}
		out.Versions = append(out.Versions, v)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return out, wrap(err)
	}
	var version int
	if err := s.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&version); err != nil {
		return out, wrap(err)
	}
	history := version >= 4 || db.IsPostgres(path) // a PostgreSQL database has had it from its first version
	if history {
		h := &historyStat{}
		if err := s.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM visits), (SELECT count(*) FROM crawl_runs WHERE visits = 1),
			(SELECT count(*) FROM sessions WHERE state = 'open'), (SELECT count(*) FROM sessions WHERE state = 'closed')`).
			Scan(&h.Visits, &h.CrawlsVisited, &h.SessionsOpen, &h.SessionsClosed); err != nil {
			return out, wrap(err)
		}
		out.History = h
	}
	if out.CrawlRuns > 0 {
		var r runStat
		var started int64
		var ended sql.NullInt64
		if err := s.QueryRowContext(ctx, `SELECT id, started, ended, nodes_found, nodes_replied, infohashes, queries_sent, size_estimate
			FROM crawl_runs ORDER BY id DESC LIMIT 1`).Scan(&r.ID, &started, &ended, &r.NodesFound, &r.NodesReplied,
			&r.Infohashes, &r.QueriesSent, &r.SizeEstimate); err != nil {
			return out, wrap(err)
		}
		r.Started = msTime(started)
		if ended.Valid {
			e := msTime(ended.Int64)
			r.Ended = &e
		}
		if history {
			if err := s.QueryRowContext(ctx, `SELECT kind FROM crawl_runs WHERE id = $1`, r.ID).Scan(&r.Kind); err != nil {
				return out, wrap(err)
			}
		}
		out.LastRun = &r
	}
	return out, nil
}

func statsCmd(c *cli) func(context.Context, []string) error {
	c.addJSON()
	dbPath := c.addDB()
	return func(ctx context.Context, args []string) error {
		if err := nargs(args, 0, 0, "no arguments"); err != nil {
			return err
		}
		out, err := readStats(ctx, *dbPath)
		if err != nil {
			return err
		}
		return c.output(out, func(w io.Writer) { printStats(w, out) })
	}
}

func printStats(w io.Writer, s statsResult) {
	fmt.Fprintf(w, "database:   %s\n", s.DB)
	fmt.Fprintf(w, "nodes:      %d (%d replied, %d IPs)\n", s.Nodes, s.Replied, s.IPs)
	fmt.Fprintf(w, "infohashes: %d\n", s.Infohashes)
	fmt.Fprintf(w, "peers:      %d\n", s.Peers)
	fmt.Fprintf(w, "crawl runs: %d\n", s.CrawlRuns)
	if r := s.LastRun; r != nil {
		ended := "not ended (running or crashed)"
		if r.Ended != nil {
			ended = "ended " + *r.Ended
		}
		kind := ""
		if r.Kind != "" && r.Kind != "crawl" {
			kind = " (" + r.Kind + ")"
		}
		fmt.Fprintf(w, "last run:   #%d%s started %s, %s", r.ID, kind, r.Started, ended)
		if r.NodesFound != nil && r.NodesReplied != nil {
			fmt.Fprintf(w, ", %d nodes found, %d replied", *r.NodesFound, *r.NodesReplied)
		}
		fmt.Fprintln(w)
	}
	if h := s.History; h != nil {
		fmt.Fprintf(w, "history:    %d visits in %d runs; sessions %d open, %d closed\n",
			h.Visits, h.CrawlsVisited, h.SessionsOpen, h.SessionsClosed)
	}
	if len(s.Versions) > 0 {
		fmt.Fprintln(w, "top client versions (replied / nodes):")
		for _, v := range s.Versions {
			fmt.Fprintf(w, "  %-12s %d / %d\n", v.Version, v.Replied, v.Nodes)
		}
	}
}
