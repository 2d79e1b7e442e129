package crawler

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/lightdht/lightdht/bep42"
	"github.com/lightdht/lightdht/krpc"
	"github.com/lightdht/lightdht/observe"
	"github.com/lightdht/lightdht/table"
)

// Defaults of Config.
const (
	DefaultRate          = 250             // queries per second, all nodes together
	DefaultPerIPInterval = 2 * time.Second // between two queries to one IP
	DefaultMaxInFlight   = 512
	DefaultTimeout       = 2 * time.Second // per attempt
	DefaultIdle          = 30 * time.Second
	DefaultRevisit       = 30 * time.Minute
	DefaultProgressEvery = time.Second
)

// MaxInFlightLimit is the largest Config.MaxInFlight.
const MaxInFlightLimit = 1 << 16

// Recorder receives what the crawl sees. *db.DB implements it. With
// Config.Respond, Observe is also called for incoming queries, from
// another goroutine than the crawl's, so it must be safe for concurrent
// use.
type Recorder interface {
	// Observe receives every sighting of a node.
	Observe(observe.Sighting)
	// RecordSample receives a BEP 51 reply: the number of infohashes the
	// node holds, the interval it asked for, and the sample.
	RecordSample(node krpc.NodeInfo, t time.Time, num, intervalS int, samples []krpc.ID)
}

// Zone restricts a crawl to the node IDs that share their first Bits bits
// with Prefix.
type Zone struct {
	Prefix krpc.ID
	Bits   int
}

// contains reports whether id lies in the zone.
func (z Zone) contains(id krpc.ID) bool {
	return z.Bits == 0 || id.CommonPrefixLen(z.Prefix) >= z.Bits
}

// Config configures a crawl. Conn and Bootstrap are required; every other
// zero value selects the documented default.
type Config struct {
	// Conn is the socket the crawl uses; the crawler owns and closes it.
	Conn net.PacketConn
	// Bootstrap lists the addresses the crawl starts from.
	Bootstrap []netip.AddrPort
	// ID is the crawler's node ID, used in every query. Zero: random.
	ID krpc.ID

	// Rate caps the queries sent per second (resends included). Zero:
	// DefaultRate.
	Rate float64
	// PerIPInterval is the least time between two queries to one IP
	// address. Zero: 2 seconds. Libtorrent blocks sources that send more
	// than 5 queries a second.
	PerIPInterval time.Duration
	// MaxInFlight bounds the queries awaiting a reply. Zero: 512. New
	// sizes the receive buffer of a Conn that has SetReadBuffer (as
	// *net.UDPConn has) to hold a full-size reply to each of them, so
	// that a burst of replies is not dropped before it is read. The OS
	// may cap it (Linux: at net.core.rmem_max).
	MaxInFlight int
	// Timeout is the wait for each attempt; Retries the resends after a
	// timed-out one, which go through the same queue and per-IP interval
	// as every query. Zero: 2 seconds and 1 resend; negative Retries:
	// none. Once 100 resends have been sent, if fewer than 2% of them
	// were answered (the nodes that time out have gone, not lost a
	// packet), only one timed-out query in 10 is resent.
	Timeout time.Duration
	Retries int

	// Idle ends a full crawl once no new node has been found for this
	// long (a crawl also ends when nothing is left to query). Zero: 30
	// seconds. The context's deadline bounds the crawl in any case.
	Idle time.Duration
	// Continuous keeps crawling: every node that replied is asked again
	// every Revisit (zero: 30 minutes), to observe uptime and churn, until
	// the context ends.
	Continuous bool
	Revisit    time.Duration

	// Zone, when Bits > 0, restricts the crawl to one ID prefix and
	// estimates the size of the whole network from its density.
	Zone Zone

	// Infohashes asks each node with BEP 51 sample_infohashes (which also
	// returns nodes), honouring each node's interval, and falls back to
	// find_node for nodes that do not support it.
	Infohashes bool

	// Peers, with Infohashes, ends the crawl by asking for the peers of
	// each harvested infohash: get_peers to the 8 nodes closest to it
	// among those that replied (the crawl knows them all, so no lookup
	// is needed), under the same rate and per-IP limits. The peers go to
	// the Recorder's RecordPeer when it has one. PeersLimit caps the
	// infohashes asked about; zero means all.
	Peers      bool
	PeersLimit int

	// Respond makes the crawler answer queries instead of being a
	// read-only node (BEP 43, the default). Other nodes then add it to
	// their routing tables and send it queries, as they do to any node:
	// each incoming query is recorded as a sighting, with the infohash of
	// every get_peers and announce_peer, and a querier the crawl did not
	// know is queued to be crawled. The crawler answers ping, find_node
	// and get_peers from a routing table of the nodes that answered it,
	// keeps announced peers for 30 minutes and serves them, and answers
	// every other method with error 204. Its replies share a cap of Rate
	// per second, on top of the transport's amplification and per-/24
	// caps. Nodes learn of a responding crawler only as the crawl goes
	// on, so this pays off mostly in continuous crawls.
	Respond bool

	// TestNet allows queries to loopback, private and other addresses
	// that do not belong on the public DHT. Only for local test networks.
	TestNet bool

	// Recorder receives sightings and samples. Nil: none.
	Recorder Recorder
	// Progress, if set, is called every ProgressEvery (zero: 1 second) and
	// once at the end, on the crawl's goroutine: it must return quickly.
	Progress      func(Progress)
	ProgressEvery time.Duration

	// Version is the "v" the crawler sends. Nil: krpc.DefaultVersion.
	Version []byte
	// Logger receives log events, tagged component=crawler. Zero value:
	// none.
	Logger zerolog.Logger
}

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

func (c Config) withDefaults() (Config, error) {
	switch {
	case c.Conn == nil:
		return c, errors.New("crawler: config: Conn is required")
	case len(c.Bootstrap) == 0:
		return c, errors.New("crawler: config: no bootstrap address")
	case c.Rate < 0, c.PerIPInterval < 0, c.MaxInFlight < 0, c.Timeout < 0, c.Idle < 0, c.Revisit < 0, c.ProgressEvery < 0:
		return c, errors.New("crawler: config: negative value")
	case c.MaxInFlight > MaxInFlightLimit:
		return c, fmt.Errorf("crawler: config: MaxInFlight %d above %d", c.MaxInFlight, MaxInFlightLimit)
	case c.Zone.Bits < 0 || c.Zone.Bits > 32:
		return c, fmt.Errorf("crawler: config: zone of %d bits (0 to 32)", c.Zone.Bits)
	}
	for _, a := range c.Bootstrap {
		if !a.IsValid() || a.Port() == 0 {
			return c, fmt.Errorf("crawler: config: invalid bootstrap address %v", a)
		}
		if !c.TestNet && bogon(a.Addr()) {
			return c, fmt.Errorf("crawler: config: bootstrap address %v is not a public address (a local test network needs TestNet)", a)
		}
	}
	if c.ID.IsZero() {
		c.ID = krpc.RandomID()
	}
	if c.Rate == 0 {
		c.Rate = DefaultRate
	}
	if c.PerIPInterval == 0 {
		c.PerIPInterval = DefaultPerIPInterval
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Idle == 0 {
		c.Idle = DefaultIdle
	}
	switch {
	case c.Retries == 0:
		c.Retries = 1
	case c.Retries < 0:
		c.Retries = 0
	}
	if c.Revisit == 0 {
		c.Revisit = DefaultRevisit
	}
	if c.ProgressEvery == 0 {
		c.ProgressEvery = DefaultProgressEvery
	}
	if c.Version == nil {
		c.Version = krpc.DefaultVersion
	}
	return c, nil
}

// bogon reports whether a is an address that has no business on the
// public DHT: unspecified, loopback, private, link-local, multicast,
// carrier-grade NAT, documentation, benchmarking or reserved ranges.
func bogon(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() || a.IsUnspecified() || a.IsLoopback() || a.IsPrivate() || a.IsMulticast() ||
		a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast() {
		return true
	}
	for _, p := range bogonPrefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

var bogonPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),   // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // documentation
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, and broadcast
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("64:ff9b::/96"),    // NAT64
	netip.MustParsePrefix("100::/64"),        // discard
}

// addrKey is a compact map key: the 16-byte address and the port.
type addrKey [18]byte

func keyOf(ap netip.AddrPort) addrKey {
	var k addrKey
	a := ap.Addr().Unmap().As16()
	copy(k[:16], a[:])
	k[16], k[17] = byte(ap.Port()>>8), byte(ap.Port())
	return k
}

func (k addrKey) addrPort() netip.AddrPort {
	a := netip.AddrFrom16([16]byte(k[:16])).Unmap()
	return netip.AddrPortFrom(a, uint16(k[16])<<8|uint16(k[17]))
}

func (k addrKey) ip() [16]byte { return [16]byte(k[:16]) }

// Node states in the crawl.
const (
	stNew      uint8 = iota // seen, not yet queued
	stQueued                // waiting for a query
	stInFlight              // a query is out
	stReplied               // answered
	stFailed                // never answered
	stSkipped               // bogon or outside the zone: never queried
)

// BEP 51 support as learnt.
const (
	bep51Unknown uint8 = iota
	bep51Yes
	bep51No
)

// node is what the crawl keeps per address: 64 bytes.
type node struct {
	id      krpc.ID
	key     addrKey
	state   uint8
	bep51   uint8
	queries uint8 // queries sent to it in this pass (a revisit starts a new pass)
	queried bool  // queried at least once in the crawl
	nearest bool  // the next query asks for its nearest neighbours
	replied bool  // answered at least once in the crawl
	listed  bool  // has sent us a list of nodes
	local   bool  // first heard of in a reply listing someone's nearest neighbours
	nbrs    bool  // has listed its nearest neighbours to us
	retry   bool  // the next query to it resends one that timed out
	inZone  bool
	next    int64 // Unix nanoseconds before which it is not asked again (BEP 51 interval, revisits)
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

// Resend policy (see resendPays).
const (
	resendLearn = 100  // resends whose outcome is known before any is skipped
	resendWorth = 0.02 // share of resends answered that keeps every resend
	resendProbe = 10   // otherwise one timed-out query in this many is resent
)

// resendPays reports whether a query that timed out is resent. Resends
// are what carries a crawl through packet loss, but a resend to a node
// that has gone is a wasted packet, and on the DHT most nodes that time
// out have gone. So the crawl counts the resends that are answered: until
// the outcome of resendLearn resends is known, and while at least
// resendWorth of those known were answered, every timed-out query is
// resent; otherwise one in resendProbe is, so that loss appearing later
// is noticed. In the first wave of timeouts, before any outcome is known,
// every one is resent.
func (c *Crawler) resendPays() bool {
	if c.resendsDone < resendLearn || float64(c.resendReplies) >= resendWorth*float64(c.resendsDone) {
		c.resends++
		return true
	}
	c.resendsSkipped++
	if c.resendsSkipped%resendProbe == 0 {
		c.resends++
		return true
	}
	return false
}

// Gap probes (see fillGaps).
const (
	gapExpect  = 4 // replied nodes a region must be expected to hold for its emptiness to count
	gapSibling = 8 // replied nodes in the sibling region that make an empty region suspect (K)
	gapAsk     = 3 // replied nodes asked about each suspect region
)

// gapKey names a region of the ID space: its prefix (the bits past depth
// are zero) and depth.
type gapKey struct {
	prefix krpc.ID
	depth  uint8
}

// fillGaps asks about the regions of the ID space (subtrees of the ID
// trie) where the crawl has found no replied node although it should have
// found some. A region is suspect when it is empty and either
//
//   - its sibling region (the other half of the subtree above) holds at
//     least gapSibling replied nodes: each of those has at least K nearer
//     neighbours on its own side, so none lists a node of the empty region
//     among its nearest neighbours, and such nodes are found only when a
//     farther bucket happens to be asked for; or
//   - nodes being spread evenly over the ID space, the region is expected
//     to hold at least gapExpect of them: most likely a cluster of nodes
//     that know one another and that no reply happened to list.
//
// The nodes that reliably hold a region's nodes are those of its sibling:
// the region is one whole bucket of theirs. So for each suspect region the
// gapAsk replied nodes closest to a random ID inside it are asked for the
// nodes nearest that ID. A region once asked about is not asked about
// again. In a zone crawl only regions of the zone count. fillGaps stays
// within the second pass's budget and reports whether it queued any query.
func (c *Crawler) fillGaps() bool {
	budget := c.passBudget()
	if budget < gapAsk {
		return false
	}
	z := c.cfg.Zone
	all := c.inIDOrder(func(n *node) bool { return n.replied })
	zone := all
	if z.Bits > 0 {
		zone = slices.DeleteFunc(slices.Clone(all), func(i int32) bool { return !z.contains(c.nodes[i].id) })
	}
	if len(zone) < 2*gapSibling {
		return false
	}
	if c.gapTarget == nil {
		c.gapTarget = map[int32]krpc.ID{}
		c.gapProbed = map[gapKey]struct{}{}
	}
	// Regions down to this depth are expected to hold gapExpect nodes.
	expectDepth := z.Bits + bits.Len(uint(len(zone)/gapExpect)) - 1
	queued := 0
	// probe asks about the region at depth d+1 that is the sibling of
	// the one holding id.
	probe := func(id krpc.ID, d int) {
		t := krpc.RandomIDAtDepth(id, d)
		key := gapKey{depth: uint8(d + 1)}
		for i := range (d + 1 + 7) / 8 {
			key.prefix[i] = t[i]
		}
		if r := (d + 1) % 8; r != 0 {
			key.prefix[(d+1)/8] &^= 0xff >> r
		}
		if _, done := c.gapProbed[key]; done || queued+gapAsk > budget {
			return
		}
		c.gapProbed[key] = struct{}{}
		for _, i := range c.closestReplied(all, t, gapAsk) {
			n := &c.nodes[i]
			if _, busy := c.gapTarget[i]; busy || n.state != stReplied {
				continue // already queued for something else
			}
			c.gapTarget[i] = t
			n.state = stQueued
			n.queries = 0
			c.ready = append(c.ready, i)
			queued++
		}
	}
	// walk visits the subtree at depth d that holds nodes s (sorted, at
	// least one), looking for suspect empty halves.
	var walk func(s []int32, d int)
	walk = func(s []int32, d int) {
		if d >= krpc.IDLen*8-1 {
			return
		}
		split, _ := slices.BinarySearchFunc(s, 1, func(i int32, one int) int { return c.nodes[i].id.Bit(d) - one })
		lo, hi := s[:split], s[split:]
		for h, half := range [2][]int32{lo, hi} {
			other := [2][]int32{hi, lo}[h]
			switch {
			case len(half) > 0:
				if len(half) >= gapSibling || d+1 < expectDepth {
					walk(half, d+1)
				}
			case len(other) >= gapSibling || d+1 <= expectDepth:
				probe(c.nodes[other[0]].id, d)
			}
		}
	}
	walk(zone, z.Bits)
	return queued > 0
}

// secondPassBudget bounds the second pass: queries stop once they reach
// this many per node that replied.
const secondPassBudget = 1.97

// passBudget returns how many more queries the crawl may send before it
// reaches secondPassBudget per node that replied.
func (c *Crawler) passBudget() int {
	return int(secondPassBudget*float64(c.res.Replied)) - c.res.Queries
}

// inIDOrder returns the indexes of the nodes with a known ID that keep
// accepts (all of them if keep is nil), in ascending ID order: the nodes
// XOR-closest to a target share its longest prefix, so they sit next to
// its place in this order.
func (c *Crawler) inIDOrder(keep func(n *node) bool) []int32 {
	var out []int32
	for i := range c.nodes {
		if n := &c.nodes[i]; !n.id.IsZero() && (keep == nil || keep(n)) {
			out = append(out, int32(i))
		}
	}
	slices.SortFunc(out, func(a, b int32) int { return c.nodes[a].id.Cmp(c.nodes[b].id) })
	return out
}

// secondPass queues, once, the replied nodes that have not yet listed their
// nearest neighbours for a query that asks for them, as far as the budget
// allows (those in the least covered neighbourhoods first), and reports
// whether it queued any.
func (c *Crawler) secondPass() bool {
	if c.passTwo {
		return false
	}
	c.passTwo = true
	budget := c.passBudget()
	if budget <= 0 {
		return false
	}
	var cands []int32
	for i := range c.nodes {
		n := &c.nodes[i]
		if n.state == stReplied && n.listed && !n.nbrs && !n.id.IsZero() {
			cands = append(cands, int32(i))
		}
	}
	if len(cands) > budget {
		cands = c.leastCovered(cands, budget)
	}
	for _, i := range cands {
		n := &c.nodes[i]
		n.state = stQueued
		n.queries = 0
		n.nearest = true
		c.ready = append(c.ready, i)
	}
	return len(c.ready) > 0
}

// leastCovered returns the k nodes of cands whose neighbourhoods have been
// least covered by nearest-neighbour replies. A node's neighbourhood is
// the largest subtree of the ID trie around it that holds at most K of the
// nodes found. If any node of it other than itself listed its nearest
// neighbours, that list held the whole neighbourhood and any node of it
// the crawl has not found (its table holds fewer than K nodes nearer).
// So a candidate's score is the number of such listings, and the lowest
// scores come first; a missed node sits in a neighbourhood whose score is
// 0. Ties go to the candidate whose nearest found neighbour shares the
// fewest leading ID bits with it, as a missed node leaves a gap beside
// its neighbours.
func (c *Crawler) leastCovered(cands []int32, k int) []int32 {
	const K = 8
	byID := c.inIDOrder(nil)
	// rank holds the score in the high byte and the closeness (the prefix
	// shared with the nearest found node, at most 160) in the low one.
	rank := make([]uint16, len(c.nodes))
	var cpls [2 * K]int
	for j, i := range byID {
		id := c.nodes[i].id
		// In ID order the prefix shared with id shrinks with distance, so
		// the K-1 nodes sharing the most bits with it lie within K of it
		// on either side.
		lo, hi := max(0, j-K), min(len(byID), j+K+1)
		near := cpls[:0]
		for _, o := range byID[lo:hi] {
			if o != i {
				near = append(near, id.CommonPrefixLen(c.nodes[o].id))
			}
		}
		slices.SortFunc(near, func(a, b int) int { return b - a })
		// The neighbourhood: the nodes sharing more bits with id than the
		// K-th nearest does (all of them when fewer than K are found).
		depth := 0
		if len(near) >= K {
			depth = near[K-1] + 1
		}
		closeness := 0
		if len(near) > 0 {
			closeness = near[0]
		}
		score := 0
		for _, o := range byID[lo:hi] {
			if o != i && c.nodes[o].nbrs && id.CommonPrefixLen(c.nodes[o].id) >= depth {
				score++
			}
		}
		rank[i] = uint16(min(score, 255))<<8 | uint16(closeness)
	}
	slices.SortStableFunc(cands, func(a, b int32) int { return int(rank[a]) - int(rank[b]) })
	return cands[:k]
}

// discover records a node seen at ni.Addr (ID possibly unknown) and queues
// it when it is to be queried; bootstrap nodes are queried whatever their
// ID. It returns the new node's index, or -1 if the address was known.
func (c *Crawler) discover(ni krpc.NodeInfo, bootstrap bool) int32 {
	if !ni.Addr.IsValid() || ni.Addr.Port() == 0 {
		return -1
	}
	k := keyOf(ni.Addr)
	if idx, ok := c.index[k]; ok {
		if n := &c.nodes[idx]; n.id.IsZero() && !ni.ID.IsZero() {
			n.id = ni.ID
		}
		return -1
	}
	idx := int32(len(c.nodes))
	c.nodes = append(c.nodes, node{id: ni.ID, key: k})
	c.index[k] = idx
	c.res.Discovered++
	c.lastNew = time.Now()
	n := &c.nodes[idx]
	n.inZone = !ni.ID.IsZero() && c.cfg.Zone.contains(ni.ID)
	if n.inZone {
		c.zoneFound++
	}
	switch {
	case !c.cfg.TestNet && bogon(ni.Addr.Addr()):
		n.state = stSkipped
		c.res.Bogons++
	case !bootstrap && !c.towardZone(ni.ID):
		n.state = stSkipped
		c.res.OutOfZone++
	default:
		n.state = stQueued
		c.ready = append(c.ready, idx)
	}
	return idx
}

// towardZone reports whether a node is worth querying in a zone crawl: it
// is in the zone, or the zone is still being approached (fewer than K
// nodes found in it) and the node is at least as close to the prefix as
// the closest node seen so far.
func (c *Crawler) towardZone(id krpc.ID) bool {
	z := c.cfg.Zone
	if z.Bits == 0 || z.contains(id) {
		return true
	}
	if c.zoneFound >= 8 {
		return false
	}
	cpl := id.CommonPrefixLen(z.Prefix)
	if cpl >= c.bestCPL {
		c.bestCPL = cpl
		return true
	}
	return false
}

// zoneTarget returns a random ID inside the zone.
func (c *Crawler) zoneTarget() krpc.ID {
	return krpc.RandomIDWithPrefix(c.cfg.Zone.Prefix, c.cfg.Zone.Bits)
}

// dispatch sends queries while the limits allow and returns when it should
// be called again (zero if only a result can make progress).
func (c *Crawler) dispatch() time.Time {
	now := time.Now()
	c.promote(now)
	for c.inflight < c.cfg.MaxInFlight && len(c.ready) > 0 {
		idx := c.ready[0]
		n := &c.nodes[idx]
		ip := n.key.ip()
		if last, ok := c.lastIP[ip]; ok {
			if due := last + int64(c.cfg.PerIPInterval); due > now.UnixNano() {
				c.ready = c.ready[1:]
				heap.Push(&c.later, delayed{idx: idx, at: due})
				continue
			}
		}
		r := c.lim.ReserveN(now, 1)
		if d := r.DelayFrom(now); d > 0 {
			r.CancelAt(now)
			return c.earliest(now.Add(d))
		}
		c.ready = c.ready[1:]
		c.lastIP[ip] = now.UnixNano()
		c.send(idx)
	}
	c.pruneIPs(now)
	return c.earliest(time.Time{})
}

// earliest returns the sooner of t and the next delayed node's time.
func (c *Crawler) earliest(t time.Time) time.Time {
	if c.later.Len() > 0 {
		at := time.Unix(0, c.later[0].at)
		if t.IsZero() || at.Before(t) {
			return at
		}
	}
	return t
}

// promote moves the delayed nodes that are due to the ready queue.
func (c *Crawler) promote(now time.Time) {
	for c.later.Len() > 0 && c.later[0].at <= now.UnixNano() {
		d := heap.Pop(&c.later).(delayed)
		c.ready = append(c.ready, d.idx)
	}
}

// pruneIPs forgets per-IP send times that no longer restrict anything,
// so the map holds only the IPs of the last PerIPInterval.
func (c *Crawler) pruneIPs(now time.Time) {
	if len(c.lastIP) < 4096 {
		return
	}
	cutoff := now.UnixNano() - int64(c.cfg.PerIPInterval)
	for ip, t := range c.lastIP {
		if t <= cutoff {
			delete(c.lastIP, ip)
		}
	}
}

// target returns the find_node / sample_infohashes target for a node.
// Half the time it is the node's own ID with the last bit flipped, so the
// reply lists the node's nearest neighbours; otherwise a random ID sharing
// exactly d leading bits with the node's, for d drawn uniformly below the
// estimated depth of routing tables, so the reply lists one of its farther
// buckets. Nearest neighbours alone keep a crawl inside clusters of mutual
// neighbours; random buckets alone leave nodes that few tables hold. With
// both, a node is missed only if none of its K nearest neighbours was
// asked for neighbours (1 in 2^K) and no farther bucket listed it. For a
// node whose ID is unknown (a bootstrap address) the target is random, or
// inside the zone.
func (c *Crawler) target(n *node) (t krpc.ID, nearest bool) {
	z := c.cfg.Zone
	switch {
	case n.id.IsZero() && z.Bits > 0, z.Bits > 0 && !z.contains(n.id):
		return c.zoneTarget(), false // on the way to the zone
	case n.id.IsZero():
		return krpc.RandomID(), false
	case !n.nearest:
		if d := c.forcedDepth(); d >= 0 {
			return krpc.RandomIDAtDepth(n.id, d), false
		}
	}
	switch {
	case n.nearest || !n.local:
		t := n.id
		t[krpc.IDLen-1] ^= 1
		return t, true
	}
	// Inside a zone, only buckets inside it.
	lo := z.Bits
	return krpc.RandomIDAtDepth(n.id, lo+rand.IntN(max(1, c.tableDepth()-lo))), false
}

// minPerDepth is how many farther-bucket queries each depth gets before
// targets are left to chance, so that even a small network is crossed at
// every level (a crawl that never asks for a depth-0 bucket never leaves
// the half of the ID space it started in).
const minPerDepth = 3

// forcedDepth returns a depth that has had fewer than minPerDepth queries,
// shallowest first, counting this one, or -1 when every depth has had
// its share.
func (c *Crawler) forcedDepth() int {
	lo := c.cfg.Zone.Bits
	for d := lo; d < c.tableDepth() && d < len(c.perDepth); d++ {
		if c.perDepth[d] < minPerDepth {
			c.perDepth[d]++
			return d
		}
	}
	return -1
}

// tableDepth estimates how deep routing tables reach in a network of the
// size found so far: log2(discovered/K), plus one.
func (c *Crawler) tableDepth() int {
	return bits.Len(uint(c.res.Discovered/8)) + 1
}

func (c *Crawler) send(idx int32) {
	n := &c.nodes[idx]
	n.state = stInFlight
	n.queries++
	n.queried = true
	c.inflight++
	c.res.Queries++
	target, gap := c.gapTarget[idx]
	nearest := false
	if !gap {
		target, nearest = c.target(n)
	}
	q := &krpc.Msg{Q: krpc.MethodFindNode, A: krpc.Args{ID: c.cfg.ID, Target: target}}
	// Sample only where BEP 51 may work and the node's interval is over;
	// otherwise ask for nodes the BEP 5 way.
	if c.cfg.Infohashes && n.bep51 != bep51No && !n.id.IsZero() && time.Now().UnixNano() >= n.next {
		q.Q = krpc.MethodSampleInfohashes
	}
	method, resend := q.Q, n.retry
	n.retry = false
	c.tr.QueryAsync(context.Background(), n.key.addrPort(), q, func(r krpc.Response, err error) {
		c.results <- result{idx: idx, method: method, nearest: nearest, resend: resend, resp: r, err: err}
	})
}

// handle processes one query's outcome on the event loop.
func (c *Crawler) handle(r result) {
	if r.method == krpc.MethodGetPeers {
		c.handlePeers(r)
		return
	}
	c.inflight--
	n := &c.nodes[r.idx]
	addr := n.key.addrPort()
	now := time.Now()
	if r.resp.Msg == nil {
		if !errors.Is(r.err, krpc.ErrTimeout) {
			n.state = stFailed // closed or cancelled: the crawl is ending
			return
		}
		if r.resend {
			c.resendsDone++
		}
		c.record(observe.Sighting{Node: krpc.NodeInfo{ID: n.id, Addr: addr}, Time: now, Source: observe.SourceTimeout, Method: r.method})
		if c.resp != nil && !n.id.IsZero() {
			c.resp.table.Failed(krpc.NodeInfo{ID: n.id, Addr: addr})
		}
		if n.state == stInFlight && int(n.queries) <= c.cfg.Retries && c.resendPays() {
			n.state = stQueued
			n.retry = true
			c.ready = append(c.ready, r.idx)
			return
		}
		if n.state == stInFlight {
			n.state = stFailed
		}
		delete(c.gapTarget, r.idx)
		return
	}
	delete(c.gapTarget, r.idx)
	m := r.resp.Msg
	id := m.SenderID()
	if !id.IsZero() {
		n.id = id
		if !n.inZone && c.cfg.Zone.contains(id) {
			n.inZone = true
			c.zoneFound++
		}
	}
	if r.resend {
		c.resendReplies++
		c.resendsDone++
	}
	first := !n.replied
	n.replied = true
	n.state = stReplied
	me := krpc.NodeInfo{ID: n.id, Addr: addr}
	c.record(observe.Sighting{Node: me, Time: now, Source: observe.SourceReply, Method: r.method,
		Version: string(m.V), RTT: r.resp.RTT, ReadOnly: m.RO, SecureID: secure(me)})
	if first {
		c.res.Replied++
	}
	if c.resp != nil && !n.id.IsZero() {
		c.resp.table.Update(me, table.Replied)
	}

	if m.Y == krpc.KindError {
		// A node that does not know sample_infohashes: ask it for nodes
		// the BEP 5 way.
		if r.method == krpc.MethodSampleInfohashes && m.E != nil && m.E.Code == krpc.CodeMethodUnknown {
			n.bep51 = bep51No
			n.state = stQueued
			c.ready = append(c.ready, r.idx)
		}
		return
	}
	n.listed = true
	if r.nearest {
		n.nbrs = true
	}
	nodes := m.R.Nodes
	if n.key.addrPort().Addr().Is6() {
		nodes = m.R.Nodes6
	}
	for _, ni := range nodes {
		c.record(observe.Sighting{Node: ni, Time: now, Source: observe.SourceReported, Method: r.method, Reporter: me, SecureID: secure(ni)})
		if fresh := c.discover(ni, false); fresh >= 0 {
			c.nodes[fresh].local = r.nearest
		}
	}
	n = &c.nodes[r.idx] // discover may have grown c.nodes
	if c.cfg.Infohashes && r.method == krpc.MethodFindNode && n.bep51 == bep51Unknown && !c.cfg.Continuous {
		// A bootstrap node, asked find_node while its ID was unknown:
		// now it can be asked for a sample.
		n.state = stQueued
		c.ready = append(c.ready, r.idx)
	}
	if r.method == krpc.MethodSampleInfohashes {
		n.bep51 = bep51Yes
		n.next = now.Add(time.Duration(m.R.Interval) * time.Second).UnixNano()
		c.res.Samples++
		for _, ih := range m.R.Samples {
			c.ihs[ih] = struct{}{}
		}
		if c.cfg.Recorder != nil {
			c.cfg.Recorder.RecordSample(me, now, m.R.Num, m.R.Interval, m.R.Samples)
		}
	}
	if c.cfg.Continuous {
		at := now.Add(c.cfg.Revisit).UnixNano()
		if n.next > at {
			at = n.next // never sample before the node's BEP 51 interval
		}
		n.state = stQueued
		n.queries = 0
		heap.Push(&c.later, delayed{idx: r.idx, at: at})
	}
}

func secure(ni krpc.NodeInfo) bool { return bep42.Acceptable(ni.ID, ni.Addr.Addr()) }

func (c *Crawler) record(s observe.Sighting) {
	if c.cfg.Recorder != nil {
		c.cfg.Recorder.Observe(s)
	}
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
		c.res.Incoming = int(c.resp.queries())
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

// delayed is a node waiting for its time: its IP's interval, a BEP 51
// interval or a revisit.
type delayed struct {
	idx int32
	at  int64
}

type delayHeap []delayed

func (h delayHeap) Len() int           { return len(h) }
func (h delayHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h delayHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *delayHeap) Push(x any)        { *h = append(*h, x.(delayed)) }
func (h *delayHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// PeerRecorder is the optional part of a Recorder that receives peers
// (*db.DB has it).
type PeerRecorder interface {
	RecordPeer(infohash krpc.ID, peer netip.AddrPort, source string, t time.Time)
}

// peerTask is one get_peers of the peers phase.
type peerTask struct {
	idx int32
	ih  krpc.ID
}

// peersPhase asks, for each harvested infohash, the 8 replied nodes
// closest to it for peers, within the rate and per-IP limits, until done
// or ctx ends.
func (c *Crawler) peersPhase(ctx context.Context) error {
	byID := c.inIDOrder(func(n *node) bool { return n.replied })
	if len(byID) == 0 {
		return nil
	}
	var tasks []peerTask
	asked := 0
	for ih := range c.ihs {
		if c.cfg.PeersLimit > 0 && asked == c.cfg.PeersLimit {
			break
		}
		asked++
		for _, idx := range c.closestReplied(byID, ih, 8) {
			tasks = append(tasks, peerTask{idx: idx, ih: ih})
		}
	}
	c.peerSeen = map[peerSeenKey]struct{}{}
	wake := time.NewTimer(0)
	defer wake.Stop()
	for len(tasks) > 0 || c.inflight > 0 {
		now := time.Now()
		var next time.Time
		for i := 0; i < len(tasks) && c.inflight < c.cfg.MaxInFlight; {
			t := tasks[i]
			ip := c.nodes[t.idx].key.ip()
			if last, ok := c.lastIP[ip]; ok && last+int64(c.cfg.PerIPInterval) > now.UnixNano() {
				if due := time.Unix(0, last+int64(c.cfg.PerIPInterval)); next.IsZero() || due.Before(next) {
					next = due
				}
				i++
				continue
			}
			r := c.lim.ReserveN(now, 1)
			if d := r.DelayFrom(now); d > 0 {
				r.CancelAt(now)
				if due := now.Add(d); next.IsZero() || due.Before(next) {
					next = due
				}
				break
			}
			tasks = append(tasks[:i], tasks[i+1:]...)
			c.lastIP[ip] = now.UnixNano()
			c.sendGetPeers(t)
		}
		if !next.IsZero() {
			wake.Reset(time.Until(next))
		}
		select {
		case r := <-c.results:
			c.handle(r)
		case <-wake.C:
		case <-ctx.Done():
			return fmt.Errorf("crawler: %w", context.Cause(ctx))
		}
	}
	return nil
}

// closestReplied returns up to k replied nodes closest to target, from a
// window around target's place in byID.
func (c *Crawler) closestReplied(byID []int32, target krpc.ID, k int) []int32 {
	pos, _ := slices.BinarySearchFunc(byID, target, func(i int32, t krpc.ID) int { return c.nodes[i].id.Cmp(t) })
	lo, hi := max(0, pos-4*k), min(len(byID), pos+4*k)
	window := slices.Clone(byID[lo:hi])
	slices.SortFunc(window, func(a, b int32) int {
		return c.nodes[a].id.Xor(target).Cmp(c.nodes[b].id.Xor(target))
	})
	return window[:min(k, len(window))]
}

func (c *Crawler) sendGetPeers(t peerTask) {
	c.inflight++
	c.res.PeerQueries++
	q := &krpc.Msg{Q: krpc.MethodGetPeers, A: krpc.Args{ID: c.cfg.ID, InfoHash: t.ih}}
	idx, ih := t.idx, t.ih
	c.tr.QueryAsync(context.Background(), c.nodes[t.idx].key.addrPort(), q, func(r krpc.Response, err error) {
		c.results <- result{idx: idx, ih: ih, method: krpc.MethodGetPeers, resp: r, err: err}
	})
}

type peerSeenKey struct {
	ih   krpc.ID
	peer addrKey
}

// handlePeers records the peers of one get_peers reply.
func (c *Crawler) handlePeers(r result) {
	c.inflight--
	if r.resp.Msg == nil || r.resp.Y != krpc.KindReply {
		return
	}
	pr, _ := c.cfg.Recorder.(PeerRecorder)
	now := time.Now()
	for _, p := range r.resp.R.Values {
		k := peerSeenKey{r.ih, keyOf(p)}
		if _, dup := c.peerSeen[k]; dup {
			continue
		}
		c.peerSeen[k] = struct{}{}
		c.res.Peers++
		if pr != nil {
			pr.RecordPeer(r.ih, p, "get_peers", now)
		}
	}
}
