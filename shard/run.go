package shard

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lightdht/lightdht/crawler"
	"github.com/lightdht/lightdht/db"
	"github.com/lightdht/lightdht/observe"
)

// EventKind says what an Event reports.
type EventKind int

// The kinds of Event.
const (
	// EventClaimed: this process claimed Event.Zone and starts crawling it.
	EventClaimed EventKind = iota
	// EventDone: the zone is crawled and marked done; Event.Result is
	// its crawl's.
	EventDone
	// EventLost: the zone's lease ran out and another process claimed
	// it before this one finished; its figures are the other's.
	EventLost
	// EventWaiting: no zone is free; Event.Open zones are not done, and
	// the process waits Event.Wait before it looks again.
	EventWaiting
	// EventFinished: every zone is done; Event.Last says whether this
	// process recorded the crawl's end.
	EventFinished
)

// Event is a report of Run to Config.Progress.
type Event struct {
	Kind   EventKind
	Zone   Zone           // EventClaimed, EventDone, EventLost
	Result crawler.Result // EventDone, EventLost: the zone's crawl
	Open   int            // EventWaiting: zones not done
	Wait   time.Duration  // EventWaiting: the wait before the next look
	Last   bool           // EventFinished: this process recorded the end
}

// Summary is what Run returns: the crawl's totals and this process's
// part in them.
type Summary struct {
	Totals       // the crawl's, when Run returned
	Crawled int  // zones this process crawled and marked done
	Lost    int  // zones whose lease this process lost before it was done
	Queries int  // queries this process sent, lost and unfinished zones included
	Last    bool // this process marked the last zone done and recorded the crawl's end
	// Recovered: the crawl's finisher died before it recorded the end
	// (a lease ago or more), and this process recorded it.
	Recovered bool
}

// RecordedEnd reports whether this process recorded the crawl's end: as
// the finisher (Last), or for a finisher that died first (Recovered).
func (s Summary) RecordedEnd() bool { return s.Last || s.Recovered }

// tailReplies is how many replies a zone's crawl has had before an empty
// queue means its tail (Config.Overlap), not the approach to the zone or
// a pause between two waves of replies.
const tailReplies = 32

// errLeaseLost ends a zone's crawl whose lease another process took.
var errLeaseLost = errors.New("shard: lease lost")

// Run works zones of the crawl until every zone is done, then returns
// the crawl's totals; the process that marks the last zone done records
// the end of the crawl_runs row. It crawls up to Config.Parallel zones at
// once on the one socket. It joins Config.Store to the crawl first, and
// closes Config.Crawler.Conn when it returns. When ctx ends Run returns
// at once with ctx's error, leaving the zones it holds claimed: like a
// crawler that died, they are claimed again once their leases run out.
func (c *Crawl) Run(ctx context.Context) (Summary, error) {
	m := newMux(c.cfg.Crawler.Conn, c.rate(), c.cfg.Crawler.IPSpacing)
	defer m.close()
	var sum Summary
	if err := c.cfg.Store.JoinRun(c.id, c.cfg.Host, c.vantage); err != nil {
		return sum, fmt.Errorf("shard: %w", err)
	}
	wctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for range c.cfg.Parallel {
		wg.Go(func() {
			if err := c.worker(wctx, m, &sum); err != nil {
				cancel(err) // the first error stops the other workers
			}
		})
	}
	wg.Wait()
	if err := context.Cause(wctx); err != nil {
		return sum, err
	}
	var err error
	if sum.Totals, err = c.Totals(ctx); err != nil {
		return sum, c.stopped(ctx, err)
	}
	if !sum.Last {
		if sum.Recovered, err = c.recoverEnd(ctx); err != nil {
			return sum, c.stopped(ctx, err)
		}
	}
	c.report(Event{Kind: EventFinished, Last: sum.RecordedEnd()})
	return sum, nil
}

// rate is the process's query rate: the crawl template's.
func (c *Crawl) rate() float64 {
	if c.cfg.Crawler.Rate > 0 {
		return c.cfg.Crawler.Rate
	}
	return crawler.DefaultRate
}

// worker claims and crawls zones one after another until every zone is
// done (nil) or ctx ends or the database fails (the error).
//
// With Config.Overlap, a zone whose crawl has reached its tail goes on
// in the background while the worker claims the next; the worker waits
// for it before it starts a third, before it polls, and before it
// returns.
func (c *Crawl) worker(ctx context.Context, m *mux, sum *Summary) error {
	var prev chan error // the zone crawl in its tail, still running; nil: none
	waitPrev := func() error {
		if prev == nil {
			return nil
		}
		err := <-prev
		prev = nil
		return err
	}
	defer waitPrev()
	backoff := c.cfg.Poll
	for {
		z, ok, err := c.claim(ctx)
		if err != nil {
			return c.stopped(ctx, fmt.Errorf("shard: claim: %w", err))
		}
		if ok && !c.cfg.Overlap {
			backoff = c.cfg.Poll
			if err := c.work(ctx, m, z, sum, nil); err != nil {
				return err
			}
			continue
		}
		if ok {
			backoff = c.cfg.Poll
			tail, done := make(chan struct{}), make(chan error, 1)
			var once sync.Once
			go func() { done <- c.work(ctx, m, z, sum, func() { once.Do(func() { close(tail) }) }) }()
			select {
			case <-tail:
				if err := waitPrev(); err != nil {
					prev = done
					return err
				}
				prev = done
			case err := <-done:
				if err := errors.Join(waitPrev(), err); err != nil {
					return err
				}
			}
			continue
		}
		// The zone in its tail may be the last one open.
		if err := waitPrev(); err != nil {
			return err
		}
		open, next, err := c.status(ctx)
		if err != nil {
			return c.stopped(ctx, fmt.Errorf("shard: status: %w", err))
		}
		if open == 0 {
			return nil
		}
		// Wait for a lease to run out, or for the others to finish; a
		// todo zone not claimed is being claimed by someone this moment.
		wait := min(backoff, max(next, 10*time.Millisecond))
		c.report(Event{Kind: EventWaiting, Open: open, Wait: wait})
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return context.Cause(ctx)
		case <-t.C:
		}
		backoff = min(2*backoff, c.cfg.PollMax)
	}
}

// stopped returns ctx's cause if ctx has ended (the database call failed
// because of it), else err.
func (c *Crawl) stopped(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return err
}

// work crawls zone z, which this process has just claimed, renewing its
// lease meanwhile, and marks it done. An error ends Run: ctx ended (the
// zone is left claimed), or the database failed.
//
// tail, if set, is called (perhaps more than once) when the crawl has
// reached its tail: nothing left to send, queries in flight, past its
// first tailReplies replies.
func (c *Crawl) work(ctx context.Context, m *mux, z Zone, sum *Summary, tail func()) error {
	c.report(Event{Kind: EventClaimed, Zone: z})
	// The zone's crawl starts from what the crawls of the other zones
	// learned, those done and those being crawled, and goes on taking in
	// what the latter learn (sharer; the template's Learned added): the
	// network is the same, and a small zone would spend a good part of
	// its queries learning again that the nodes which time out have
	// gone, or that the checks find nothing.
	learned, err := c.learned(ctx, z.Number)
	if err != nil {
		return c.stopped(ctx, fmt.Errorf("shard: zone %d: %w", z.Number, err))
	}
	// It starts from the zone's nodes that the other zones' crawls saw
	// listed, if there are any, rather than walking in from the
	// bootstrap (crawler.Config.Seeds).
	seeds, err := c.seeds(ctx, z)
	if err != nil {
		return c.stopped(ctx, fmt.Errorf("shard: zone %d seeds: %w", z.Number, err))
	}
	zctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { c.keepLease(ctx, z.Number, stop, cancel) })
	sh := newSharer(learned)
	wg.Go(func() { c.publish(zctx, z.Number, sh, stop) })

	rec := &zoneRecorder{DB: c.cfg.Store, zone: crawler.Zone{Prefix: z.Prefix, Bits: z.Bits}, ctx: zctx}
	cfg := c.cfg.Crawler
	cfg.Conn, cfg.Zone, cfg.Recorder, cfg.IPSpacing = m.attach(), rec.zone, rec, m.ips
	cfg.Share, cfg.Seeds = sh.exchange, seeds
	if p := cfg.Progress; p != nil || tail != nil {
		// The template's Progress is called for every zone's crawl: one
		// call at a time.
		cfg.Progress = func(pr crawler.Progress) {
			if tail != nil && pr.Queued == 0 && pr.InFlight > 0 && pr.Replied >= tailReplies {
				tail()
			}
			if p != nil {
				c.mu.Lock()
				defer c.mu.Unlock()
				p(pr)
			}
		}
	}
	cr, err := crawler.New(cfg)
	var res crawler.Result
	if err == nil {
		res, err = cr.Run(zctx)
	}
	close(stop)
	wg.Wait()
	c.add(sum, func() { sum.Queries += res.Queries })
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if errors.Is(context.Cause(zctx), errLeaseLost) {
		c.add(sum, func() { sum.Lost++ })
		c.report(Event{Kind: EventLost, Zone: z, Result: res})
		return nil
	}
	if err != nil {
		return fmt.Errorf("shard: zone %d: %w", z.Number, err)
	}
	// The zone's visits are committed before it is marked done, so
	// that the visits' totals the last process counts include them.
	if err := c.cfg.Store.Flush(ctx); err != nil {
		return c.stopped(ctx, fmt.Errorf("shard: zone %d: %w", z.Number, err))
	}
	f := figures{found: int64(res.InZone), replied: rec.replied.Load(), queries: int64(res.Queries),
		infohashes: int64(res.Infohashes), size: res.SizeEstimate / float64(uint64(1)<<z.Bits), learned: res.Learned}
	held, last, err := c.done(ctx, z.Number, f)
	if err != nil {
		return c.stopped(ctx, fmt.Errorf("shard: zone %d done: %w", z.Number, err))
	}
	if !held {
		c.add(sum, func() { sum.Lost++ })
		c.report(Event{Kind: EventLost, Zone: z, Result: res})
		return nil
	}
	c.add(sum, func() { sum.Crawled++ })
	z.State, z.NodesFound, z.NodesReplied, z.QueriesSent, z.Infohashes, z.SizeEstimate =
		StateDone, f.found, f.replied, f.queries, f.infohashes, f.size
	c.report(Event{Kind: EventDone, Zone: z, Result: res})
	if last {
		c.add(sum, func() { sum.Last = true })
		return c.end(ctx)
	}
	return nil
}

// keepLease renews the lease on zone z every third of Config.Lease until
// stop is closed, and cancels the zone's crawl if the lease was lost. A
// failed renewal is retried at the next tick: the lease holds for two
// more.
func (c *Crawl) keepLease(ctx context.Context, z int, stop <-chan struct{}, cancel context.CancelCauseFunc) {
	t := time.NewTicker(c.cfg.Lease / 3)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		held, err := c.renew(ctx, z)
		switch {
		case err != nil:
			c.log.Warn().Err(err).Int("zone", z).Msg("lease renewal failed")
		case !held:
			cancel(errLeaseLost)
			return
		}
	}
}

// end records the end of the crawl_runs row: the sums of the zones'
// figures and the visits' totals, counted in the table that every
// process wrote.
func (c *Crawl) end(ctx context.Context) error {
	t, err := c.Totals(ctx)
	if err != nil {
		return err
	}
	err = c.cfg.Store.EndRun(c.id, db.RunCounts{Ended: c.clock(), NodesFound: t.NodesFound, NodesReplied: t.NodesReplied,
		Infohashes: t.Infohashes, QueriesSent: t.QueriesSent, SizeEstimate: t.SizeEstimate, CountVisits: true})
	if err != nil {
		return fmt.Errorf("shard: end of crawl %d: %w", c.id, err)
	}
	return nil
}

// recoverEnd records the end of a crawl whose finisher died between
// marking the last zone done and recording the end: every zone is done,
// crawl_runs.ended is still NULL, and the last zone was marked at least a
// lease ago (the finisher's time to record it). Each zone's visits were
// committed before it was marked done, so the totals are those the
// finisher would have recorded. It reports whether it recorded the end.
func (c *Crawl) recoverEnd(ctx context.Context) (bool, error) {
	var stale bool
	err := c.pool.QueryRow(ctx, `SELECT r.ended IS NULL AND s.finished IS NOT NULL AND s.finished <= `+nowSQL(2)+` - $3
		FROM shared_crawls s JOIN crawl_runs r ON r.id = s.crawl WHERE s.crawl = $1`,
		c.id, c.now(), c.cfg.Lease.Milliseconds()).Scan(&stale)
	if err != nil {
		return false, fmt.Errorf("shard: end of crawl %d: %w", c.id, err)
	}
	if !stale {
		return false, nil
	}
	if err := c.end(ctx); err != nil {
		return false, err
	}
	if _, err := c.pool.Exec(ctx, "UPDATE shared_crawls SET finisher = $2 WHERE crawl = $1", c.id, c.holder); err != nil {
		return true, fmt.Errorf("shard: end of crawl %d: %w", c.id, err)
	}
	return true, nil
}

// report calls Config.Progress, if set, one call at a time.
func (c *Crawl) report(e Event) {
	if c.cfg.Progress != nil {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.cfg.Progress(e)
	}
}

// add updates the summary that Run's workers share.
func (c *Crawl) add(sum *Summary, f func()) {
	c.sumMu.Lock()
	defer c.sumMu.Unlock()
	f()
}

// zoneRecorder passes a zone's crawl to the store, keeping only the
// visits of nodes inside the zone (the nodes met on the way to it are
// other zones' to visit), and counts those that answered. The visits of
// a crawl stopped before its end (ctx ended: the process stops, or the
// lease was lost) are dropped: the process that crawls the zone again
// records them, so that a node has one visit in the crawl.
type zoneRecorder struct {
	*db.DB
	zone    crawler.Zone
	ctx     context.Context // the zone's crawl
	replied atomic.Int64
}

// RecordVisit records v if its node lies in the zone and the zone's
// crawl was not stopped.
func (r *zoneRecorder) RecordVisit(v observe.Visit) {
	if r.ctx.Err() != nil || v.Node.ID.CommonPrefixLen(r.zone.Prefix) < r.zone.Bits {
		return
	}
	if v.Outcome == observe.OutcomeReplied || v.Outcome == observe.OutcomeError {
		r.replied.Add(1)
	}
	r.DB.RecordVisit(v)
}
