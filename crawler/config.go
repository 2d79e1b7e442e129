package crawler

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/rs/zerolog"

	"github.com/lightdht/lightdht/krpc"
	"github.com/lightdht/lightdht/observe"
)

// Defaults of Config, which withDefaults fills in for zero fields.
const (
	DefaultRate          = 250              // queries per second, all nodes together
	DefaultPerIPInterval = 2 * time.Second  // between two queries to one IP
	DefaultMaxInFlight   = 512              // queries awaiting a reply
	DefaultTimeout       = 2 * time.Second  // per attempt
	DefaultRetries       = 1                // resends after a timed-out attempt
	DefaultIdle          = 30 * time.Second // without a new node before a crawl ends
	DefaultRevisit       = 30 * time.Minute // between two queries to a node in a continuous crawl
	DefaultProgressEvery = time.Second      // between two progress reports
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
	// Prefix holds the zone's leading bits; those past Bits are ignored.
	Prefix krpc.ID
	// Bits is the length of the prefix, 0 to 32. Zero: no zone, the whole
	// ID space.
	Bits int
}

// contains reports whether id lies in the zone.
func (z Zone) contains(id krpc.ID) bool {
	return z.Bits == 0 || id.CommonPrefixLen(z.Prefix) >= z.Bits
}

// Config configures a crawl. Conn and Bootstrap are required; every other
// zero value selects the default its comment states. New validates a
// Config, then fills in the defaults, in withDefaults.
type Config struct {
	// Conn is the socket the crawl uses; the crawler owns and closes it.
	// Required.
	Conn net.PacketConn
	// Bootstrap lists the addresses the crawl starts from. Required; each
	// must be a public address unless TestNet is set.
	Bootstrap []netip.AddrPort
	// ID is the crawler's node ID, used in every query. Zero: random.
	ID krpc.ID

	// Rate caps the queries sent per second (resends included): the
	// rate, or with Adaptive the adaptive sender's ceiling. Zero:
	// DefaultRate (250).
	Rate float64
	// PerIPInterval is the least time between two queries to one IP
	// address. Zero: DefaultPerIPInterval (2 seconds). Libtorrent blocks
	// sources that send more than 5 queries a second.
	PerIPInterval time.Duration
	// IPSpacing, if set, is where the crawl keeps when it last queried
	// each IP, shared with the other crawls given the same one: crawls
	// that query from one socket (a shared crawl's zones in one process
	// use one) so keep PerIPInterval across all of them. Nil: the crawl
	// keeps its own.
	IPSpacing *IPSpacing
	// MaxInFlight bounds the queries awaiting a reply, at most
	// MaxInFlightLimit. Zero: DefaultMaxInFlight (512). New sizes the
	// receive buffer of a Conn that has SetReadBuffer (as *net.UDPConn
	// has) to hold a full-size reply to each of them, so that a burst of
	// replies is not dropped before it is read. The OS may cap it (Linux:
	// at net.core.rmem_max).
	MaxInFlight int
	// Timeout is the wait for each attempt. Zero: DefaultTimeout (2
	// seconds).
	Timeout time.Duration
	// Retries is the number of resends after a timed-out attempt, which go
	// through the same queue and per-IP interval as every query. Zero:
	// DefaultRetries (1); negative: none. The first 100 timed-out
	// queries are resent; the timeouts that come while those resends'
	// outcomes are unknown are held back. Once fewer than 2% of the
	// recent resends are answered (the nodes that time out have gone, not
	// lost a packet), one timed-out query in 50 is resent and the others
	// are held back; should the share rise to 2% (loss has begun), every
	// timeout is resent again, and so are the held ones, the latest first
	// (Result.Redeemed). Revisit runs and continuous crawls hold nothing
	// back and resend one in 10.
	// With Infohashes, a sample_infohashes that times out on a node whose
	// BEP 51 support is unknown is followed by a find_node instead of
	// being resent, under the same rule with a line of 0.5% rather than
	// 2%, and even with Retries negative: nodes that drop unknown methods
	// without error 204 (aria2) answer it, and are recorded as answering,
	// BEP 51 "silent". A node
	// that answers the find_node is asked for the sample once more (its
	// first may have been lost), under the same rule applied to those
	// second samples' answers.
	Retries int
	// Learned, if set, is what earlier crawls of the same network
	// learned (their Result.Learned, summed) of how resends, follow-ups
	// and resamples pay, and of how many nodes the second pass's checks
	// find: the crawl starts from it rather than learning it again. A
	// shared crawl starts each zone's crawl from the sums over the zones
	// done, by any process (shard): a small zone's crawl would otherwise
	// spend its first 100 resends, where the nodes that time out have
	// gone, and at least 300 checks, where the checks find nothing, to
	// learn it. Each kind of resend counts as 100 outcomes at most, so
	// that the crawl's own soon outweigh it. Zero: nothing learned.
	Learned Learned
	// Share, if set, pools what the crawl learns with crawls of the same
	// network running at the same time (a shared crawl's zones crawled by
	// other processes, shard): the crawler calls it from its loop after
	// each outcome with what it has learned itself so far, and takes what
	// it returns, what those crawls have learned so far, as learned
	// before, added to Learned. Zones crawled at once would otherwise
	// each learn alone what one crawl learns once: four zones starting
	// together each asked all their 100 resends and 150 or so checks
	// where the nodes that time out have gone and the checks find
	// nothing. It must not block (return what is known, however stale)
	// and is not called concurrently.
	Share func(own Learned) (others Learned)

	// Idle ends a full crawl once no new node has been found for this
	// long (a crawl also ends when nothing is left to query); no query is
	// sent after that, but those in flight are waited for, up to Timeout,
	// so that a slow node's last answer is not lost. Where it runs out
	// while all that is left of the first pass waits for its time (a
	// host with many IDs, one query per PerIPInterval), the gap probes
	// and checks that follow the first pass start instead, and Idle
	// counts again from then. Zero:
	// DefaultIdle (30 seconds). The context's deadline bounds the crawl in
	// any case.
	Idle time.Duration
	// Continuous keeps crawling until the context ends: every node that
	// replied is asked again every Revisit, to observe uptime and churn.
	// False: the crawl ends when it is done.
	Continuous bool
	// Revisit is the time between two queries to a node in a continuous
	// crawl. Zero: DefaultRevisit (30 minutes).
	Revisit time.Duration

	// Nodes, if set, makes the run a revisit run: instead of crawling
	// from Bootstrap (which it then does not need), it visits these
	// nodes again and again, each after a quarter of the time it has
	// been up or down, within [RevisitMin, RevisitMax], and drops a node
	// that has been down for RevisitGiveUp. It discovers no new node. A
	// visit is a ping, or with Infohashes a sample_infohashes to a node
	// with Known.BEP51 whose interval is over. Not with Continuous, Zone
	// or Peers.
	Nodes []Known
	// RevisitMin and RevisitMax bound the wait between two visits of a
	// node in a revisit run. Zero: DefaultRevisitMin (1 minute) and
	// DefaultRevisitMax (30 minutes).
	RevisitMin, RevisitMax time.Duration
	// RevisitGiveUp is how long a node may stay down in a revisit run
	// before it is no longer visited. Zero: DefaultRevisitGiveUp (24
	// hours); negative: never given up.
	RevisitGiveUp time.Duration
	// RevisitRounds, if positive, ends a revisit run once every node has
	// been visited this many times (or given up): 1 is a single pass
	// over the known nodes. Zero: no limit.
	RevisitRounds int

	// Zone, when Bits > 0, restricts the crawl to one ID prefix and
	// estimates the size of the whole network from its density. Zero: the
	// whole ID space.
	Zone Zone
	// Seeds, for a zone crawl, are nodes thought to lie in the Zone (a
	// shared crawl's other zones saw them listed, shard): the crawl
	// starts from them in place of Bootstrap, and so skips the approach
	// to the zone, about 23 queries of nodes outside it per zone on a
	// 5,000-node network. Bootstrap is asked only if the queue runs dry
	// before DefaultK nodes have answered from inside the zone: the seeds
	// had gone, or were a poisoner's fakes. Seeds whose ID lies outside
	// the Zone are ignored. Nil: the crawl starts from Bootstrap.
	Seeds []krpc.NodeInfo

	// Infohashes asks each node with BEP 51 sample_infohashes (which also
	// returns nodes), honouring each node's interval, and falls back to
	// find_node for nodes that do not support it; with a Zone, only the
	// zone's nodes are sampled (the rest are other zones' to sample).
	// False: find_node only.
	Infohashes bool

	// Peers, with Infohashes, ends the crawl by asking for the peers of
	// each harvested infohash: get_peers to the table.DefaultK (8) nodes
	// closest to it among those that replied (the crawl knows them all,
	// so no lookup is needed), under the same rate and per-IP limits. The
	// peers go to the Recorder's RecordPeer when it has one. False: no
	// peers phase.
	Peers bool
	// PeersLimit caps the infohashes the peers phase asks about. Zero: all.
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
	// on, so this pays off mostly in continuous crawls. False: read-only.
	Respond bool

	// TestNet allows queries to loopback, private and other addresses
	// that do not belong on the public DHT. Only for local test networks.
	// False: such addresses are never queried, and a bootstrap address
	// among them is an error that matches ErrNeedsTestNet.
	TestNet bool

	// Recorder receives sightings and samples, and visits if it
	// implements observe.VisitRecorder (*db.DB does): one per node whose
	// ID the crawl learnt, saying whether it answered (see
	// observe.Visit). Nil: none.
	Recorder Recorder
	// NoVisits keeps visits from a Recorder that takes them. False: a
	// crawl reports its visits, which is what a crawl history is made of.
	NoVisits bool
	// Progress, if set, is called every ProgressEvery and once at the
	// end, on the crawl's goroutine: it must return quickly. Nil: no
	// reports.
	Progress func(Progress)
	// ProgressEvery is the time between two calls of Progress. Zero:
	// DefaultProgressEvery (1 second).
	ProgressEvery time.Duration

	// Version is the "v" the crawler sends. Nil: krpc.DefaultVersion.
	Version []byte
	// Logger receives log events, tagged component=crawler. Zero value:
	// none.
	Logger zerolog.Logger
	// Now is the crawl's clock: every time the crawl records, and every
	// time it compares with a limit, an interval or Idle, is read from
	// it, the responder's (Respond) included; its timers and the
	// progress ticker still run on real time. Nil: time.Now.
	Now func() time.Time

	// Adaptive makes Rate a ceiling for the adaptive sender, which sends
	// as fast as the path carries without queueing, so that a link slower
	// than Rate is not turned into false timeouts: starting at 32 queries
	// per second, it doubles each round (about two round trips) up to
	// Rate, cuts the rate when the round trips of the nodes that answer
	// grow 50 ms above their usual level or when the share of timeouts
	// rises above its usual level, and grows it back step by step. See
	// docs/crawler.md. False (the default): the crawl sends at Rate
	// whatever the network does. The adaptive sender is not the default
	// because on a network whose round trips are heavy-tailed, as the
	// live DHT's are (synth.LiveLike), it holds the rate far below the
	// ceiling: an infohash crawl of 100,000 such nodes took 58 simulated
	// minutes against 15 at the fixed rate, and ended with work queued.
	Adaptive bool
}

// ErrNeedsTestNet is the cause of a ConfigError for a bootstrap address
// that only a local test network uses (loopback, private, …) while
// Config.TestNet is not set. Test for it with errors.Is.
var ErrNeedsTestNet = errors.New("a local test network needs TestNet")

// ConfigError is the error New returns for a Config it rejects. Match it
// with errors.As; errors.Is matches its cause, such as ErrNeedsTestNet.
type ConfigError struct {
	Field  string // the Config field at fault, such as "Bootstrap"
	Reason string // what is wrong with it, such as "no bootstrap address"
	Err    error  // the cause, if any: nil or a sentinel such as ErrNeedsTestNet
}

// Error returns "crawler: config: " and the reason, followed by the cause
// in parentheses when there is one.
func (e *ConfigError) Error() string {
	if e.Err != nil {
		return "crawler: config: " + e.Reason + " (" + e.Err.Error() + ")"
	}
	return "crawler: config: " + e.Reason
}

// Unwrap returns the cause.
func (e *ConfigError) Unwrap() error { return e.Err }

// withDefaults validates c, then returns it with every zero field that has
// a default filled in: the one place where a Config's defaults are set.
func (c Config) withDefaults() (Config, error) {
	if err := c.validate(); err != nil {
		return c, err
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
	switch {
	case c.Retries == 0:
		c.Retries = DefaultRetries
	case c.Retries < 0:
		c.Retries = 0
	}
	if c.Idle == 0 {
		c.Idle = DefaultIdle
	}
	if c.Revisit == 0 {
		c.Revisit = DefaultRevisit
	}
	if c.RevisitMin == 0 {
		c.RevisitMin = DefaultRevisitMin
	}
	if c.RevisitMax == 0 {
		c.RevisitMax = max(DefaultRevisitMax, c.RevisitMin)
	}
	if c.RevisitGiveUp == 0 {
		c.RevisitGiveUp = DefaultRevisitGiveUp
	}
	if c.ProgressEvery == 0 {
		c.ProgressEvery = DefaultProgressEvery
	}
	if c.Version == nil {
		c.Version = krpc.DefaultVersion
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c, nil
}

// validate returns a *ConfigError for the first field of c that New
// rejects, or nil.
func (c Config) validate() error {
	if c.Conn == nil {
		return &ConfigError{Field: "Conn", Reason: "Conn is required"}
	}
	if len(c.Bootstrap) == 0 && len(c.Nodes) == 0 {
		return &ConfigError{Field: "Bootstrap", Reason: "no bootstrap address"}
	}
	if len(c.Nodes) > 0 {
		switch {
		case c.Continuous:
			return &ConfigError{Field: "Continuous", Reason: "a revisit run (Nodes) cannot be continuous: it revisits until stopped"}
		case c.Zone.Bits > 0:
			return &ConfigError{Field: "Zone", Reason: "a revisit run (Nodes) has no zone"}
		case c.Peers:
			return &ConfigError{Field: "Peers", Reason: "a revisit run (Nodes) has no peers phase"}
		case c.RevisitMax > 0 && c.RevisitMin > c.RevisitMax:
			return &ConfigError{Field: "RevisitMin", Reason: "RevisitMin above RevisitMax"}
		}
		for _, k := range c.Nodes {
			if k.Node.ID.IsZero() {
				return &ConfigError{Field: "Nodes", Reason: fmt.Sprintf("node %v to revisit has no ID", k.Node.Addr)}
			}
			if !k.Node.Addr.IsValid() || k.Node.Addr.Port() == 0 {
				return &ConfigError{Field: "Nodes", Reason: fmt.Sprintf("node to revisit has an invalid address %v", k.Node.Addr)}
			}
			if !c.TestNet && bogon(k.Node.Addr.Addr()) {
				return &ConfigError{Field: "Nodes", Reason: fmt.Sprintf("node to revisit %v is not at a public address", k.Node.Addr),
					Err: ErrNeedsTestNet}
			}
		}
	}
	for _, f := range []struct {
		name     string
		negative bool
	}{
		{"Rate", c.Rate < 0},
		{"PerIPInterval", c.PerIPInterval < 0},
		{"MaxInFlight", c.MaxInFlight < 0},
		{"Timeout", c.Timeout < 0},
		{"Idle", c.Idle < 0},
		{"Revisit", c.Revisit < 0},
		{"RevisitMin", c.RevisitMin < 0},
		{"RevisitMax", c.RevisitMax < 0},
		{"RevisitRounds", c.RevisitRounds < 0},
		{"ProgressEvery", c.ProgressEvery < 0},
	} {
		if f.negative {
			return &ConfigError{Field: f.name, Reason: "negative value of " + f.name}
		}
	}
	for _, o := range []struct {
		name string
		o    Outcomes
	}{{"Resends", c.Learned.Resends}, {"FollowUps", c.Learned.FollowUps}, {"Resamples", c.Learned.Resamples}, {"Checks", c.Learned.Checks}} {
		if o.o.Answered < 0 || o.o.Sent < o.o.Answered {
			return &ConfigError{Field: "Learned", Reason: fmt.Sprintf("%s: %d answered of %d sent", o.name, o.o.Answered, o.o.Sent)}
		}
	}
	if c.MaxInFlight > MaxInFlightLimit {
		return &ConfigError{Field: "MaxInFlight", Reason: fmt.Sprintf("MaxInFlight %d above %d", c.MaxInFlight, MaxInFlightLimit)}
	}
	if c.Zone.Bits < 0 || c.Zone.Bits > 32 {
		return &ConfigError{Field: "Zone", Reason: fmt.Sprintf("zone of %d bits (0 to 32)", c.Zone.Bits)}
	}
	if len(c.Seeds) > 0 && c.Zone.Bits == 0 {
		return &ConfigError{Field: "Seeds", Reason: "seeds are for a zone crawl (Zone.Bits > 0)"}
	}
	for _, s := range c.Seeds {
		if !s.Addr.IsValid() || s.Addr.Port() == 0 || (!c.TestNet && bogon(s.Addr.Addr())) {
			return &ConfigError{Field: "Seeds", Reason: fmt.Sprintf("seed %v: invalid or not a public address", s.Addr)}
		}
	}
	for _, a := range c.Bootstrap {
		if !a.IsValid() || a.Port() == 0 {
			return &ConfigError{Field: "Bootstrap", Reason: fmt.Sprintf("invalid bootstrap address %v", a)}
		}
		if !c.TestNet && bogon(a.Addr()) {
			return &ConfigError{Field: "Bootstrap", Reason: fmt.Sprintf("bootstrap address %v is not a public address", a),
				Err: ErrNeedsTestNet}
		}
	}
	return nil
}
