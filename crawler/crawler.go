package crawler

import (
	"context"
	"fmt"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/lightdht/lightdht/krpc"
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
}

// Result summarises a finished crawl.
type Result struct {
	Discovered   int     // distinct node addresses seen, bogons included
	Queried      int     // nodes queried
	Replied      int     // nodes that answered (a KRPC error is an answer)
	Timeouts     int     // nodes that never answered
	Waiting      int     // queries still queued when the crawl ended (by Idle or ctx); 0 after a crawl that ran dry
	Bogons       int     // addresses not queried: private, loopback, reserved, …
	OutOfZone    int     // nodes outside Config.Zone, not queried
	Queries      int     // queries sent, resends included
	Resends      int     // queries resent after a timeout (see Config.Retries)
	Packets      uint64  // packets sent, resends and replies included
	Samples      int     // BEP 51 replies with samples
	Infohashes   int     // distinct infohashes sampled
	PeerQueries  int     // get_peers sent for harvested infohashes (Config.Peers)
	Peers        int     // peers received for them (distinct per infohash)
	Incoming     int     // queries received (Config.Respond)
	Passive      int     // distinct infohashes of incoming get_peers and announce_peer (Config.Respond)
	InZone       int     // nodes found inside Config.Zone
	SizeEstimate float64 // zone crawls: InZone x 2^Bits; 0 otherwise
	Duration     time.Duration
}

// result is a transport callback's report to the event loop.
type result struct {
	idx     int32
	ih      krpc.ID // get_peers of the peers phase
	method  string
	nearest bool // the query asked for the node's nearest neighbours
	resend  bool // the query resent one that timed out
	resp    krpc.Response
	err     error
}

// replyBufferBytes is the receive buffer allowed per query in flight: a
// full Ethernet MTU.
const replyBufferBytes = 1500

// Crawler runs one crawl. Create it with New and run it with Run.
type Crawler struct {
	cfg  Config
	tr   *krpc.Transport
	resp *responder // nil unless Config.Respond
	log  zerolog.Logger
	lim  *rate.Limiter

	// Owned by the event loop.
	nodes     []node
	index     map[addrKey]int32
	ready     []int32 // FIFO of nodes to query now
	later     delayHeap
	lastIP    map[[16]byte]int64 // last query time per IP, pruned as it ages
	inflight  int
	results   chan result
	res       Result
	lastNew   time.Time
	ihs       map[krpc.ID]struct{}
	start     time.Time
	zoneFound int                      // nodes discovered inside the zone so far
	peerSeen  map[peerSeenKey]struct{} // peers phase: peers already counted
	bestCPL   int                      // most bits any node seen shares with the zone's prefix
	perDepth  [krpc.IDLen * 8]uint8    // farther-bucket queries forced at each depth
	passTwo   bool                     // the second pass has started
	gapTarget map[int32]krpc.ID        // nodes queued to be asked about an empty region, and its target
	gapProbed map[gapKey]struct{}      // regions already asked about (see fillGaps)

	// Resends decided, answered, answered or timed out, and skipped: see
	// resendPays.
	resends, resendReplies, resendsDone, resendsSkipped int
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
	burst := max(1, int(cfg.Rate/10))
	return &Crawler{
		cfg:     cfg,
		tr:      tr,
		resp:    resp,
		log:     cfg.Logger.With().Str("component", "crawler").Logger(),
		lim:     rate.NewLimiter(rate.Limit(cfg.Rate), burst),
		index:   make(map[addrKey]int32),
		lastIP:  make(map[[16]byte]int64),
		results: make(chan result, cfg.MaxInFlight),
		ihs:     make(map[krpc.ID]struct{}),
	}, nil
}

// Run crawls until the crawl is done (nothing left to query, or no new
// node for Config.Idle) or ctx ends, and returns what it found. The socket
// is closed when Run returns. A crawl ended by ctx returns its result with
// ctx's error.
func (c *Crawler) Run(ctx context.Context) (Result, error) {
	c.start = time.Now()
	c.lastNew = c.start
	served := make(chan error, 1)
	go func() { served <- c.tr.Serve(context.Background()) }()
	defer func() {
		c.tr.Close()
		<-served
	}()

	for _, a := range c.cfg.Bootstrap {
		c.discover(krpc.NodeInfo{Addr: a}, true)
	}

	wake := time.NewTimer(0)
	defer wake.Stop()
	tick := time.NewTicker(c.cfg.ProgressEvery)
	defer tick.Stop()
	lastQueries, lastTick := 0, c.start
	var heard <-chan krpc.NodeInfo // nil, so never ready, unless Respond
	if c.resp != nil {
		heard = c.resp.heard
	}
	var runErr error
loop:
	for {
		next := c.dispatch()
		if c.finished() {
			break
		}
		if !next.IsZero() {
			wake.Reset(time.Until(next))
		}
		select {
		case r := <-c.results:
			c.handle(r)
		case ni := <-heard:
			c.discover(ni, false)
		case <-wake.C:
		case now := <-tick.C:
			c.report(now, &lastQueries, &lastTick)
		case <-ctx.Done():
			runErr = fmt.Errorf("crawler: %w", context.Cause(ctx))
			break loop
		}
	}
	if runErr == nil && c.cfg.Infohashes && c.cfg.Peers {
		runErr = c.peersPhase(ctx)
	}
	// Let the queries in flight finish (or fail as the transport closes)
	// so that every sighting is recorded.
	c.tr.Close()
	for c.inflight > 0 {
		c.handle(<-c.results)
	}
	c.finalize()
	if c.cfg.Progress != nil {
		var q int
		t := c.start
		c.report(time.Now(), &q, &t)
	}
	return c.res, runErr
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
	if c.inflight == 0 && len(c.ready) == 0 && c.later.Len() == 0 {
		return !c.fillGaps() && !c.secondPass()
	}
	return time.Since(c.lastNew) >= c.cfg.Idle
}

func (c *Crawler) report(now time.Time, lastQueries *int, lastTick *time.Time) {
	if c.cfg.Progress == nil {
		return
	}
	p := Progress{Discovered: c.res.Discovered, Replied: c.res.Replied, Queued: len(c.ready) + c.later.Len(),
		InFlight: c.inflight, Queries: c.res.Queries, Elapsed: now.Sub(c.start)}
	if dt := now.Sub(*lastTick).Seconds(); dt > 0 {
		p.QPS = float64(c.res.Queries-*lastQueries) / dt
	}
	if p.QPS > 0 {
		p.Remaining = time.Duration(float64(p.Queued) / p.QPS * float64(time.Second))
	}
	*lastQueries, *lastTick = c.res.Queries, now
	c.cfg.Progress(p)
}

// finalize fills in the result's totals.
func (c *Crawler) finalize() {
	c.res.Duration = time.Since(c.start)
	c.res.Waiting = len(c.ready) + c.later.Len()
	c.res.Packets = c.tr.Stats().PacketsSent
	c.res.Infohashes = len(c.ihs)
	c.res.Resends = c.resends
	if c.resp != nil {
		c.res.Incoming = int(c.resp.queries.Load())
		c.res.Passive = c.resp.infohashes()
	}
	for i := range c.nodes {
		n := &c.nodes[i]
		if n.queried {
			c.res.Queried++
		}
		if n.state == stFailed {
			c.res.Timeouts++
		}
		// A skipped node inside the zone can only be a bogon.
		if n.inZone && n.state != stSkipped {
			c.res.InZone++
		}
	}
	if c.cfg.Zone.Bits > 0 {
		c.res.SizeEstimate = float64(c.res.InZone) * float64(uint64(1)<<c.cfg.Zone.Bits)
	}
}
