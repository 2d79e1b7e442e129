package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "github.com/mattn/go-sqlite3" // registers the "sqlite3" driver
)

// Defaults for the zero fields of Options.
const (
	DefaultQueueSize     = 8192                   // items between Observe and the writer
	DefaultBatchSize     = 65536                  // items per commit, at most
	DefaultFlushInterval = 250 * time.Millisecond // longest wait before a commit
	// DefaultBusyTimeout is how long a connection waits for a lock held
	// by another connection or process before failing with SQLITE_BUSY.
	DefaultBusyTimeout = 5 * time.Second
)

// ErrClosed is returned by Flush, StartRun and EndRun after Close.
var ErrClosed = errors.New("database closed")

// ErrSchemaTooNew is returned (wrapped in *Error) by Open for a file whose
// schema has migrations this version of the package does not know.
var ErrSchemaTooNew = errors.New("schema is newer than this program")

// Error is an error from one operation on a database file.
type Error struct {
	Op   string // "open", "migrate", "prepare", "flush", "run", "close"
	Path string // the database file
	Err  error  // the underlying error, often a sqlite3.Error
}

// Error returns "db: op path: err".
func (e *Error) Error() string { return "db: " + e.Op + " " + e.Path + ": " + e.Err.Error() }

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// Options configures a DB. The zero value is ready to use.
type Options struct {
	// QueueSize is the capacity of the queue between Observe and the
	// writer goroutine. Zero: DefaultQueueSize.
	QueueSize int
	// BatchSize is how many queued items (sightings, peers, samples) the
	// writer collects before it commits them. Zero: DefaultBatchSize.
	// Large batches are much faster: a commit rewrites every B-tree page
	// it touches, and random node IDs touch pages all over the table.
	// FlushInterval, not BatchSize, bounds the delay at low rates.
	BatchSize int
	// FlushInterval is the longest an item waits in a batch before the
	// writer commits it. Zero: DefaultFlushInterval.
	FlushInterval time.Duration
	// Shed makes Observe, RecordPeer and RecordSample drop the item and
	// count it in Stats().Shed when the queue is full, instead of
	// blocking the caller until there is room (back-pressure, the
	// default).
	Shed bool
	// Reports records, for every SourceReported sighting, which node
	// reported which in the reports table. Off by default: it adds one
	// row per (reporter, reported) pair, the largest table by far in a
	// crawl. The crawler turns it on.
	Reports bool
	// Neighbours records, in the neighbours table, which node listed
	// which in each run (StartRun to EndRun): one row per (run, node,
	// neighbour), by integer reference. Off by default: it is as large
	// as reports, once per run. The reports table (Reports) keeps one
	// row per pair over all runs.
	Neighbours bool
	// SessionFailures is the number of timed-out visits in a row that
	// close a node's session (see SCHEMA.md). Zero: 1, so that a session
	// is an interval in which the node answered every visit; more
	// tolerates lost packets at the cost of bridging short outages.
	SessionFailures int
	// BusyTimeout is how long SQLite waits on locks held by other
	// connections. Zero: DefaultBusyTimeout.
	BusyTimeout time.Duration
	// CacheKiB is SQLite's page cache per connection, in KiB. Zero:
	// 65536 (64 MiB).
	CacheKiB int

	// flushHook, if set, is called by the writer before each commit
	// (tests use it to make the writer slow).
	flushHook func()
}

func (o *Options) setDefaults() {
	if o.QueueSize <= 0 {
		o.QueueSize = DefaultQueueSize
	}
	if o.BatchSize <= 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = DefaultFlushInterval
	}
	if o.BusyTimeout <= 0 {
		o.BusyTimeout = DefaultBusyTimeout
	}
	if o.SessionFailures <= 0 {
		o.SessionFailures = 1
	}
	if o.CacheKiB <= 0 {
		o.CacheKiB = 65536
	}
}

// Stats are a DB's counters since Open. Items are sightings, RecordPeer
// and RecordSample calls. After Close, Enqueued == Written + Lost.
type Stats struct {
	Enqueued uint64 // items accepted into the queue
	Written  uint64 // items whose batch committed
	Shed     uint64 // items refused: queue full with Options.Shed, or after Close
	Lost     uint64 // items whose batch failed to commit (see Errors)
	Batches  uint64 // committed batches
	Errors   uint64 // failed commits
	// LastError is the error of the last failed commit, nil if none.
	LastError error
	// LastFlushDuration is how long the last commit took.
	LastFlushDuration time.Duration
	// Queued is the number of items waiting in the queue now.
	Queued int
}

// DB is a node database being written by one writer goroutine. Its methods
// are safe for concurrent use.
type DB struct {
	path string
	opts Options
	w    *sql.DB // SQLite's write pool: one connection, owned by the committer goroutine; nil for PostgreSQL
	r    *sql.DB // read-only pool, returned by SQL

	mu     sync.RWMutex // held for reading while enqueueing, for writing by Close
	closed bool
	q      chan item
	done   chan struct{} // closed when the writer's committer goroutine has exited

	closeOnce sync.Once
	closeErr  error

	enqueued, written, shed, lost, batches, errs atomic.Uint64
	lastFlush                                    atomic.Int64
	lastErr                                      atomic.Pointer[error]
}

// Open opens or creates the database file at path, applies any missing
// migrations and starts the writer goroutine. The file is in WAL mode, so
// other connections and processes can read it while the DB writes.
//
// A path that is a postgres:// or postgresql:// URL (IsPostgres) opens
// that PostgreSQL database instead, which must exist; the schema is
// created in it, and it gets the same tables, views and meaning. Several
// processes, on several machines, can write one PostgreSQL database at
// once.
//
// Errors are *Error; a file that is not a SQLite database gives one whose
// message ends in "file is not a database", and a file written by a newer
// version of this package one that wraps ErrSchemaTooNew.
func Open(path string, opts Options) (*DB, error) {
	opts.setDefaults()
	if IsPostgres(path) {
		return openPostgres(path, opts)
	}
	ctx := context.Background()
	fail := func(op string, err error) error { return &Error{Op: op, Path: path, Err: err} }

	w, err := sql.Open("sqlite3", dsn(path, fmt.Sprintf(
		"_synchronous=NORMAL&_busy_timeout=%d&_txlock=immediate&_cache_size=-%d",
		opts.BusyTimeout.Milliseconds(), opts.CacheKiB)))
	if err != nil {
		return nil, fail("open", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	conn, err := w.Conn(ctx)
	if err != nil {
		w.Close()
		return nil, fail("open", err)
	}
	closeAll := func() { conn.Close(); w.Close() }
	// 16 KiB pages, set before WAL mode (afterwards SQLite ignores it) and
	// effective only for a new file; a 64 MiB WAL between checkpoints.
	// Each batch rewrites pages all over the nodes B-tree (random IDs):
	// fewer, larger pages and checkpoints are cheaper.
	var mode string
	if _, err := conn.ExecContext(ctx, "PRAGMA page_size = 16384"); err != nil {
		closeAll()
		return nil, fail("open", err)
	}
	if err := conn.QueryRowContext(ctx, "PRAGMA journal_mode = WAL").Scan(&mode); err != nil {
		closeAll()
		return nil, fail("open", err)
	}
	if !strings.EqualFold(mode, "wal") {
		closeAll()
		return nil, fail("open", fmt.Errorf("journal mode is %q, not WAL", mode))
	}
	if _, err := conn.ExecContext(ctx, "PRAGMA wal_autocheckpoint = 4096"); err != nil {
		closeAll()
		return nil, fail("open", err)
	}
	if err := migrate(ctx, conn, len(migrations)); err != nil {
		closeAll()
		return nil, fail("migrate", err)
	}
	be, err := newSQLiteBackend(conn, opts)
	if err != nil {
		closeAll()
		return nil, fail("prepare", err)
	}
	r, err := OpenReadOnly(path)
	if err != nil {
		be.closeStmts()
		closeAll()
		return nil, err
	}
	d := &DB{
		path: path,
		opts: opts,
		w:    w,
		r:    r,
		q:    make(chan item, opts.QueueSize),
		done: make(chan struct{}),
	}
	wr := &writer{d: d, opts: opts, be: be}
	go wr.run()
	return d, nil
}

// OpenReadOnly opens the database file at path for reading only, for
// queries by other goroutines or programs while a DB writes to it. The
// file must exist and be in WAL mode (every file Open created is). A
// postgres:// URL opens a pool of read-only connections to that
// database. The caller closes the returned pool.
func OpenReadOnly(path string) (*sql.DB, error) {
	if IsPostgres(path) {
		return openPostgresReadOnly(path)
	}
	r, err := sql.Open("sqlite3", dsn(path, fmt.Sprintf("mode=ro&_busy_timeout=%d", DefaultBusyTimeout.Milliseconds())))
	if err != nil {
		return nil, &Error{Op: "open", Path: path, Err: err}
	}
	if err := r.Ping(); err != nil {
		r.Close()
		return nil, &Error{Op: "open", Path: path, Err: err}
	}
	return r, nil
}

// dsn builds a file: URI for path with the given query parameters,
// escaping the characters that URIs reserve.
func dsn(path, params string) string {
	p := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	return "file:" + p + "?" + params
}

// Path returns the database file's path, or the PostgreSQL URL without
// its password.
func (d *DB) Path() string { return d.path }

// SQL returns a read-only pool of connections to the database, for
// queries. It sees every committed batch (call Flush first to see
// everything observed so far); writes through it fail. It stays valid
// until Close.
func (d *DB) SQL() *sql.DB { return d.r }

// Stats returns the DB's counters.
func (d *DB) Stats() Stats {
	s := Stats{
		Enqueued:          d.enqueued.Load(),
		Written:           d.written.Load(),
		Shed:              d.shed.Load(),
		Lost:              d.lost.Load(),
		Batches:           d.batches.Load(),
		Errors:            d.errs.Load(),
		LastFlushDuration: time.Duration(d.lastFlush.Load()),
		Queued:            len(d.q),
	}
	if p := d.lastErr.Load(); p != nil {
		s.LastError = *p
	}
	return s
}

// enqueue puts it on the queue. Data items (sightings, peers, samples) are
// shed when the queue is full and Options.Shed is set, or after Close;
// otherwise enqueue blocks until there is room. Requests (flush, run)
// always block, until ctx is done.
func (d *DB) enqueue(ctx context.Context, it item) error {
	return d.put(ctx, it, d.opts.Shed)
}

// put is enqueue with the choice between shedding and waiting made by the
// caller.
func (d *DB) put(ctx context.Context, it item, shed bool) error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		if it.req == nil {
			d.shed.Add(1)
		}
		return ErrClosed
	}
	if it.req == nil {
		if shed {
			select {
			case d.q <- it:
				d.enqueued.Add(1)
			default:
				d.shed.Add(1)
			}
			return nil
		}
		d.q <- it
		d.enqueued.Add(1)
		return nil
	}
	select {
	case d.q <- it:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// request runs fn on the writer's committer goroutine, which owns the
// connection and the current run, after it has committed every item
// enqueued before, and returns its error. A nil fn only commits.
func (d *DB) request(ctx context.Context, fn func(*writer) error) error {
	r := &request{fn: fn, done: make(chan error, 1)}
	if err := d.enqueue(ctx, item{req: r}); err != nil {
		return err
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Flush returns when every item enqueued before the call has been
// committed, or ctx is done. It returns the errors of the commits that
// failed since the previous Flush, or ErrClosed after Close.
func (d *DB) Flush(ctx context.Context) error {
	return d.request(ctx, nil)
}

// Close commits everything still queued, stops the writer goroutine and
// closes the database. Calls to Observe, RecordPeer and RecordSample
// after Close are counted in Stats().Shed and otherwise ignored. Close is
// idempotent; every call returns the first call's result.
func (d *DB) Close() error {
	d.closeOnce.Do(func() {
		d.mu.Lock()
		d.closed = true
		close(d.q)
		d.mu.Unlock()
		<-d.done // the writer commits what was queued and closes its connection
		var errs []error
		if p := d.lastErr.Load(); p != nil && d.lost.Load() > 0 {
			errs = append(errs, fmt.Errorf("%d items lost: %w", d.lost.Load(), *p))
		}
		if d.w != nil { // SQLite's; PostgreSQL's connection is the backend's
			if err := d.w.Close(); err != nil {
				errs = append(errs, err)
			}
		}
		if err := d.r.Close(); err != nil {
			errs = append(errs, err)
		}
		if err := errors.Join(errs...); err != nil {
			d.closeErr = &Error{Op: "close", Path: d.path, Err: err}
		}
	})
	return d.closeErr
}
