package db

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"strings"
)

// sqliteBackend is the backend of a SQLite file: one connection, with
// multi-row upserts prepared on it as driver statements. The
// committer goroutine owns it.
type sqliteBackend struct {
	conn            *sql.Conn
	sessionFailures int

	nodesU, reportsU, ihU, peersU, samplesU, itemsU *upsert
	hist                                            history
}

func newSQLiteBackend(conn *sql.Conn, opts Options) (*sqliteBackend, error) {
	w := &sqliteBackend{conn: conn, sessionFailures: opts.SessionFailures}
	var err error
	prep := func(table string, cols []string, conflict, set string) *upsert {
		if err != nil {
			return nil
		}
		var u *upsert
		u, err = newUpsert(conn, table, cols, conflict, set)
		return u
	}
	w.nodesU = prep("nodes", []string{
		"id", "ip", "port", "first_seen", "last_seen", "times_seen", "first_source",
		"last_reply", "replies", "timeouts", "queries_sent", "queries_received",
		"last_rtt_ms", "version", "version_seen", "bep42_valid", "read_only",
	}, "id, ip, port", `
		first_source = CASE WHEN excluded.first_seen < first_seen THEN excluded.first_source ELSE first_source END,
		first_seen = min(first_seen, excluded.first_seen),
		last_seen = max(last_seen, excluded.last_seen),
		times_seen = times_seen + excluded.times_seen,
		last_rtt_ms = CASE WHEN excluded.last_reply IS NOT NULL AND (last_reply IS NULL OR excluded.last_reply >= last_reply)
			THEN excluded.last_rtt_ms ELSE last_rtt_ms END,
		last_reply = max(coalesce(last_reply, excluded.last_reply), coalesce(excluded.last_reply, last_reply)),
		replies = replies + excluded.replies,
		timeouts = timeouts + excluded.timeouts,
		queries_sent = queries_sent + excluded.queries_sent,
		queries_received = queries_received + excluded.queries_received,
		version = CASE WHEN excluded.version IS NOT NULL AND (version_seen IS NULL OR excluded.version_seen >= version_seen)
			THEN excluded.version ELSE version END,
		version_seen = CASE WHEN excluded.version IS NOT NULL AND (version_seen IS NULL OR excluded.version_seen >= version_seen)
			THEN excluded.version_seen ELSE version_seen END,
		bep42_valid = CASE WHEN excluded.last_seen >= last_seen THEN excluded.bep42_valid ELSE bep42_valid END,
		read_only = max(read_only, excluded.read_only)`)
	w.reportsU = prep("reports", []string{
		"reporter_id", "reporter_ip", "reporter_port", "reported_id", "reported_ip", "reported_port",
		"first_seen", "last_seen", "count",
	}, "reporter_id, reporter_ip, reporter_port, reported_id, reported_ip, reported_port", `
		first_seen = min(first_seen, excluded.first_seen),
		last_seen = max(last_seen, excluded.last_seen),
		count = count + excluded.count`)
	w.ihU = prep("infohashes", []string{
		"infohash", "first_seen", "last_seen", "via_sample", "via_get_peers", "via_announce",
	}, "infohash", `
		first_seen = min(first_seen, excluded.first_seen),
		last_seen = max(last_seen, excluded.last_seen),
		via_sample = via_sample + excluded.via_sample,
		via_get_peers = via_get_peers + excluded.via_get_peers,
		via_announce = via_announce + excluded.via_announce`)
	w.peersU = prep("peers", []string{
		"infohash", "ip", "port", "first_seen", "last_seen", "source", "count",
	}, "infohash, ip, port", `
		source = CASE WHEN excluded.first_seen < first_seen THEN excluded.source ELSE source END,
		first_seen = min(first_seen, excluded.first_seen),
		last_seen = max(last_seen, excluded.last_seen),
		count = count + excluded.count`)
	w.samplesU = prep("samples", []string{
		"node_id", "ip", "port", "time", "num", "interval_s", "samples_count",
	}, "", "")
	w.itemsU = prep("items", []string{
		"target", "mutable", "seq", "first_seen", "last_seen", "puts", "gets",
		"last_put", "last_putter_id", "last_putter_ip", "last_putter_port",
	}, "target", `
		mutable = max(mutable, excluded.mutable),
		seq = CASE WHEN excluded.seq IS NOT NULL AND (seq IS NULL OR excluded.seq > seq) THEN excluded.seq ELSE seq END,
		first_seen = min(first_seen, excluded.first_seen),
		last_seen = max(last_seen, excluded.last_seen),
		puts = puts + excluded.puts,
		gets = gets + excluded.gets,
		last_putter_id = CASE WHEN excluded.last_put IS NOT NULL AND (last_put IS NULL OR excluded.last_put >= last_put) THEN excluded.last_putter_id ELSE last_putter_id END,
		last_putter_ip = CASE WHEN excluded.last_put IS NOT NULL AND (last_put IS NULL OR excluded.last_put >= last_put) THEN excluded.last_putter_ip ELSE last_putter_ip END,
		last_putter_port = CASE WHEN excluded.last_put IS NOT NULL AND (last_put IS NULL OR excluded.last_put >= last_put) THEN excluded.last_putter_port ELSE last_putter_port END,
		last_put = max(coalesce(last_put, excluded.last_put), coalesce(excluded.last_put, last_put))`)
	if err == nil {
		err = w.hist.prepare(conn)
	}
	if err != nil {
		w.closeStmts()
		return nil, err
	}
	return w, nil
}

func (w *sqliteBackend) write(b *batch, run *runState) (err error) {
	ctx := context.Background() // no Done channel: the driver starts no watcher goroutine
	if _, err := w.conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			w.conn.ExecContext(ctx, "ROLLBACK")
		}
	}()
	nbrs := b.nbrArgs
	if run.id == 0 {
		nbrs = nil // neighbours belong to a run
	}
	err = w.conn.Raw(func(any) error {
		reports := b.repArgs
		if !b.reports {
			reports = nil // collected for neighbours only
		}
		for _, x := range []struct {
			u    *upsert
			args []any
		}{
			{w.nodesU, b.nodeArgs},
			{w.reportsU, reports},
			{w.ihU, b.ihArgs},
			{w.peersU, b.peerArgs},
			{w.samplesU, b.sampleArgs},
			{w.itemsU, b.itemArgs},
			{w.hist.visitsU, b.visitArgs},
			{w.hist.neighboursU, nbrs},
		} {
			if err := x.u.exec(x.args); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(b.visits) > 0 {
		if err := w.hist.writeVisits(b, run, w.sessionFailures); err != nil {
			return err
		}
		if run.id != 0 {
			if _, err := w.conn.ExecContext(ctx, "UPDATE crawl_runs SET visits = 1 WHERE id = ? AND visits = 0", run.id); err != nil {
				return err
			}
		}
	}
	if len(nbrs) > 0 {
		if err := w.hist.writeNeighbours(run.id); err != nil {
			return err
		}
	}
	_, err = w.conn.ExecContext(ctx, "COMMIT")
	return err
}

func (w *sqliteBackend) closeStmts() {
	w.conn.Raw(func(any) error {
		for _, u := range []*upsert{w.nodesU, w.reportsU, w.ihU, w.peersU, w.samplesU, w.itemsU,
			w.hist.visitsU, w.hist.neighboursU} {
			if u != nil {
				u.close()
			}
		}
		return nil
	})
	w.hist.close()
}

func (w *sqliteBackend) close() {
	w.closeStmts()
	w.conn.Close()
}

func (w *sqliteBackend) insertRun(r runRow) (int64, error) {
	res, err := w.conn.ExecContext(context.Background(),
		`INSERT INTO crawl_runs (started, config, program_version, bootstrap, kind, vantage, host, neighbours)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		r.started, r.config, r.programVersion, r.bootstrap, r.kind, r.vantage, r.host, r.neighbours)
	if err != nil {
		return 0, err
	}
	return res.LastInsertId()
}

func (w *sqliteBackend) runExists(id int64) (bool, error) {
	var n int
	err := w.conn.QueryRowContext(context.Background(), "SELECT count(*) FROM crawl_runs WHERE id = ?", id).Scan(&n)
	return n > 0, err
}

func (w *sqliteBackend) vantage(host, address string) (int64, error) {
	ctx := context.Background()
	if _, err := w.conn.ExecContext(ctx, "INSERT INTO vantages (host, address) VALUES (?, ?) ON CONFLICT DO NOTHING",
		host, address); err != nil {
		return 0, err
	}
	var ref int64
	err := w.conn.QueryRowContext(ctx, "SELECT ref FROM vantages WHERE host = ? AND address = ?", host, address).Scan(&ref)
	return ref, err
}

func (w *sqliteBackend) endRun(id int64, e endRow) (bool, error) {
	res, err := w.conn.ExecContext(context.Background(), `UPDATE crawl_runs SET ended = ?, nodes_found = ?,
		nodes_replied = ?, infohashes = ?, queries_sent = ?, sightings_shed = ?, size_estimate = ?,
		visits_replied = ?, visits_error = ?, visits_timeout = ?, visits_not_queried = ?
		WHERE id = ?`,
		e.ended, e.nodesFound, e.nodesReplied, e.infohashes, e.queries, e.shed, e.size,
		e.totals[1], e.totals[2], e.totals[3], e.totals[4], id)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

func (w *sqliteBackend) putIPInfo(rows []ipRow, now int64) error {
	ctx := context.Background()
	tx, err := w.conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	st, err := tx.PrepareContext(ctx, `INSERT INTO ip_info (ip, country, asn, org, looked_up) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (ip) DO UPDATE SET country = excluded.country, asn = excluded.asn, org = excluded.org,
		looked_up = excluded.looked_up`)
	if err != nil {
		return err
	}
	defer st.Close()
	for _, r := range rows {
		if _, err := st.ExecContext(ctx, r.ip, r.country, r.asn, r.org, now); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// chunkRows is how many rows one multi-row INSERT carries: fewer calls
// through database/sql and cgo per row.
const chunkRows = 256

// upsert is an INSERT ... ON CONFLICT DO UPDATE prepared twice on the
// writer's driver connection: for chunkRows rows and for one. The
// statements are driver statements, used only inside conn.Raw: rows go
// to the driver without database/sql converting (and copying) every
// argument.
type upsert struct {
	cols      int
	many, one driver.Stmt
	nv        []driver.NamedValue // chunkRows*cols, ordinals set
}

func newUpsert(conn *sql.Conn, table string, cols []string, conflict, set string) (*upsert, error) {
	u := &upsert{cols: len(cols), nv: make([]driver.NamedValue, chunkRows*len(cols))}
	for i := range u.nv {
		u.nv[i].Ordinal = i%(chunkRows*len(cols)) + 1
	}
	err := conn.Raw(func(dc any) error {
		c, ok := dc.(driver.ConnPrepareContext)
		if !ok {
			return fmt.Errorf("driver connection %T cannot prepare with a context", dc)
		}
		ctx := context.Background()
		var err error
		if u.many, err = c.PrepareContext(ctx, upsertSQL(table, cols, conflict, set, chunkRows)); err != nil {
			return err
		}
		if u.one, err = c.PrepareContext(ctx, upsertSQL(table, cols, conflict, set, 1)); err != nil {
			u.many.Close()
			return err
		}
		for _, st := range []driver.Stmt{u.many, u.one} {
			if _, ok := st.(driver.StmtQueryContext); !ok {
				u.many.Close()
				u.one.Close()
				return fmt.Errorf("driver statement %T cannot query with a context", st)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return u, nil
}

func upsertSQL(table string, cols []string, conflict, set string, rows int) string {
	var b strings.Builder
	b.WriteString("INSERT INTO " + table + " (" + strings.Join(cols, ", ") + ") VALUES ")
	row := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", ") + ")"
	for i := range rows {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(row)
	}
	if conflict != "" {
		b.WriteString(" ON CONFLICT (" + conflict + ") DO UPDATE SET " + set)
	}
	return b.String()
}

// exec writes the rows in args (u.cols values each): full chunks with
// the chunkRows statement, the rest one at a time. It is called inside
// conn.Raw.
func (u *upsert) exec(args []any) error {
	chunk := chunkRows * u.cols
	for len(args) >= chunk {
		if err := u.execStmt(u.many, args[:chunk]); err != nil {
			return err
		}
		args = args[chunk:]
	}
	for ; len(args) > 0; args = args[u.cols:] {
		if err := u.execStmt(u.one, args[:u.cols]); err != nil {
			return err
		}
	}
	return nil
}

// execStmt runs st with args. It goes through Query, not Exec: the driver
// binds the arguments and takes the (only) step in one cgo call, where
// Exec makes one call per argument. The statement returns no rows.
func (u *upsert) execStmt(st driver.Stmt, args []any) error {
	nv := u.nv[:len(args)]
	for i, a := range args {
		nv[i].Value = a
	}
	rows, err := st.(driver.StmtQueryContext).QueryContext(context.Background(), nv)
	for i := range nv {
		nv[i].Value = nil // keep no references to the batch
	}
	if err != nil {
		return err
	}
	return rows.Close()
}

func (u *upsert) close() {
	u.many.Close()
	u.one.Close()
}
