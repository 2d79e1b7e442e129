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
// and returns its id.
func (d *DB) StartRun(info RunInfo) (int64, error) {
	if info.Started.IsZero() {
		info.Started = time.Now()
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
	err = d.request(context.Background(), func(conn *sql.Conn) error {
		res, err := conn.ExecContext(context.Background(),
			"INSERT INTO crawl_runs (started, config, program_version, bootstrap) VALUES (?, ?, ?, ?)",
			info.Started.UnixMilli(), cfg, info.ProgramVersion, string(bb))
		if err != nil {
			return err
		}
		id, err = res.LastInsertId()
		return err
	})
	if err != nil {
		return 0, &Error{Op: "run", Path: d.path, Err: err}
	}
	return id, nil
}

// EndRun commits everything queued so far, then records the end time and
// final counts of run id. An unknown id is an error.
func (d *DB) EndRun(id int64, c RunCounts) error {
	if c.Ended.IsZero() {
		c.Ended = time.Now()
	}
	var size any // NULL when unknown
	if c.SizeEstimate != 0 {
		size = c.SizeEstimate
	}
	err := d.request(context.Background(), func(conn *sql.Conn) error {
		res, err := conn.ExecContext(context.Background(), `UPDATE crawl_runs SET ended = ?, nodes_found = ?,
			nodes_replied = ?, infohashes = ?, queries_sent = ?, sightings_shed = ?, size_estimate = ?
			WHERE id = ?`,
			c.Ended.UnixMilli(), c.NodesFound, c.NodesReplied, c.Infohashes, c.QueriesSent, c.SightingsShed, size, id)
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
