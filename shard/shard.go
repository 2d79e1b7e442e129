package shard

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/lightdht/lightdht/crawler"
	"github.com/lightdht/lightdht/db"
	"github.com/lightdht/lightdht/krpc"
)

// Defaults of Config, filled in for zero fields.
const (
	DefaultBits     = 4                      // 16 zones
	DefaultLease    = time.Minute            // a zone's lease, renewed every third of it
	DefaultPoll     = 500 * time.Millisecond // first wait for a free zone
	DefaultPollMax  = 10 * time.Second       // longest wait for a free zone
	DefaultParallel = 1                      // zones a process crawls at once
)

// MaxBits is the largest Config.Bits: 65,536 zones.
const MaxBits = 16

// ErrBitsMismatch is returned by Open, wrapped, when a shared crawl of
// the name exists with another number of zone bits: the name belongs to
// another crawl, and joining it would split the ID space differently.
var ErrBitsMismatch = errors.New("shard: a shared crawl of that name exists with other zone bits")

// ErrNotPostgres is returned by Open, wrapped, for a database URL that is
// not PostgreSQL: shared crawls coordinate through the database server.
var ErrNotPostgres = errors.New("shard: a shared crawl needs a postgres:// database URL")

// Config configures a process's part in a shared crawl. URL, Name, Store
// and Crawler.Conn and Crawler.Bootstrap are required.
type Config struct {
	// URL is the PostgreSQL database (postgres:// or postgresql://)
	// that coordinates the crawl; Store must be opened on it too.
	URL string
	// Name names the shared crawl: every process opened with the same
	// name and URL works on the same crawl. Required.
	Name string
	// Bits cuts the ID space into 2^Bits zones, 1 to MaxBits. Zero:
	// DefaultBits (4, 16 zones). A crawl that exists keeps its own; a
	// different non-zero Bits is an error matching ErrBitsMismatch.
	Bits int
	// Lease is how long a claim on a zone lasts without renewal; the
	// holder renews it every third of Lease, and a crawler that dies
	// gives its zone up after at most Lease. Zero: DefaultLease (1
	// minute).
	Lease time.Duration
	// Poll and PollMax bound the waits of a process that finds no zone
	// free while others hold leases: Poll first, doubling up to PollMax,
	// never past the next lease's end. Zero: DefaultPoll (500 ms) and
	// DefaultPollMax (10 seconds).
	Poll, PollMax time.Duration
	// Parallel is how many zones the process claims and crawls at once,
	// on its one socket and within its one rate (Crawler.Rate, all zones
	// together): while one zone's crawl waits out its last timeouts, the
	// other sends, which speeds up a crawl of many small zones; but a
	// process that dies leaves that many zones half crawled. Zero:
	// DefaultParallel (1, a zone at a time).
	Parallel int
	// Overlap claims the next zone as soon as the current zone's crawl
	// has nothing left to send but queries in flight (its tail: the
	// last timeouts, seen by Crawler.Progress, so within one
	// Crawler.ProgressEvery), and lets that crawl end in the background,
	// paced with the next at the process's rate: a process then holds
	// two zones for a moment. False: a zone is claimed once the last is
	// done.
	Overlap bool
	// Now, if set, is the clock of leases and of the times stored in
	// crawl_zones and shared_crawls, for tests. Nil: the database
	// server's clock, which every process agrees on.
	Now func() time.Time
	// Store receives every zone's sightings, samples and visits; Run
	// joins it to the crawl (db.JoinRun). Required.
	Store *db.DB
	// Crawler is the template of each zone's crawl: Bootstrap, Rate and
	// the other limits apply to every zone. Conn is the process's
	// socket: every zone's crawl uses it, it names the vantage, and Run
	// closes it when it returns. Zone and Recorder are set by Run, and
	// so is IPSpacing if nil: one for the socket, which every zone's
	// crawl shares, so that PerIPInterval holds across zones.
	Crawler crawler.Config
	// Host names the machine in the vantage. Empty: os.Hostname.
	Host string
	// Info fills the crawl_runs row if this process creates the crawl:
	// Config, ProgramVersion and Bootstrap (Kind is 'crawl'; Vantage and
	// Host stay NULL, as the crawl has many). Started zero: now.
	Info db.RunInfo
	// Progress, if set, is called as zones are claimed, done or lost
	// and while the process waits for one, from Run's goroutines, one
	// call at a time (Crawler.Progress too). Nil: no reports.
	Progress func(Event)
	// Logger receives log events, tagged component=shard. Zero value:
	// none.
	Logger zerolog.Logger
}

// withDefaults validates c and fills in its defaults.
func (c Config) withDefaults() (Config, error) {
	switch {
	case !db.IsPostgres(c.URL):
		return c, fmt.Errorf("shard: database %q: %w", c.URL, ErrNotPostgres)
	case c.Name == "":
		return c, errors.New("shard: a shared crawl needs a name")
	case c.Bits < 0 || c.Bits > MaxBits:
		return c, fmt.Errorf("shard: %d zone bits, want 1 to %d", c.Bits, MaxBits)
	case c.Store == nil:
		return c, errors.New("shard: Store is required")
	case c.Crawler.Conn == nil:
		return c, errors.New("shard: Crawler.Conn is required")
	case c.Lease < 0 || c.Poll < 0 || c.PollMax < 0 || c.Parallel < 0:
		return c, errors.New("shard: negative Lease, Poll, PollMax or Parallel")
	case c.Crawler.Continuous || c.Crawler.Respond || len(c.Crawler.Nodes) > 0 || c.Crawler.Zone.Bits > 0:
		return c, errors.New("shard: a shared crawl's zones are crawls that end, read-only: no Continuous, Respond, Nodes or Zone")
	}
	if c.Parallel == 0 {
		c.Parallel = DefaultParallel
	}
	if c.Lease == 0 {
		c.Lease = DefaultLease
	}
	if c.Poll == 0 {
		c.Poll = DefaultPoll
	}
	if c.PollMax == 0 {
		c.PollMax = max(DefaultPollMax, c.Poll)
	}
	if c.Host == "" {
		h, err := os.Hostname()
		if err != nil {
			return c, fmt.Errorf("shard: host name: %w", err)
		}
		c.Host = h
	}
	return c, nil
}

// Crawl is one process's handle on a shared crawl. Create it with Open,
// work zones with Run, release it with Close. It is not safe for
// concurrent use; several processes (or several Crawls in one process,
// each with its own socket) share a crawl through the database.
type Crawl struct {
	cfg     Config
	pool    *pgxpool.Pool
	log     zerolog.Logger
	id      int64  // the crawl_runs row
	bits    int    // the crawl's zone bits
	created bool   // this process created the crawl
	holder  string // this process's name in crawl_zones.holder
	vantage string // the socket's local address

	mu    sync.Mutex // serialises the calls of Config.Progress and Crawler.Progress
	sumMu sync.Mutex // guards the Summary Run's workers share
}

// Open connects to cfg.URL and joins the shared crawl cfg.Name, creating
// it with its zones if no process has yet. It starts no crawl.
func Open(ctx context.Context, cfg Config) (*Crawl, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	pcfg, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("shard: %w", err)
	}
	pcfg.MaxConns = 2 // the work loop and the lease renewal
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("shard: %w", err)
	}
	var tag [4]byte
	rand.Read(tag[:])
	c := &Crawl{cfg: cfg, pool: pool, log: cfg.Logger.With().Str("component", "shard").Logger(),
		vantage: cfg.Crawler.Conn.LocalAddr().String()}
	c.holder = fmt.Sprintf("%s pid %d %s %s", cfg.Host, os.Getpid(), c.vantage, hex.EncodeToString(tag[:]))
	if err := c.join(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return c, nil
}

// advisoryKey is the first argument of the advisory lock that makes
// creating a shared crawl race-free; the name is hashed into the second.
const advisoryKey = 0x6c646874 // "ldht"

// join finds the shared crawl of c's name, or creates it: the crawl_runs
// row, the shared_crawls row and the zones, in one transaction under an
// advisory lock on the name, so that of processes started together
// exactly one creates it and the others find it.
func (c *Crawl) join(ctx context.Context) error {
	tx, err := c.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("shard: %w", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1, hashtext($2))", advisoryKey, c.cfg.Name); err != nil {
		return fmt.Errorf("shard: lock: %w", err)
	}
	var bits int
	err = tx.QueryRow(ctx, "SELECT crawl, bits FROM shared_crawls WHERE name = $1", c.cfg.Name).Scan(&c.id, &bits)
	switch {
	case err == nil:
		if c.cfg.Bits != 0 && c.cfg.Bits != bits {
			return fmt.Errorf("shard: shared crawl %q has %d zone bits, not %d: %w", c.cfg.Name, bits, c.cfg.Bits, ErrBitsMismatch)
		}
		c.bits = bits
		return tx.Commit(ctx)
	case !errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("shard: find %q: %w", c.cfg.Name, err)
	}
	c.bits = c.cfg.Bits
	if c.bits == 0 {
		c.bits = DefaultBits
	}
	info := c.cfg.Info
	started := info.Started
	if started.IsZero() {
		started = c.clock()
	}
	var cfgJSON any
	if info.Config != nil {
		b, err := json.Marshal(info.Config)
		if err != nil {
			return fmt.Errorf("shard: config: %w", err)
		}
		cfgJSON = string(b)
	}
	boot := info.Bootstrap
	if boot == nil {
		boot = []string{}
	}
	bb, _ := json.Marshal(boot)
	err = tx.QueryRow(ctx, `INSERT INTO crawl_runs (started, config, program_version, bootstrap, kind)
		VALUES ($1, $2, $3, $4, 'crawl') RETURNING id`,
		started.UnixMilli(), cfgJSON, info.ProgramVersion, string(bb)).Scan(&c.id)
	if err != nil {
		return fmt.Errorf("shard: create run: %w", err)
	}
	now := c.now()
	if _, err := tx.Exec(ctx, `INSERT INTO shared_crawls (name, crawl, bits, created) VALUES ($1, $2, $3, `+nowSQL(4)+`)`,
		c.cfg.Name, c.id, c.bits, now); err != nil {
		return fmt.Errorf("shard: create %q: %w", c.cfg.Name, err)
	}
	rows := make([][]any, 0, 1<<c.bits)
	for z := range 1 << c.bits {
		rows = append(rows, []any{c.id, int64(z), ZonePrefix(z, c.bits).String(), int64(c.bits)})
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"crawl_zones"}, []string{"crawl", "zone", "prefix", "bits"},
		pgx.CopyFromRows(rows)); err != nil {
		return fmt.Errorf("shard: create zones: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("shard: create %q: %w", c.cfg.Name, err)
	}
	c.created = true
	return nil
}

// ID returns the crawl_runs id of the shared crawl.
func (c *Crawl) ID() int64 { return c.id }

// Bits returns the crawl's zone bits: 2^Bits zones.
func (c *Crawl) Bits() int { return c.bits }

// Created reports whether this Open created the crawl.
func (c *Crawl) Created() bool { return c.created }

// Holder returns this process's name in crawl_zones.holder.
func (c *Crawl) Holder() string { return c.holder }

// Close releases the connections to the database. It does not close
// Config.Crawler.Conn (Run does) or Config.Store.
func (c *Crawl) Close() { c.pool.Close() }

// ZonePrefix returns the prefix of zone z of a crawl of bits zone bits:
// z in the first bits bits, the rest zero.
func ZonePrefix(z, bits int) krpc.ID {
	var id krpc.ID
	binary.BigEndian.PutUint32(id[:4], uint32(z)<<(32-bits))
	return id
}

// clock returns the time of c's clock: Config.Now, or the local clock
// for the times that are not compared between machines.
func (c *Crawl) clock() time.Time {
	if c.cfg.Now != nil {
		return c.cfg.Now()
	}
	return time.Now()
}

// now returns the query argument of nowSQL: the injected clock's time in
// Unix ms, or NULL for the server's clock.
func (c *Crawl) now() any {
	if c.cfg.Now != nil {
		return c.cfg.Now().UnixMilli()
	}
	return nil
}

// nowSQL is the SQL for "now" in Unix ms from argument $n: the argument
// when it is set (an injected clock), else the server's clock.
func nowSQL(n int) string {
	return fmt.Sprintf("coalesce($%d::bigint, (extract(epoch FROM clock_timestamp()) * 1000)::bigint)", n)
}
