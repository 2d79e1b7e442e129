package crawler

import (
	"context"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/lightdht/lightdht/krpc"
	"github.com/lightdht/lightdht/observe"
	"github.com/lightdht/lightdht/table"
)

// Progress is a snapshot of a running crawl.
type Progress struct {
	Discovered int           // distinct node addresses seen
	Replied    int           // nodes that answered
	Queued     int           // nodes waiting for a query
	InFlight   int           // queries awaiting a reply
	Queries    int           // queries sent, resends included
	QPS        float64       // queries per second over the last period
	Elapsed    time.Duration // since the crawl started
	Remaining  time.Duration // queued work at the current rate; 0 if unknown
	Rate       float64       // queries per second the sender allows now: Config.Rate, or less while the adaptive sender holds back
}

// Result summarises a finished crawl.
type Result struct {
	Discovered   int           // distinct node addresses seen, bogons included
	Queried      int           // nodes queried
	Replied      int           // nodes that answered (a KRPC error is an answer)
	Timeouts     int           // nodes that never answered
	Waiting      int           // queries still queued when the crawl ended (by Idle or ctx); 0 after a crawl that ran dry
	Bogons       int           // addresses not queried: private, loopback, reserved, …
	OutOfZone    int           // nodes outside Config.Zone, not queried
	Queries      int           // queries sent, resends included
	Resends      int           // queries resent after a timeout (see Config.Retries), a timed-out sample_infohashes as a find_node
	Redeemed     int           // of those, resends held back at first and sent once resends were seen to pay (see Config.Retries)
	Packets      uint64        // packets sent, resends and replies included
	Samples      int           // BEP 51 replies with samples
	Infohashes   int           // distinct infohashes sampled
	Visits       int           // revisit runs (Config.Nodes): visits made, answered or not
	FailedVisits int           // revisit runs: visits that timed out
	GivenUp      int           // revisit runs: nodes dropped after Config.RevisitGiveUp down
	PeerQueries  int           // get_peers sent for harvested infohashes (Config.Peers)
	Peers        int           // peers received for them (distinct per infohash)
	Incoming     int           // queries received (Config.Respond)
	Passive      int           // distinct infohashes of incoming get_peers and announce_peer (Config.Respond)
	InZone       int           // nodes found inside Config.Zone
	SizeEstimate float64       // zone crawls: InZone x 2^Bits; 0 otherwise
	Duration     time.Duration // from Run's start to its end

	// The second pass's checks (see Crawler.secondPass): nodes it asked
	// for their nearest neighbours, and those it left unasked once the
	// checks had stopped finding new answering nodes.
	Checks, ChecksLeft int

	// Learned is what this crawl learned of how its second queries pay
	// (Config.Learned left out): the next crawl from the same socket may
	// start from it, summed with what came before (Learned.Add).
	Learned Learned

	// Sanitizing (see the package documentation): contacts not queried
	// because only discounted nodes listed them; nodes discounted (each
	// visit says why); replies that listed implausibly close contacts;
	// and, in an infohash crawl, nodes asked find_node before
	// sample_infohashes because silent contacts outnumbered BEP 51 ones.
	Discounted          int
	DiscountedReporters int
	Implausible         int
	FindNodeFirst       int

	// Zone crawls estimate two sizes of the whole network, each with a
	// 95% interval for the sampling of the ID space by the zone (see
	// zoneInterval); all are 0 otherwise.
	//
	// SizeEstimate counts every contact listed inside the zone, whether
	// it answered or not (bogons left out): on the live DHT about half
	// of those never answer, and fake contacts (poisoners list IDs next
	// to any target, and so inside any zone) inflate it without bound.
	// AnsweringEstimate counts only the nodes that answered, the set a
	// census finds: it is the one to quote as the size of the DHT. It is
	// short by the share of the zone's answering nodes the crawl missed
	// (about 0.5% on the synthetic live-like network: docs/crawler.md)
	// and by the nodes away when they were asked.
	SizeLow, SizeHigh float64 // SizeEstimate's 95% interval
	ZoneAnswering     int     // nodes inside the zone that answered
	// AnsweringEstimate is ZoneAnswering x 2^Bits.
	AnsweringEstimate           float64
	AnsweringLow, AnsweringHigh float64 // its 95% interval
}

// result is a transport callback's report to the event loop, sent on
// Crawler.results; the event loop alone reads it.
type result struct {
	idx     int32
	ih      krpc.ID // get_peers of the peers phase
	method  string
	target  krpc.ID // the enumeration's find_node or sample_infohashes target
	nearest bool    // the query asked for the node's nearest neighbours
	resend  bool    // the query resent one that timed out
	// followUp: a find_node resent for a sample_infohashes that timed
	// out (reply.go: timeout).
	followUp bool
	sent     int64 // when the query was sent, Unix nanoseconds of Config.Now
	resp     krpc.Response
	err      error
}

// replyBufferBytes is the receive buffer allowed per query in flight: a
// full Ethernet MTU.
const replyBufferBytes = 1500

// Crawler runs one crawl. Create it with New and run it with Run.
//
// A Crawler is not safe for concurrent use. Run drives it from one
// goroutine, the event loop, which owns every piece of its mutable state;
// the transport's callbacks only post results to the loop (results), and
// the responder, which answers on the transport's read goroutine, only
// posts the queriers it hears (responder.heard) and keeps its own locked
// state.
type Crawler struct {
	// Set by New, then only read.
	cfg     Config
	tr      *krpc.Transport
	resp    *responder // nil unless Config.Respond; guarded by its own locks
	log     zerolog.Logger
	results chan result // from the transport's callbacks; room for MaxInFlight

	// Everything below is owned by the event loop.

	// The nodes (nodes.go).
	nodes nodeTable // every address seen, in the order found
	index addrIndex // address to index in nodes
	// byID is every node with a known ID in ID order, as inIDOrder(nil)
	// gave it when nodes held byIDLen of them and IDs had changed
	// idChanges times (allIDOrder).
	byID        []int32
	byIDLen     int32
	byIDChanges int
	idChanges   int    // IDs learned or changed since the crawl began
	warmed      uint64 // what index.warm read, kept so that its reads stay

	// Scheduling (schedule.go).
	q        queue // the enumeration's nodes waiting for a query
	pace     pacer // rate and per-IP limits, for both phases
	inflight int   // queries awaiting a reply, both phases

	// Visits (visits.go): the Recorder's RecordVisit, nil if it has
	// none or Config.NoVisits; the "v" strings seen, interned.
	visits     observe.VisitRecorder
	versions   []string
	versionIdx map[string]uint16

	// Revisit runs (revisit.go): per node, beside nodes; nil in a crawl.
	revisit []revisitState

	// Progress and the result.
	res        Result
	start      time.Time            // when Run began
	lastNew    time.Time            // when the last new node was found (see Config.Idle)
	idleFrom   time.Time            // when Idle started the gap probes or checks of a tail that waits (see finished)
	lastReport progressMark         // the last progress report's count and time
	ihs        map[krpc.ID]struct{} // infohashes sampled

	// Zone and target choice (target.go).
	bootHeld  bool                  // the crawl started from Config.Seeds and has not asked Bootstrap
	zoneFound int                   // nodes that answered from inside the zone so far
	bestCPL   int                   // most bits any node that answered shares with the zone's prefix
	perDepth  [krpc.IDLen * 8]uint8 // farther-bucket queries forced at each depth

	// Sanitizing (sanitize.go).
	san sanitizer

	// Coverage (coverage.go).
	passTwo    bool                // the second pass has started
	checks     []int32             // its nodes not yet queued, in the order to ask them
	stale      int                 // checks queued since a new node last answered
	poolStale  int                 // checks, its own and those of the crawls beside it (Config.Share), since a new node last answered in any (poolDone)
	checkFinds int                 // new nodes that answered during the second pass
	recentAsk  float64             // checks queued, each weighing less by 1/checkWindow as each new one is (checksPay)
	recentFind float64             // new nodes of the second pass, weighed as recentAsk
	patience   int                 // the least run of checks without a new node after which the rest are left
	checkRun   int                 // checkPatience of the nodes lined up: the least patience
	gapTarget  map[int32]krpc.ID   // nodes queued to be asked about an empty region, and its target
	gapProbed  map[gapKey]struct{} // regions already asked about (see fillGaps)

	// The peers phase (peers.go).
	peerSeen map[peerSeenKey]struct{} // peers already counted

	// Resends sent, and the outcomes of resends and of second samples to
	// nodes that ignored the first (reply.go: resendPays, resample).
	resends   int
	resent    payRule
	held      []int32 // nodes whose timed-out query c.resent held back, to resend should resends pay (redeem)
	followed  payRule
	resampled payRule
	// What the rules started from, and what Config.Share last returned
	// (reply.go: share): the rules' counts less priors are the crawl's
	// own.
	priors Learned
	others Learned
}

// New checks cfg and prepares a crawl. It starts nothing.
func New(cfg Config) (*Crawler, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	var (
		resp    *responder
		handler krpc.Handler
	)
	if cfg.Respond {
		if resp, err = newResponder(cfg); err != nil {
			return nil, fmt.Errorf("crawler: %w", err)
		}
		handler = resp
	}
	if rb, ok := cfg.Conn.(interface{ SetReadBuffer(int) error }); ok {
		if err := rb.SetReadBuffer(cfg.MaxInFlight * replyBufferBytes); err != nil {
			cfg.Logger.Warn().Err(err).Msg("crawler: could not size the receive buffer")
		}
	}
	// The crawler resends through its own queue, so that a resend obeys
	// the per-IP interval like any other query.
	tr, err := krpc.New(krpc.Config{
		Conn:     cfg.Conn,
		Handler:  handler,
		Timeout:  cfg.Timeout,
		Retries:  krpc.NoRetries,
		Version:  cfg.Version,
		ReadOnly: !cfg.Respond, // BEP 43: by default the crawler answers no queries
		Logger:   cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("crawler: %w", err)
	}
	visits, _ := cfg.Recorder.(observe.VisitRecorder)
	if cfg.NoVisits {
		visits = nil
	}
	return &Crawler{
		visits:     visits,
		versionIdx: make(map[string]uint16),
		cfg:        cfg,
		tr:         tr,
		resp:       resp,
		log:        cfg.Logger.With().Str("component", "crawler").Logger(),
		results:    make(chan result, cfg.MaxInFlight),
		pace:       newPacer(cfg),
		ihs:        make(map[krpc.ID]struct{}),
		resent:     learnedRule(cfg.Learned.Resends).holding(len(cfg.Nodes) == 0 && !cfg.Continuous),
		followed:   learnedRule(cfg.Learned.FollowUps).withWorth(followWorth),
		resampled:  learnedRule(cfg.Learned.Resamples),
		priors:     cfg.Learned.scaled(),
	}, nil
}

// Run crawls until the crawl is done (nothing left to query, or no new
// node for Config.Idle) or ctx ends, and returns what it found. With
// Config.Nodes it revisits them instead, until ctx ends or every node has
// been given up (see Known). The socket
// is closed when Run returns. A crawl ended by ctx returns its result with
// ctx's error.
func (c *Crawler) Run(ctx context.Context) (Result, error) {
	c.start = c.cfg.Now()
	c.lastNew = c.start
	c.lastReport = progressMark{at: c.start}
	served := make(chan error, 1)
	go func() { served <- c.tr.Serve(context.Background()) }()
	defer func() {
		c.tr.Close()
		<-served
	}()

	tick := time.NewTicker(c.cfg.ProgressEvery)
	defer tick.Stop()
	var runErr error
	if len(c.cfg.Nodes) > 0 {
		ph := c.revisitPhase()
		ph.tick = tick.C
		runErr = c.loop(ctx, ph)
	} else {
		c.bootHeld = c.seed()
		if !c.bootHeld {
			c.bootstrap()
		}
		enum := c.enumeration()
		enum.tick = tick.C
		runErr = c.loop(ctx, enum)
		if runErr == nil {
			runErr = c.drain(ctx)
		}
	}
	if runErr == nil && c.cfg.Infohashes && c.cfg.Peers {
		if peers := c.peersPhase(); peers != nil {
			runErr = c.loop(ctx, peers)
		}
	}
	// Let the queries in flight finish (or fail as the transport closes)
	// so that every sighting is recorded.
	c.tr.Close()
	for c.inflight > 0 {
		c.handle(<-c.results)
	}
	c.finalize()
	c.emitVisits()
	if c.cfg.Progress != nil {
		c.lastReport = progressMark{at: c.start} // the last report covers the whole crawl
		c.report(c.cfg.Now())
	}
	return c.res, runErr
}

// drain waits for the enumeration's queries in flight when it ended by
// Config.Idle: their answers are wanted (a slow node that answers its
// last query is answering, not silent), so each is waited for until it is
// answered or times out, while nothing new is sent. Resends that its
// timeouts queue are not sent; they count as Waiting.
func (c *Crawler) drain(ctx context.Context) error {
	for c.inflight > 0 {
		select {
		case r := <-c.results:
			c.handle(r)
			c.share()
		case <-ctx.Done():
			return fmt.Errorf("crawler: %w", context.Cause(ctx))
		}
	}
	return nil
}

// Close releases a Crawler that will not be run: it closes the socket.
// Run closes it itself; Close after Run does nothing.
func (c *Crawler) Close() error { return c.tr.Close() }

// TransportStats returns a snapshot of the counters of the crawler's
// transport. It is safe to call at any time, during Run or after Close.
func (c *Crawler) TransportStats() krpc.Stats { return c.tr.Stats() }

// phase is one stage of a crawl as the event loop runs it: the
// enumeration of the nodes, then, with Config.Peers, the peers phase.
type phase struct {
	queue *queue                    // the phase's items waiting to be sent
	ip    func(item int32) [16]byte // the IP an item's query goes to
	send  func(item int32)          // sends an item's query
	done  func() bool               // reports whether the phase is over
	skip  func(item int32) bool     // drops an item instead of sending it, reporting whether it did; nil: none
	more  func() bool               // queues one more item when the queue has none ready, reporting whether it did; nil: none
	heard <-chan krpc.NodeInfo      // queriers to discover; nil: none
	tick  <-chan time.Time          // when to report progress; nil: never
}

// loop is the crawl's event loop: it runs ph until ph is done or ctx
// ends. It sends what the limits allow (dispatch), then waits for a
// query's result, a querier heard, a progress tick or the time the
// limits next allow a query.
func (c *Crawler) loop(ctx context.Context, ph *phase) error {
	wake := time.NewTimer(0)
	defer wake.Stop()
	c.share() // what the crawls beside this one learned before it started
	for {
		next := c.dispatch(ph)
		if ph.done() {
			return nil
		}
		if !next.IsZero() {
			wake.Reset(next.Sub(c.cfg.Now()))
		}
		select {
		case r := <-c.results:
			c.handle(r)
			c.share()
		case ni := <-ph.heard:
			c.discover(ni, false)
		case <-wake.C:
		case <-ph.tick:
			c.report(c.cfg.Now())
		case <-ctx.Done():
			return fmt.Errorf("crawler: %w", context.Cause(ctx))
		}
	}
}

// bootstrap queues Config.Bootstrap's addresses.
func (c *Crawler) bootstrap() {
	for _, a := range c.cfg.Bootstrap {
		c.discover(krpc.NodeInfo{Addr: a}, true)
	}
}

// seed queues the Config.Seeds that lie in the zone, and reports whether
// there were any.
func (c *Crawler) seed() bool {
	seeded := false
	for _, s := range c.cfg.Seeds {
		if s.ID.IsZero() || !c.cfg.Zone.contains(s.ID) {
			continue
		}
		if idx, isNew := c.discover(s, false); idx >= 0 && isNew {
			seeded = true
		}
	}
	return seeded
}

// enumeration returns the phase that finds the nodes: it queries each
// node of c.q, and with Config.Respond discovers the queriers heard.
func (c *Crawler) enumeration() *phase {
	ph := &phase{
		queue: &c.q,
		ip:    func(idx int32) [16]byte { return c.nodes.at(idx).key.ip() },
		send:  c.send,
		done:  c.finished,
		skip:  c.skipDiscounted,
		more:  c.nextCheck,
	}
	if c.resp != nil {
		ph.heard = c.resp.heard
	}
	return ph
}

// finished reports whether a full or zone crawl is over. Each time the
// queue runs dry, the regions of the ID space where nodes are missing are
// asked about (fillGaps); once they are, a second pass asks nodes that
// replied for their nearest neighbours (secondPass), within the query
// budget.
func (c *Crawler) finished() bool {
	if c.cfg.Continuous {
		return false
	}
	if c.inflight == 0 && c.q.len() == 0 && len(c.checks) == 0 {
		if c.bootHeld {
			// The seeds did not lead into the zone: start again from
			// the bootstrap.
			c.bootHeld = false
			if c.zoneFound < table.DefaultK {
				c.bootstrap()
				if c.q.len() > 0 {
					return false
				}
			}
		}
		return !c.fillGaps() && !c.secondPass()
	}
	now := c.cfg.Now()
	since := c.lastNew
	if c.idleFrom.After(since) {
		since = c.idleFrom
	}
	if now.Sub(since) < c.cfg.Idle {
		return false
	}
	// Idle has run out in the first pass's tail, where all that is left
	// waits for its time: a host with many IDs (a sybil, a NAT) takes one
	// query per PerIPInterval, a BEP 51 node its interval. Ending there
	// would skip the gap probes and the checks, which on a network as
	// dirty as the live one find about 0.6% of the answering nodes, and
	// whether a crawl had them would turn on how long its last host's
	// queue happened to be. So they start now, beside that wait, and
	// Idle counts again from here.
	if !c.passTwo && len(c.q.ready) == 0 {
		// Both at once, so that this happens once: the probes go out
		// first, the checks when nothing else is ready (nextCheck).
		probes := c.fillGaps()
		if checks := c.secondPass(); probes || checks {
			c.idleFrom = now
			return false
		}
	}
	return true
}

// progressMark is the query count and time of a progress report, from
// which the next one measures the query rate.
type progressMark struct {
	queries int
	at      time.Time
}

// report calls Config.Progress, if set, with the crawl's state at now.
func (c *Crawler) report(now time.Time) {
	if c.cfg.Progress == nil {
		return
	}
	p := Progress{Discovered: c.res.Discovered, Replied: c.res.Replied, Queued: c.q.len(),
		InFlight: c.inflight, Queries: c.res.Queries, Elapsed: now.Sub(c.start), Rate: float64(c.pace.lim.Limit())}
	if dt := now.Sub(c.lastReport.at).Seconds(); dt > 0 {
		p.QPS = float64(c.res.Queries-c.lastReport.queries) / dt
	}
	if p.QPS > 0 {
		p.Remaining = time.Duration(float64(p.Queued) / p.QPS * float64(time.Second))
	}
	c.lastReport = progressMark{queries: c.res.Queries, at: now}
	c.cfg.Progress(p)
}

// finalize fills in the result's totals.
func (c *Crawler) finalize() {
	c.res.Duration = c.cfg.Now().Sub(c.start)
	c.res.Waiting = c.q.len() + len(c.checks)
	c.res.Packets = c.tr.Stats().PacketsSent
	c.res.Infohashes = len(c.ihs)
	c.res.Resends = c.resends
	c.res.Learned = c.learned()
	if c.resp != nil {
		c.res.Incoming = int(c.resp.queries())
		c.res.Passive = c.resp.infohashes()
	}
	for i := range c.nodes.len() {
		n := c.nodes.at(i)
		if n.queried {
			c.res.Queried++
		}
		if n.state == stFailed {
			c.res.Timeouts++
		}
		// A skipped node inside the zone can only be a bogon.
		if n.inZone && n.state != stSkipped {
			c.res.InZone++
			if n.replied {
				c.res.ZoneAnswering++
			}
		}
	}
	if b := c.cfg.Zone.Bits; b > 0 {
		scale := float64(uint64(1) << b)
		c.res.SizeEstimate = float64(c.res.InZone) * scale
		c.res.SizeLow, c.res.SizeHigh = zoneInterval(c.res.InZone, b)
		c.res.AnsweringEstimate = float64(c.res.ZoneAnswering) * scale
		c.res.AnsweringLow, c.res.AnsweringHigh = zoneInterval(c.res.ZoneAnswering, b)
	}
}
