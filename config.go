package lightdht

import (
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/rs/zerolog"

	"github.com/lightdht/lightdht/bep44"
	"github.com/lightdht/lightdht/krpc"
	"github.com/lightdht/lightdht/serve"
	"github.com/lightdht/lightdht/table"
)

// Defaults of Config.
const (
	DefaultAlpha          = 3                      // queries in flight per lookup
	DefaultQueryTimeout   = 2 * time.Second        // per attempt
	DefaultRetries        = 3                      // resends after a timed-out attempt
	DefaultStallAfter     = 500 * time.Millisecond // a lookup query this slow frees its slot
	DefaultSendRate       = 1000                   // packets per second, all queries and replies
	DefaultPerIPRate      = 10                     // incoming queries per second per source IP
	DefaultPerIPBurst     = 50
	DefaultPeerTTL        = 30 * time.Minute
	DefaultMaxValues      = serve.DefaultMaxValues // peers in one get_peers reply
	DefaultRefreshEvery   = time.Minute
	DefaultSampleInterval = serve.DefaultSampleInterval // BEP 51: how long a sample_infohashes answer stands
	MaxSampleInterval     = serve.MaxSampleInterval
	SampleMax             = serve.SampleMax // infohashes in one BEP 51 reply
	DefaultBootstrapEvery = 30 * time.Second
	DefaultItemTTL        = bep44.DefaultTTL      // BEP 44: how long a stored item lives after its last put
	DefaultMaxItems       = bep44.DefaultMaxItems // BEP 44 items held

	DefaultMaxAmplification = krpc.DefaultMaxAmplification // reply bytes per query byte, at most
	DefaultPrefixReplyRate  = krpc.DefaultPrefixReplyRate  // reply bytes per second to one /24 or /48
	DefaultPrefixReplyBurst = krpc.DefaultPrefixReplyBurst
)

// DefaultVersion is the "v" client version lightdht sends:
// krpc.DefaultVersion, "LD" and version 0.1.
var DefaultVersion = krpc.DefaultVersion

// Config configures a Node. The zero value of every field except the
// sockets is a sensible default, documented on the field.
type Config struct {
	// ID is the node ID. Zero: a random ID, or a BEP 42 secure ID for
	// PublicIP when that is set.
	ID krpc.ID

	// Conn4 and Conn6 are the IPv4 and IPv6 sockets (BEP 32). At least one
	// is required; the node owns and closes them. Tests pass in-memory
	// conns from internal/simnet.
	Conn4, Conn6 net.PacketConn

	// Bootstrap lists the nodes to join through. There is no built-in
	// list. Empty: the node waits to be contacted.
	Bootstrap []netip.AddrPort

	// Table selects the routing table: table.KBucket (default), or one of
	// the research tables that keep every node seen (table.Flat,
	// table.Prefix).
	Table table.Kind
	// K is the bucket size and the number of closest nodes a lookup
	// returns. Zero: 8.
	K int
	// PlainTable gives every k-bucket K entries, as in BEP 5. By default
	// the four buckets farthest from the node's ID hold 16, 8, 4 and 2
	// times K (libtorrent's extended routing table; see
	// table.Config.Extended): they cover most of the ID space, and the
	// extra nodes give lookups a nearer first hop, which halved the median
	// find_node lookup on 5,000 nodes (docs/benchmarks.md). The research
	// tables ignore it.
	PlainTable bool
	// IPsPerBucket limits the entries sharing one IP in a k-bucket. Zero:
	// 1; negative: no limit (useful on a single-host test network, see
	// LocalTestNet).
	IPsPerBucket int
	// Alpha is the number of queries each lookup keeps in flight. Zero: 3.
	Alpha int

	// QueryTimeout is how long each attempt of a query waits. Zero: 2s.
	// Attempts before the last wait less once replies have been seen:
	// a retransmission timeout estimated from their round trips, at least
	// 200ms (see krpc.Config.AdaptiveTimeout), unless FixedTimeouts is set.
	QueryTimeout time.Duration
	// FixedTimeouts makes every attempt wait the whole QueryTimeout.
	FixedTimeouts bool
	// Retries is the number of resends after a timed-out attempt. Zero:
	// 3 (DefaultRetries, not the transport's 1); negative: none. With four attempts a live node behind 5% packet
	// loss fails a query about once in 10,000, so lookups miss one of the
	// K closest in well under 1% of cases; the price is that a dead node
	// gets four packets. Lookups do not wait idle meanwhile: a slow query
	// frees its slot after StallAfter, and a late reply still counts.
	Retries int
	// StallAfter is how long a lookup query may go unanswered before the
	// lookup stops counting it against Alpha and queries another node,
	// still accepting the late reply. Zero: 500ms.
	StallAfter time.Duration

	// SendRate caps the packets the node sends per second per socket, in
	// a bucket of a tenth of a second's packets. Zero: 1,000
	// (DefaultSendRate); negative: no cap (as in LocalTestNet).
	SendRate float64
	// PerIPRate and PerIPBurst limit the queries answered per source IP, so
	// that the node cannot be used as an amplifier. Zero: 10 per second
	// with a burst of 50 (25 for a source not heard from before);
	// negative PerIPRate: no limit. Packets over the limit are dropped
	// before they are decoded. Sources that have spent more than half
	// their burst are "heavy": together they may use at most half of
	// SendRate, which keeps a flood from many sources from crowding out
	// everyone else. LocalTestNet turns the limit off.
	PerIPRate  float64
	PerIPBurst int

	// MaxAmplification caps every reply at this many times the bytes of
	// its query, trimming peers and nodes to fit and dropping what still
	// does not (a large BEP 44 value asked for by a small query). Zero:
	// 10; negative: no cap; between 0 and 1: an error. See
	// krpc.Config.MaxAmplification.
	MaxAmplification float64
	// PrefixReplyRate caps the reply bytes per second sent to any one /24
	// (IPv4) or /48 (IPv6), with a bucket of PrefixReplyBurst bytes. Zero
	// PrefixReplyRate: 64 KiB/s with a 128 KiB bucket, whatever
	// PrefixReplyBurst says; negative: no cap. With a rate set, zero
	// PrefixReplyBurst: the larger of 128 KiB and one second at the rate.
	// Test networks that put many nodes in one /24 turn it off (see
	// LocalTestNet).
	PrefixReplyRate  float64
	PrefixReplyBurst int

	// PublicIP is this node's address as others see it. When set and ID is
	// zero, the ID is derived from it per BEP 42.
	PublicIP netip.Addr

	// Resume is what an earlier run of the node saved (Node.Snapshot).
	// When ID is zero the node keeps the saved ID if it is valid (BEP 42)
	// for PublicIP, or, without PublicIP, for the saved external address
	// (any ID is valid when neither is known); otherwise it derives one
	// for that address. Unlike a configured ID, a resumed one gives way to
	// a BEP 42 ID when votes decide an address it is not valid for. The
	// first bootstrap pings the saved nodes and asks the Bootstrap
	// addresses only when fewer than K of a family's saved nodes answer.
	// Nil: a fresh start.
	Resume *Snapshot
	// EnforceSecureID keeps nodes whose IDs violate BEP 42 out of the
	// routing tables. Off by default: most of the DHT does not comply.
	EnforceSecureID bool
	// ReadOnly makes the node a BEP 43 read-only node: it sets "ro" on its
	// queries and answers none.
	ReadOnly bool

	// PeerTTL is how long an announced peer is kept. Zero: 30 minutes.
	PeerTTL time.Duration
	// MaxValues caps the peers in one get_peers reply. Zero: 50.
	MaxValues int
	// SampleInterval is the BEP 51 interval: how long the node keeps
	// answering sample_infohashes with the same sample, and asks samplers
	// to wait. Zero: 1 hour; at most 6 hours (BEP 51's limit).
	SampleInterval time.Duration

	// ItemTTL is how long a BEP 44 item put to this node lives after its
	// last put; MaxItems how many it holds. Zero: 2 hours and 10,000.
	ItemTTL  time.Duration
	MaxItems int

	// Version is the "v" sent with every message. Nil: DefaultVersion.
	Version []byte

	// Observer receives every node the node sees. Nil: none.
	Observer Observer
	// AddrChanged is called when the votes of repliers decide a new
	// external address (see Stats.ExternalAddr4), after the node has
	// taken a new ID for it if it does. It runs on one of the node's
	// goroutines and must not block. Nil: the change is only logged.
	AddrChanged func(AddrChange)
	// Logger receives log events, tagged component=node. Zero value: no
	// logging.
	Logger zerolog.Logger
	// Now is the clock: it stamps sightings, tokens, routing table
	// entries, stored peers and items, and measures lookup durations and
	// the time between bootstraps. Nil: time.Now. Waits (query timeouts,
	// StallAfter, the maintenance tickers) run on the runtime's timers,
	// which testing/synctest fakes.
	Now func() time.Time

	// NoMaintenance turns off the background bootstrap, table refresh and
	// pings of questionable nodes that Serve runs.
	NoMaintenance bool
}

// LocalTestNet returns cfg set up for a test network on one machine, where
// many nodes share an IP address or a /24 and each node is queried far
// more often than on the public DHT. It lifts the limits that only make
// sense there: each of PerIPRate, PrefixReplyRate, SendRate and
// IPsPerBucket that is zero (its default) becomes negative (no limit or no
// cap). A field already set keeps its value, so a test of one limit can
// set it and still use the profile. Do not use it for a node that the
// public DHT can reach: without its per-IP limits it answers any source as
// fast as the source asks.
func LocalTestNet(cfg Config) Config {
	for _, rate := range []*float64{&cfg.PerIPRate, &cfg.PrefixReplyRate, &cfg.SendRate} {
		if *rate == 0 {
			*rate = -1
		}
	}
	if cfg.IPsPerBucket == 0 {
		cfg.IPsPerBucket = -1
	}
	return cfg
}

// ConfigError reports a Config field that New cannot use. Match it with
// errors.As.
type ConfigError struct {
	Field  string // the field at fault, e.g. "Alpha" or "Bootstrap[2]"
	Reason string // what is wrong with its value
}

func (e *ConfigError) Error() string { return "lightdht: config: " + e.Field + ": " + e.Reason }

func configErr(field, format string, args ...any) error {
	return &ConfigError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// withDefaults checks c and returns it with every default filled in, so
// that the node and the packages it configures read only explicit
// values. On return a count or rate is positive, or, where the field
// allows it, the "none" value of the package it goes to: krpc.NoRetries
// for Retries, krpc.NoCap for SendRate, PerIPRate, MaxAmplification and
// PrefixReplyRate, -1 (no limit) for IPsPerBucket.
func (c Config) withDefaults() (Config, error) {
	if c.Conn4 == nil && c.Conn6 == nil {
		return c, configErr("Conn4/Conn6", "one of them is required")
	}
	for _, f := range []struct {
		name     string
		negative bool
		value    any
	}{
		{"K", c.K < 0, c.K},
		{"Alpha", c.Alpha < 0, c.Alpha},
		{"QueryTimeout", c.QueryTimeout < 0, c.QueryTimeout},
		{"StallAfter", c.StallAfter < 0, c.StallAfter},
		{"PerIPBurst", c.PerIPBurst < 0, c.PerIPBurst},
		{"PrefixReplyBurst", c.PrefixReplyBurst < 0, c.PrefixReplyBurst},
		{"PeerTTL", c.PeerTTL < 0, c.PeerTTL},
		{"MaxValues", c.MaxValues < 0, c.MaxValues},
		{"SampleInterval", c.SampleInterval < 0, c.SampleInterval},
		{"ItemTTL", c.ItemTTL < 0, c.ItemTTL},
		{"MaxItems", c.MaxItems < 0, c.MaxItems},
	} {
		if f.negative {
			return c, configErr(f.name, "is negative (%v)", f.value)
		}
	}
	switch {
	case c.SampleInterval > MaxSampleInterval:
		return c, configErr("SampleInterval", "%v is above BEP 51's %v", c.SampleInterval, MaxSampleInterval)
	case c.MaxAmplification > 0 && c.MaxAmplification < 1:
		return c, configErr("MaxAmplification", "%v is below 1: no reply could be sent", c.MaxAmplification)
	}
	for i, a := range c.Bootstrap {
		if !a.IsValid() || a.Port() == 0 {
			return c, configErr(fmt.Sprintf("Bootstrap[%d]", i), "invalid address %v", a)
		}
	}

	if c.K == 0 {
		c.K = table.DefaultK
	}
	switch {
	case c.IPsPerBucket == 0:
		c.IPsPerBucket = table.DefaultIPsPerBucket
	case c.IPsPerBucket < 0:
		c.IPsPerBucket = -1 // the table's "no limit"
	}
	if c.Alpha == 0 {
		c.Alpha = DefaultAlpha
	}
	if c.QueryTimeout == 0 {
		c.QueryTimeout = DefaultQueryTimeout
	}
	switch {
	case c.Retries == 0:
		c.Retries = DefaultRetries
	case c.Retries < 0:
		c.Retries = krpc.NoRetries
	}
	if c.StallAfter == 0 {
		c.StallAfter = DefaultStallAfter
	}
	c.SendRate = rateOrDefault(c.SendRate, DefaultSendRate)
	c.PerIPRate = rateOrDefault(c.PerIPRate, DefaultPerIPRate)
	if c.PerIPBurst == 0 {
		c.PerIPBurst = DefaultPerIPBurst
	}
	c.MaxAmplification = rateOrDefault(c.MaxAmplification, DefaultMaxAmplification)
	switch {
	case c.PrefixReplyRate == 0:
		c.PrefixReplyRate, c.PrefixReplyBurst = DefaultPrefixReplyRate, DefaultPrefixReplyBurst
	case c.PrefixReplyRate > 0:
		if c.PrefixReplyBurst == 0 {
			c.PrefixReplyBurst = max(DefaultPrefixReplyBurst, int(c.PrefixReplyRate))
		}
	default:
		c.PrefixReplyRate, c.PrefixReplyBurst = krpc.NoCap, 0
	}
	if c.PeerTTL == 0 {
		c.PeerTTL = DefaultPeerTTL
	}
	if c.MaxValues == 0 {
		c.MaxValues = DefaultMaxValues
	}
	if c.SampleInterval == 0 {
		c.SampleInterval = DefaultSampleInterval
	}
	if c.ItemTTL == 0 {
		c.ItemTTL = DefaultItemTTL
	}
	if c.MaxItems == 0 {
		c.MaxItems = DefaultMaxItems
	}
	if c.Version == nil {
		c.Version = DefaultVersion
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c, nil
}

// rateOrDefault fills a rate or cap whose zero means def and whose
// negative values mean none.
func rateOrDefault(v, def float64) float64 {
	switch {
	case v == 0:
		return def
	case v < 0:
		return krpc.NoCap
	}
	return v
}
