package shard

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lightdht/lightdht/crawler"
	"github.com/lightdht/lightdht/krpc"
)

// Zone states, as stored in crawl_zones.state.
const (
	StateTodo    = "todo"    // never claimed
	StateClaimed = "claimed" // held under a lease (which may have run out)
	StateDone    = "done"    // crawled, its figures recorded
)

// Zone is a row of crawl_zones: one zone of a shared crawl.
type Zone struct {
	Number       int       // 0 to 2^Bits - 1: the prefix read as a number
	Prefix       krpc.ID   // the zone's prefix, bits past Bits zero
	Bits         int       // the prefix length
	State        string    // StateTodo, StateClaimed or StateDone
	Holder       string    // who holds it, or crawled it
	Host         string    // the holder's host name
	Vantage      string    // the holder's socket address
	Claims       int       // times claimed: 1 for a zone crawled once
	LeaseUntil   time.Time // when the lease runs out; zero unless claimed
	Started      time.Time // when the last claim was made
	Finished     time.Time // when it was marked done
	NodesFound   int64     // nodes found inside the zone
	NodesReplied int64     // of them, nodes that answered
	QueriesSent  int64     // queries of the zone's crawl, the approach to the zone included
	Infohashes   int64     // distinct infohashes the zone's crawl sampled
	SizeEstimate float64   // the zone's estimated number of nodes
}

// figures are what a zone's crawl reports when it is marked done.
type figures struct {
	found, replied, queries, infohashes int64
	size                                float64
	learned                             crawler.Learned
}

// learnedSums sums, over the crawl's zones other than zone z, what their
// crawls learned: the final figures of the zones done, and what the
// crawls of the zones being crawled have learned so far.
const learnedSums = `SELECT coalesce(sum(resends_sent), 0), coalesce(sum(resends_answered), 0),
	coalesce(sum(followups_sent), 0), coalesce(sum(followups_answered), 0),
	coalesce(sum(resamples_sent), 0), coalesce(sum(resamples_answered), 0),
	coalesce(sum(checks_sent), 0), coalesce(sum(checks_found), 0)
	FROM crawl_zones WHERE crawl = $1 AND zone != $2`

// learned returns what the crawls of the crawl's zones other than z have
// learned (learnedSums): the zone's crawl starts from it.
func (c *Crawl) learned(ctx context.Context, z int) (crawler.Learned, error) {
	return scanLearned(c.pool.QueryRow(ctx, learnedSums, c.id, z))
}

// exchange writes what zone z's crawl has learned so far to its row, if
// this process still holds it, and returns what the other zones' crawls
// have learned (learnedSums).
func (c *Crawl) exchange(ctx context.Context, z int, l crawler.Learned) (crawler.Learned, error) {
	return scanLearned(c.pool.QueryRow(ctx, `WITH mine AS (UPDATE crawl_zones SET
		resends_sent = $4, resends_answered = $5, followups_sent = $6, followups_answered = $7,
		resamples_sent = $8, resamples_answered = $9, checks_sent = $10, checks_found = $11
		WHERE crawl = $1 AND zone = $2 AND holder = $3 AND state = 'claimed')
		`+learnedSums, c.id, z, c.holder,
		l.Resends.Sent, l.Resends.Answered, l.FollowUps.Sent, l.FollowUps.Answered,
		l.Resamples.Sent, l.Resamples.Answered, l.Checks.Sent, l.Checks.Answered))
}

// scanLearned reads a row of learnedSums.
func scanLearned(row pgx.Row) (crawler.Learned, error) {
	var l crawler.Learned
	err := row.Scan(&l.Resends.Sent, &l.Resends.Answered, &l.FollowUps.Sent, &l.FollowUps.Answered,
		&l.Resamples.Sent, &l.Resamples.Answered, &l.Checks.Sent, &l.Checks.Answered)
	return l, err
}

// seedCount is how many nodes a zone's crawl starts from when the crawl's
// other zones have seen that many in it: all of them are the zone's to
// ask anyway, and enough that some answer where half the contacts
// listed never do.
const seedCount = 32

// seeds returns nodes of zone z that the crawl has seen (listed by the
// crawls of other zones), for crawler.Config.Seeds.
func (c *Crawl) seeds(ctx context.Context, z Zone) ([]krpc.NodeInfo, error) {
	var started int64
	if err := c.pool.QueryRow(ctx, "SELECT started FROM crawl_runs WHERE id = $1", c.id).Scan(&started); err != nil {
		return nil, err
	}
	return c.cfg.Store.NodesInPrefix(ctx, z.Prefix, z.Bits, time.UnixMilli(started), seedCount)
}

// Zones returns the crawl's zones, in order.
func (c *Crawl) Zones(ctx context.Context) ([]Zone, error) {
	rows, err := c.pool.Query(ctx, `SELECT zone, prefix, bits, state, coalesce(holder, ''), coalesce(host, ''),
		coalesce(vantage, ''), claims, lease_until, started, finished, coalesce(nodes_found, 0), coalesce(nodes_replied, 0),
		coalesce(queries_sent, 0), coalesce(infohashes, 0), coalesce(size_estimate, 0)
		FROM crawl_zones WHERE crawl = $1 ORDER BY zone`, c.id)
	if err != nil {
		return nil, fmt.Errorf("shard: zones: %w", err)
	}
	defer rows.Close()
	var zs []Zone
	for rows.Next() {
		var (
			z                 Zone
			prefix            string
			lease, start, fin *int64
		)
		if err := rows.Scan(&z.Number, &prefix, &z.Bits, &z.State, &z.Holder, &z.Host, &z.Vantage, &z.Claims,
			&lease, &start, &fin, &z.NodesFound, &z.NodesReplied, &z.QueriesSent, &z.Infohashes, &z.SizeEstimate); err != nil {
			return nil, fmt.Errorf("shard: zones: %w", err)
		}
		if z.Prefix, err = krpc.ParseID(prefix); err != nil {
			return nil, fmt.Errorf("shard: zone %d: %w", z.Number, err)
		}
		z.LeaseUntil, z.Started, z.Finished = msTime(lease), msTime(start), msTime(fin)
		zs = append(zs, z)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("shard: zones: %w", err)
	}
	return zs, nil
}

// msTime converts a nullable Unix ms time; NULL is the zero time.
func msTime(ms *int64) time.Time {
	if ms == nil {
		return time.Time{}
	}
	return time.UnixMilli(*ms)
}

// claim claims a zone: one that is todo, or claimed with a lease that ran
// out (its crawler died or stalled), the lowest-numbered first. SKIP
// LOCKED lets processes claim at the same moment without waiting for
// each other or taking the same zone. ok is false when no zone is free.
func (c *Crawl) claim(ctx context.Context) (z Zone, ok bool, err error) {
	tx, err := c.pool.Begin(ctx)
	if err != nil {
		return z, false, err
	}
	defer tx.Rollback(ctx)
	now := c.now()
	err = tx.QueryRow(ctx, `SELECT zone, bits FROM crawl_zones
		WHERE crawl = $1 AND (state = 'todo' OR (state = 'claimed' AND lease_until <= `+nowSQL(2)+`))
		ORDER BY zone LIMIT 1 FOR UPDATE SKIP LOCKED`, c.id, now).Scan(&z.Number, &z.Bits)
	if errors.Is(err, pgx.ErrNoRows) {
		return z, false, nil
	}
	if err != nil {
		return z, false, err
	}
	err = tx.QueryRow(ctx, `UPDATE crawl_zones SET state = 'claimed', holder = $3, host = $4, vantage = $5,
		started = `+nowSQL(6)+`, lease_until = `+nowSQL(6)+` + $7, claims = claims + 1
		WHERE crawl = $1 AND zone = $2 RETURNING claims`,
		c.id, z.Number, c.holder, c.cfg.Host, c.vantage, now, c.cfg.Lease.Milliseconds()).Scan(&z.Claims)
	if err != nil {
		return z, false, err
	}
	if err := tx.Commit(ctx); err != nil {
		return z, false, err
	}
	z.Prefix, z.State, z.Holder, z.Host, z.Vantage = ZonePrefix(z.Number, z.Bits), StateClaimed, c.holder, c.cfg.Host, c.vantage
	return z, true, nil
}

// renew extends the lease on zone z by Config.Lease from now. held is
// false if the zone is no longer this process's: another process claimed
// it after the lease ran out.
func (c *Crawl) renew(ctx context.Context, z int) (held bool, err error) {
	tag, err := c.pool.Exec(ctx, `UPDATE crawl_zones SET lease_until = `+nowSQL(4)+` + $5
		WHERE crawl = $1 AND zone = $2 AND holder = $3 AND state = 'claimed'`,
		c.id, z, c.holder, c.now(), c.cfg.Lease.Milliseconds())
	return tag.RowsAffected() == 1, err
}

// done marks zone z done with its figures. held is false if the zone was
// no longer this process's (another claimed it; its figures will count).
// last is true if this was the crawl's last zone and this process is the
// one to record the crawl's end: the shared_crawls row is locked first,
// so that of two processes finishing the last two zones at once the
// second sees the first's zone done, and exactly one finishes.
func (c *Crawl) done(ctx context.Context, z int, f figures) (held, last bool, err error) {
	tx, err := c.pool.Begin(ctx)
	if err != nil {
		return false, false, err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SELECT 1 FROM shared_crawls WHERE crawl = $1 FOR UPDATE", c.id); err != nil {
		return false, false, err
	}
	now, l := c.now(), f.learned
	tag, err := tx.Exec(ctx, `UPDATE crawl_zones SET state = 'done', lease_until = NULL, finished = `+nowSQL(4)+`,
		nodes_found = $5, nodes_replied = $6, queries_sent = $7, infohashes = $8, size_estimate = $9,
		resends_sent = $10, resends_answered = $11, followups_sent = $12, followups_answered = $13,
		resamples_sent = $14, resamples_answered = $15, checks_sent = $16, checks_found = $17
		WHERE crawl = $1 AND zone = $2 AND holder = $3 AND state = 'claimed'`,
		c.id, z, c.holder, now, f.found, f.replied, f.queries, f.infohashes, f.size,
		l.Resends.Sent, l.Resends.Answered, l.FollowUps.Sent, l.FollowUps.Answered,
		l.Resamples.Sent, l.Resamples.Answered, l.Checks.Sent, l.Checks.Answered)
	if err != nil {
		return false, false, err
	}
	if tag.RowsAffected() != 1 {
		return false, false, nil
	}
	tag, err = tx.Exec(ctx, `UPDATE shared_crawls SET finished = `+nowSQL(2)+`, finisher = $3
		WHERE crawl = $1 AND finished IS NULL
		AND NOT EXISTS (SELECT 1 FROM crawl_zones WHERE crawl = $1 AND state != 'done')`, c.id, now, c.holder)
	if err != nil {
		return false, false, err
	}
	last = tag.RowsAffected() == 1
	return true, last, tx.Commit(ctx)
}

// status returns how many zones are not done and, if some are claimed,
// how long until the first of their leases runs out (0 if one already
// has).
func (c *Crawl) status(ctx context.Context) (open int, nextExpiry time.Duration, err error) {
	var ms *int64
	err = c.pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE state != 'done'),
		min(lease_until) FILTER (WHERE state = 'claimed') - `+nowSQL(2)+`
		FROM crawl_zones WHERE crawl = $1`, c.id, c.now()).Scan(&open, &ms)
	if ms != nil {
		nextExpiry = time.Duration(max(*ms, 0)) * time.Millisecond
	}
	return open, nextExpiry, err
}

// Totals are the combined figures of a shared crawl's zones.
type Totals struct {
	Crawl        int64   // the crawl_runs id
	Zones        int     // zones in all
	Done         int     // zones done
	Claims       int64   // claims in all: Zones if no crawler died
	NodesFound   int64   // sum of the zones' nodes found
	NodesReplied int64   // sum of the zones' nodes that answered
	QueriesSent  int64   // sum of the zones' queries
	Infohashes   int64   // sum of the zones' infohashes
	SizeEstimate float64 // sum of the zones' size estimates: the network's
}

// Totals returns the sums over the crawl's zones: over those done, so
// final once every zone is.
func (c *Crawl) Totals(ctx context.Context) (Totals, error) {
	t := Totals{Crawl: c.id}
	err := c.pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE state = 'done'), coalesce(sum(claims), 0),
		coalesce(sum(nodes_found), 0), coalesce(sum(nodes_replied), 0), coalesce(sum(queries_sent), 0),
		coalesce(sum(infohashes), 0), coalesce(sum(size_estimate), 0)
		FROM crawl_zones WHERE crawl = $1`, c.id).Scan(&t.Zones, &t.Done, &t.Claims, &t.NodesFound, &t.NodesReplied,
		&t.QueriesSent, &t.Infohashes, &t.SizeEstimate)
	if err != nil {
		return t, fmt.Errorf("shard: totals: %w", err)
	}
	return t, nil
}
