package db

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// The PostgreSQL store. Open takes a postgres:// (or postgresql://) URL
// instead of a file path and gives a DB with the same tables, views and
// meaning (migrations/postgres/). The writer is the same; only its
// backend differs: each batch is copied (COPY) into temporary staging
// tables, and one INSERT ... ON CONFLICT per table folds it in, in one
// transaction. The history's visits take the same set-based steps as in
// SQLite, written for PostgreSQL.

//go:embed migrations/postgres/*.sql
var pgMigrationFS embed.FS

// pgMigrations are the files in migrations/postgres/, in order.
var pgMigrations = loadMigrationsFrom(pgMigrationFS, "migrations/postgres/*.sql")

// PostgresSchemaVersion is the schema version this package writes into
// a PostgreSQL database: the number of its PostgreSQL migrations, which
// are numbered on their own (its migration 1 is SQLite's 1 to 6, its 3
// SQLite's 7).
func PostgresSchemaVersion() int { return len(pgMigrations) }

// IsPostgres reports whether dsn names a PostgreSQL database (a
// postgres:// or postgresql:// URL) rather than a SQLite file.
func IsPostgres(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// Redact returns dsn as it may be shown: a PostgreSQL URL with its
// password replaced, a file path as it is.
func Redact(dsn string) string {
	if !IsPostgres(dsn) {
		return dsn
	}
	return redact(dsn)
}

// redact returns the URL with its password replaced, for errors and
// Path.
func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "postgres://…" // an unparsable URL may hold a password anywhere
	}
	return u.Redacted()
}

// pgLock is the advisory lock key under which migrations run, so that
// several processes opening a new database at once apply each once.
const pgLock = 0x6c69676874646874 // "lightdht"

func openPostgres(dsn string, opts Options) (*DB, error) {
	ctx := context.Background()
	name := redact(dsn)
	fail := func(op string, err error) error { return &Error{Op: op, Path: name, Err: err} }
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fail("open", err)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fail("open", err)
	}
	if err := pgMigrate(ctx, conn); err != nil {
		conn.Close(ctx)
		return nil, fail("migrate", err)
	}
	be, err := newPGBackend(conn, opts)
	if err != nil {
		conn.Close(ctx)
		return nil, fail("prepare", err)
	}
	r, err := openPostgresReadOnly(dsn)
	if err != nil {
		conn.Close(ctx)
		return nil, err
	}
	d := &DB{
		path: name,
		opts: opts,
		r:    r,
		q:    make(chan item, opts.QueueSize),
		done: make(chan struct{}),
	}
	wr := &writer{d: d, opts: opts, be: be}
	go wr.run()
	return d, nil
}

// openPostgresReadOnly opens a pool whose transactions are read-only.
func openPostgresReadOnly(dsn string) (*sql.DB, error) {
	name := redact(dsn)
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, &Error{Op: "open", Path: name, Err: err}
	}
	cfg.RuntimeParams["default_transaction_read_only"] = "on"
	r := stdlib.OpenDB(*cfg)
	if err := r.Ping(); err != nil {
		r.Close()
		return nil, &Error{Op: "open", Path: name, Err: err}
	}
	return r, nil
}

// loadMigrationsFrom reads the embedded NNNN_name.sql files matching
// pattern. It panics on a malformed name or a gap in the numbering:
// both are build mistakes.
func loadMigrationsFrom(fsys embed.FS, pattern string) []migration {
	names, err := fs.Glob(fsys, pattern)
	if err != nil {
		panic(err)
	}
	sort.Strings(names)
	var ms []migration
	for i, name := range names {
		base := path.Base(name)
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v != i+1 {
			panic(fmt.Sprintf("db: migration %s: want number %04d", base, i+1))
		}
		b, err := fsys.ReadFile(name)
		if err != nil {
			panic(err)
		}
		ms = append(ms, migration{version: v, name: base, sql: string(b)})
	}
	return ms
}

// pgMigrate applies the PostgreSQL migrations the database lacks, each
// in its own transaction with its schema_migrations row, under an
// advisory lock; the rules are SQLite's (migrate): a database with a
// version above the newest known is refused with ErrSchemaTooNew.
func pgMigrate(ctx context.Context, conn *pgx.Conn) error {
	step := func(fn func(tx pgx.Tx) error) error {
		tx, err := conn.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(pgLock)); err != nil {
			return err
		}
		if err := fn(tx); err != nil {
			return err
		}
		return tx.Commit(ctx)
	}
	version := func(tx pgx.Tx) (int, error) {
		var v int
		err := tx.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&v)
		if err == nil && v > len(pgMigrations) {
			err = fmt.Errorf("database has schema version %d, this program knows up to %d: %w", v, len(pgMigrations), ErrSchemaTooNew)
		}
		return v, err
	}
	if err := step(func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    bigint PRIMARY KEY,
			applied_at bigint NOT NULL
		)`)
		return err
	}); err != nil {
		return err
	}
	for _, m := range pgMigrations {
		if err := step(func(tx pgx.Tx) error {
			v, err := version(tx)
			if err != nil || v >= m.version {
				return err
			}
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return fmt.Errorf("%s: %w", m.name, err)
			}
			_, err = tx.Exec(ctx, "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
				m.version, time.Now().UnixMilli())
			return err
		}); err != nil {
			return err
		}
	}
	return step(func(tx pgx.Tx) error { _, err := version(tx); return err })
}

// pgBackend is the backend of a PostgreSQL database: one connection
// (pgx caches its prepared statements). The committer goroutine owns it.
type pgBackend struct {
	conn            *pgx.Conn
	sessionFailures int
}

// pgTable is a table a batch is copied into: its staging table's
// columns, in the order of the batch's arguments, and the statement
// that folds the staged rows into the table.
type pgTable struct {
	stage string
	cols  []string
	fold  string
}

// pgStaging creates the staging tables, emptied at every commit.
const pgStaging = `
CREATE TEMP TABLE stage_nodes (
    id text, ip text, port bigint, first_seen bigint, last_seen bigint, times_seen bigint,
    first_source text, last_reply bigint, replies bigint, timeouts bigint, queries_sent bigint,
    queries_received bigint, last_rtt_ms double precision, version text, version_seen bigint,
    bep42_valid bigint, read_only bigint
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE stage_reports (
    reporter_id text, reporter_ip text, reporter_port bigint, reported_id text, reported_ip text,
    reported_port bigint, first_seen bigint, last_seen bigint, count bigint
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE stage_infohashes (
    infohash text, first_seen bigint, last_seen bigint, via_sample bigint, via_get_peers bigint,
    via_announce bigint
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE stage_peers (
    infohash text, ip text, port bigint, first_seen bigint, last_seen bigint, source text, count bigint
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE stage_samples (
    node_id text, ip text, port bigint, time bigint, num bigint, interval_s bigint, samples_count bigint
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE stage_items (
    target text, mutable bigint, seq bigint, first_seen bigint, last_seen bigint, puts bigint, gets bigint,
    last_put bigint, last_putter_id text, last_putter_ip text, last_putter_port bigint
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE stage_visits (
    seq bigint, grp bigint, id text, ip text, port bigint, time bigint,
    outcome bigint, error_code bigint, skipped bigint, queries bigint,
    rtt_us bigint, version text, read_only bigint, bep51 bigint,
    num bigint, interval_s bigint, secure bigint, discounted bigint,
    node bigint, vref bigint, prev_addr bigint, prev_id bigint
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE stage_neighbours (
    rid text, rip text, rport bigint, nid text, nip text, nport bigint
) ON COMMIT DELETE ROWS;`

// The fold statements mirror SQLite's upserts (sqlite.go); where SQLite
// has min and max of two values, PostgreSQL has LEAST and GREATEST,
// which ignore NULLs.
var (
	pgNodes = pgTable{"stage_nodes", []string{
		"id", "ip", "port", "first_seen", "last_seen", "times_seen", "first_source",
		"last_reply", "replies", "timeouts", "queries_sent", "queries_received",
		"last_rtt_ms", "version", "version_seen", "bep42_valid", "read_only",
	}, `INSERT INTO nodes AS t (id, ip, port, first_seen, last_seen, times_seen, first_source,
			last_reply, replies, timeouts, queries_sent, queries_received,
			last_rtt_ms, version, version_seen, bep42_valid, read_only)
		SELECT * FROM stage_nodes
		ON CONFLICT (id, ip, port) DO UPDATE SET
		first_source = CASE WHEN excluded.first_seen < t.first_seen THEN excluded.first_source ELSE t.first_source END,
		first_seen = LEAST(t.first_seen, excluded.first_seen),
		last_seen = GREATEST(t.last_seen, excluded.last_seen),
		times_seen = t.times_seen + excluded.times_seen,
		last_rtt_ms = CASE WHEN excluded.last_reply IS NOT NULL AND (t.last_reply IS NULL OR excluded.last_reply >= t.last_reply)
			THEN excluded.last_rtt_ms ELSE t.last_rtt_ms END,
		last_reply = GREATEST(t.last_reply, excluded.last_reply),
		replies = t.replies + excluded.replies,
		timeouts = t.timeouts + excluded.timeouts,
		queries_sent = t.queries_sent + excluded.queries_sent,
		queries_received = t.queries_received + excluded.queries_received,
		version = CASE WHEN excluded.version IS NOT NULL AND (t.version_seen IS NULL OR excluded.version_seen >= t.version_seen)
			THEN excluded.version ELSE t.version END,
		version_seen = CASE WHEN excluded.version IS NOT NULL AND (t.version_seen IS NULL OR excluded.version_seen >= t.version_seen)
			THEN excluded.version_seen ELSE t.version_seen END,
		bep42_valid = CASE WHEN excluded.last_seen >= t.last_seen THEN excluded.bep42_valid ELSE t.bep42_valid END,
		read_only = GREATEST(t.read_only, excluded.read_only)`}
	pgReports = pgTable{"stage_reports", []string{
		"reporter_id", "reporter_ip", "reporter_port", "reported_id", "reported_ip", "reported_port",
		"first_seen", "last_seen", "count",
	}, `INSERT INTO reports AS t SELECT * FROM stage_reports
		ON CONFLICT (reporter_id, reporter_ip, reporter_port, reported_id, reported_ip, reported_port) DO UPDATE SET
		first_seen = LEAST(t.first_seen, excluded.first_seen),
		last_seen = GREATEST(t.last_seen, excluded.last_seen),
		count = t.count + excluded.count`}
	pgInfohashes = pgTable{"stage_infohashes", []string{
		"infohash", "first_seen", "last_seen", "via_sample", "via_get_peers", "via_announce",
	}, `INSERT INTO infohashes AS t SELECT * FROM stage_infohashes
		ON CONFLICT (infohash) DO UPDATE SET
		first_seen = LEAST(t.first_seen, excluded.first_seen),
		last_seen = GREATEST(t.last_seen, excluded.last_seen),
		via_sample = t.via_sample + excluded.via_sample,
		via_get_peers = t.via_get_peers + excluded.via_get_peers,
		via_announce = t.via_announce + excluded.via_announce`}
	pgPeers = pgTable{"stage_peers", []string{
		"infohash", "ip", "port", "first_seen", "last_seen", "source", "count",
	}, `INSERT INTO peers AS t SELECT * FROM stage_peers
		ON CONFLICT (infohash, ip, port) DO UPDATE SET
		source = CASE WHEN excluded.first_seen < t.first_seen THEN excluded.source ELSE t.source END,
		first_seen = LEAST(t.first_seen, excluded.first_seen),
		last_seen = GREATEST(t.last_seen, excluded.last_seen),
		count = t.count + excluded.count`}
	pgSamples = pgTable{"stage_samples", []string{
		"node_id", "ip", "port", "time", "num", "interval_s", "samples_count",
	}, `INSERT INTO samples SELECT * FROM stage_samples`}
	pgItems = pgTable{"stage_items", []string{
		"target", "mutable", "seq", "first_seen", "last_seen", "puts", "gets",
		"last_put", "last_putter_id", "last_putter_ip", "last_putter_port",
	}, `INSERT INTO items AS t SELECT * FROM stage_items
		ON CONFLICT (target) DO UPDATE SET
		mutable = GREATEST(t.mutable, excluded.mutable),
		seq = CASE WHEN excluded.seq IS NOT NULL AND (t.seq IS NULL OR excluded.seq > t.seq) THEN excluded.seq ELSE t.seq END,
		first_seen = LEAST(t.first_seen, excluded.first_seen),
		last_seen = GREATEST(t.last_seen, excluded.last_seen),
		puts = t.puts + excluded.puts,
		gets = t.gets + excluded.gets,
		last_putter_id = CASE WHEN excluded.last_put IS NOT NULL AND (t.last_put IS NULL OR excluded.last_put >= t.last_put) THEN excluded.last_putter_id ELSE t.last_putter_id END,
		last_putter_ip = CASE WHEN excluded.last_put IS NOT NULL AND (t.last_put IS NULL OR excluded.last_put >= t.last_put) THEN excluded.last_putter_ip ELSE t.last_putter_ip END,
		last_putter_port = CASE WHEN excluded.last_put IS NOT NULL AND (t.last_put IS NULL OR excluded.last_put >= t.last_put) THEN excluded.last_putter_port ELSE t.last_putter_port END,
		last_put = GREATEST(t.last_put, excluded.last_put)`}
	pgNeighbourStage = pgTable{"stage_neighbours", []string{"rid", "rip", "rport", "nid", "nip", "nport"}, ""}
	pgVisitStage     = pgTable{"stage_visits", visitCols, ""}
)

// The history's statements, as SQLite's in history.go. $1 is the
// group; pgInsertVisits takes the run and the vantage as $2 and $3,
// pgSessionsFailed the failed visits that close a session as $2. The versions and the bare nodes are inserted only where
// missing, so that conflicts use up no identity values.
const (
	pgStageNodes = `UPDATE stage_visits s SET node = n.ref FROM nodes n
		WHERE s.node IS NULL AND n.id = s.id AND n.ip = s.ip AND n.port = s.port`
	pgStageMissing = `INSERT INTO nodes (id, ip, port, first_seen, last_seen, times_seen, first_source, bep42_valid)
		SELECT id, ip, port, min(time), max(time), 0,
			CASE WHEN bool_or(outcome IN (1, 2)) THEN 'reply' WHEN bool_or(outcome = 3) THEN 'timeout' ELSE 'reported' END,
			max(secure)
		FROM stage_visits WHERE node IS NULL GROUP BY id, ip, port ORDER BY id, ip, port
		ON CONFLICT DO NOTHING`
	pgStageVersions = `INSERT INTO versions (version)
		SELECT version FROM stage_visits s
		WHERE version IS NOT NULL AND NOT EXISTS (SELECT 1 FROM versions v WHERE v.version = s.version)
		GROUP BY version ORDER BY min(seq)
		ON CONFLICT DO NOTHING`
	pgStageVersionRefs = `UPDATE stage_visits s SET vref = v.ref FROM versions v WHERE v.version = s.version`
	pgStagePrevAddr    = `UPDATE stage_visits s SET prev_addr = a.node FROM address_nodes a
		WHERE s.grp = $1 AND s.outcome IN (1, 2)
		AND a.ip = s.ip AND a.port = s.port AND a.node != s.node`
	pgStagePrevID = `UPDATE stage_visits s SET prev_id = (
			SELECT x.ref FROM nodes x JOIN sessions xs ON xs.node = x.ref
			WHERE x.id = s.id AND x.ref != s.node
			AND xs.last_answered > coalesce((SELECT max(ms.last_answered) FROM sessions ms WHERE ms.node = s.node), 0)
			ORDER BY xs.last_answered DESC, xs.id DESC LIMIT 1)
		WHERE s.grp = $1 AND s.outcome IN (1, 2)`
	pgCloseIDChanged = `UPDATE sessions SET state = 'closed', closed = s.time, close_reason = 'id_changed'
		FROM stage_visits s WHERE s.grp = $1 AND s.prev_addr IS NOT NULL AND sessions.node = s.prev_addr AND sessions.state = 'open'`
	pgCloseAddrChanged = `UPDATE sessions SET state = 'closed', closed = s.time, close_reason = 'addr_changed'
		FROM stage_visits s WHERE s.grp = $1 AND s.prev_id IS NOT NULL AND sessions.node = s.prev_id AND sessions.state = 'open'`
	pgStageAddresses = `INSERT INTO address_nodes AS t (ip, port, node, time)
		SELECT ip, port, node, time FROM stage_visits WHERE grp = $1 AND outcome IN (1, 2) ORDER BY seq
		ON CONFLICT (ip, port) DO UPDATE SET node = excluded.node, time = excluded.time WHERE excluded.time >= t.time`
	pgInsertVisits = `INSERT INTO visits (crawl, node, time, outcome, error_code, skipped, queries, rtt_us,
			version, read_only, bep51, num, interval_s, id_changed, addr_changed, vantage, discounted)
		SELECT $2::bigint, node, time, outcome, error_code, skipped, queries, rtt_us,
			vref, read_only, bep51, num, interval_s, (prev_addr IS NOT NULL)::int, (prev_id IS NOT NULL)::int, $3::bigint,
			discounted
		FROM stage_visits WHERE grp = $1 ORDER BY seq`
	pgSessionsAnswered = `UPDATE sessions SET last_answered = GREATEST(sessions.last_answered, s.time),
			visits = sessions.visits + 1, failed_streak = 0, failed_since = NULL
		FROM stage_visits s WHERE s.grp = $1 AND s.outcome IN (1, 2) AND sessions.node = s.node AND sessions.state = 'open'`
	pgSessionsOpened = `INSERT INTO sessions (node, started, last_answered, visits, failed, failed_streak, state)
		SELECT node, time, time, 1, 0, 0, 'open' FROM stage_visits s
		WHERE s.grp = $1 AND s.outcome IN (1, 2)
		AND NOT EXISTS (SELECT 1 FROM sessions o WHERE o.node = s.node AND o.state = 'open')
		ORDER BY s.seq`
	pgSessionsFailed = `UPDATE sessions SET visits = sessions.visits + 1, failed = sessions.failed + 1,
			failed_streak = sessions.failed_streak + 1,
			failed_since = coalesce(sessions.failed_since, s.time),
			state = CASE WHEN sessions.failed_streak + 1 >= $2 THEN 'closed' ELSE sessions.state END,
			closed = CASE WHEN sessions.failed_streak + 1 >= $2 THEN s.time ELSE sessions.closed END,
			close_reason = CASE WHEN sessions.failed_streak + 1 >= $2 THEN 'timeout' ELSE sessions.close_reason END
		FROM stage_visits s WHERE s.grp = $1 AND s.outcome = 3 AND sessions.node = s.node AND sessions.state = 'open'`
	pgInsertNeighbours = `INSERT INTO neighbours (crawl, node, neighbour)
		SELECT $1::bigint, r.ref, n.ref FROM stage_neighbours s
		JOIN nodes r ON r.id = s.rid AND r.ip = s.rip AND r.port = s.rport
		JOIN nodes n ON n.id = s.nid AND n.ip = s.nip AND n.port = s.nport
		ON CONFLICT DO NOTHING`
)

func newPGBackend(conn *pgx.Conn, opts Options) (*pgBackend, error) {
	if _, err := conn.Exec(context.Background(), pgStaging); err != nil {
		return nil, err
	}
	return &pgBackend{conn: conn, sessionFailures: opts.SessionFailures}, nil
}

// argRows is a CopyFromSource over a batch's flat argument list, cols
// values a row. Booleans become the integers 0 and 1 of the schema.
type argRows struct {
	args []any
	cols int
	row  []any
}

func (r *argRows) Next() bool {
	if len(r.args) < r.cols {
		return false
	}
	if r.row == nil {
		r.row = make([]any, r.cols)
	}
	for i, a := range r.args[:r.cols] {
		if b, ok := a.(bool); ok {
			a = int64(0)
			if b {
				a = int64(1)
			}
		}
		r.row[i] = a
	}
	r.args = r.args[r.cols:]
	return true
}

func (r *argRows) Values() ([]any, error) { return r.row, nil }
func (r *argRows) Err() error             { return nil }

// stage copies args into t's staging table.
func (p *pgBackend) stage(ctx context.Context, tx pgx.Tx, t pgTable, args []any) error {
	_, err := tx.CopyFrom(ctx, pgx.Identifier{t.stage}, t.cols, &argRows{args: args, cols: len(t.cols)})
	if err != nil {
		return fmt.Errorf("copy into %s: %w", t.stage, err)
	}
	return nil
}

// pgRetries is how often a batch is tried again when PostgreSQL aborts
// it to break a deadlock with another writer (two crawlers folding
// overlapping rows in different orders) or a serialization failure.
const pgRetries = 5

func (p *pgBackend) write(b *batch, run *runState) error {
	var err error
	for attempt := 0; ; attempt++ {
		err = p.writeOnce(b, run)
		var pe *pgconn.PgError
		if attempt == pgRetries || !errors.As(err, &pe) || (pe.Code != "40P01" && pe.Code != "40001") {
			return err
		}
		time.Sleep(time.Duration(attempt+1) * 10 * time.Millisecond) // let the other transaction finish
	}
}

func (p *pgBackend) writeOnce(b *batch, run *runState) error {
	ctx := context.Background()
	tx, err := p.conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	reports := b.repArgs
	if !b.reports {
		reports = nil // collected for neighbours only
	}
	for _, x := range []struct {
		t    pgTable
		args []any
	}{
		{pgNodes, b.nodeArgs}, {pgReports, reports}, {pgInfohashes, b.ihArgs},
		{pgPeers, b.peerArgs}, {pgSamples, b.sampleArgs}, {pgItems, b.itemArgs},
	} {
		if len(x.args) == 0 {
			continue
		}
		if err := p.stage(ctx, tx, x.t, x.args); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, x.t.fold); err != nil {
			return fmt.Errorf("fold %s: %w", x.t.stage, err)
		}
	}
	if len(b.visits) > 0 {
		if err := p.writeVisits(ctx, tx, b, run); err != nil {
			return err
		}
	}
	if len(b.nbrArgs) > 0 && run.id != 0 {
		if err := p.stage(ctx, tx, pgNeighbourStage, b.nbrArgs); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, pgInsertNeighbours, run.id); err != nil {
			return fmt.Errorf("neighbours: %w", err)
		}
	}
	return tx.Commit(ctx)
}

// writeVisits takes the batch's visits in: see history.go for the steps.
func (p *pgBackend) writeVisits(ctx context.Context, tx pgx.Tx, b *batch, run *runState) error {
	if err := p.stage(ctx, tx, pgVisitStage, b.visitArgs); err != nil {
		return err
	}

	for _, q := range []string{pgStageNodes, pgStageMissing, pgStageNodes, pgStageVersions, pgStageVersionRefs} {
		if _, err := tx.Exec(ctx, q); err != nil {
			return fmt.Errorf("visits: %w", err)
		}
	}
	crawl, vantage := nullInt(run.id, run.id != 0), nullInt(run.vantage, run.vantage != 0)
	for g := range int64(b.visitGroups) {
		for _, st := range []struct {
			q    string
			args []any
		}{
			{pgStagePrevAddr, []any{g}}, {pgStagePrevID, []any{g}},
			{pgCloseIDChanged, []any{g}}, {pgCloseAddrChanged, []any{g}},
			{pgStageAddresses, []any{g}}, {pgInsertVisits, []any{g, crawl, vantage}},
			{pgSessionsAnswered, []any{g}}, {pgSessionsOpened, []any{g}},
			{pgSessionsFailed, []any{g, int64(p.sessionFailures)}},
		} {
			if _, err := tx.Exec(ctx, st.q, st.args...); err != nil {
				return fmt.Errorf("visits: %w", err)
			}
		}
	}
	if run.id != 0 {
		if _, err := tx.Exec(ctx, "UPDATE crawl_runs SET visits = 1 WHERE id = $1 AND visits = 0", run.id); err != nil {
			return err
		}
	}
	return nil
}

func (p *pgBackend) insertRun(r runRow) (int64, error) {
	var id int64
	nb := int64(0)
	if r.neighbours {
		nb = 1
	}
	err := p.conn.QueryRow(context.Background(),
		`INSERT INTO crawl_runs (started, config, program_version, bootstrap, kind, vantage, host, neighbours)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id`,
		r.started, r.config, r.programVersion, r.bootstrap, r.kind, r.vantage, r.host, nb).Scan(&id)
	return id, err
}

func (p *pgBackend) runExists(id int64) (bool, error) {
	var ok bool
	err := p.conn.QueryRow(context.Background(), "SELECT EXISTS (SELECT 1 FROM crawl_runs WHERE id = $1)", id).Scan(&ok)
	return ok, err
}

func (p *pgBackend) vantage(host, address string) (int64, error) {
	ctx := context.Background()
	var ref int64
	err := p.conn.QueryRow(ctx, "SELECT ref FROM vantages WHERE host = $1 AND address = $2", host, address).Scan(&ref)
	if err == nil || !errors.Is(err, pgx.ErrNoRows) {
		return ref, err
	}
	// Another process may add it at the same moment: DO UPDATE makes
	// RETURNING give the row either way.
	err = p.conn.QueryRow(ctx, `INSERT INTO vantages (host, address) VALUES ($1, $2)
		ON CONFLICT (host, address) DO UPDATE SET host = excluded.host RETURNING ref`, host, address).Scan(&ref)
	return ref, err
}

func (p *pgBackend) endRun(id int64, e endRow) (bool, error) {
	tag, err := p.conn.Exec(context.Background(), `UPDATE crawl_runs SET ended = $1, nodes_found = $2,
		nodes_replied = $3, infohashes = $4, queries_sent = $5, sightings_shed = $6, size_estimate = $7,
		visits_replied = $8, visits_error = $9, visits_timeout = $10, visits_not_queried = $11
		WHERE id = $12`,
		e.ended, e.nodesFound, e.nodesReplied, e.infohashes, e.queries, e.shed, e.size,
		e.totals[1], e.totals[2], e.totals[3], e.totals[4], id)
	return tag.RowsAffected() > 0, err
}

func (p *pgBackend) putIPInfo(rows []ipRow, now int64) error {
	ctx := context.Background()
	tx, err := p.conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	b := &pgx.Batch{}
	for _, r := range rows {
		b.Queue(`INSERT INTO ip_info (ip, country, asn, org, looked_up) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (ip) DO UPDATE SET country = excluded.country, asn = excluded.asn, org = excluded.org,
			looked_up = excluded.looked_up`, r.ip, r.country, r.asn, r.org, now)
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

func (p *pgBackend) close() { p.conn.Close(context.Background()) }
