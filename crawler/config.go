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
	// each harvested infohash: get_peers to the table.DefaultK (8) nodes
	// closest to it among those that replied (the crawl knows them all,
	// so no lookup is needed), under the same rate and per-IP limits. The peers go to
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
