package observe

import (
	"net/netip"
	"time"

	"github.com/lightdht/lightdht/krpc"
)

// Source says how a node came to be seen.
type Source uint8

// Sources of a sighting.
const (
	// SourceReply: the node replied to one of our queries.
	SourceReply Source = iota + 1
	// SourceQuery: the node sent us a query.
	SourceQuery
	// SourceReported: another node listed it in a compact node list; we
	// have not talked to it.
	SourceReported
	// SourceTimeout: the node did not answer one of our queries.
	SourceTimeout
)

// String returns "reply", "query", "reported" or "timeout".
func (s Source) String() string {
	switch s {
	case SourceReply:
		return "reply"
	case SourceQuery:
		return "query"
	case SourceReported:
		return "reported"
	case SourceTimeout:
		return "timeout"
	}
	return "unknown"
}

// Sighting is one observation of a node.
type Sighting struct {
	// Node is the node seen. Its ID is never zero: the node and the
	// crawler report a node only once they know its ID (an address that
	// timed out before it said who it is is not a sighting).
	Node   krpc.NodeInfo
	Time   time.Time
	Source Source
	// Method is the query involved: the one the node answered or sent,
	// or the one whose reply listed it.
	Method string
	// Version is the node's "v" client version, when it spoke to us.
	Version string
	// RTT is the round-trip time of the query it answered (SourceReply).
	RTT time.Duration
	// Reporter is the node whose reply listed this one (SourceReported).
	Reporter krpc.NodeInfo
	// ReadOnly: the node set BEP 43's "ro" flag.
	ReadOnly bool
	// SecureID reports whether the node's ID satisfies BEP 42 for its IP
	// (always true for exempt local and private addresses).
	SecureID bool
	// Infohash is the infohash of an incoming get_peers or announce_peer
	// (SourceQuery), zero otherwise.
	Infohash krpc.ID
	// Peer is the peer an accepted announce_peer stored (SourceQuery with
	// Method announce_peer), its port resolved from implied_port; the zero
	// value otherwise.
	Peer netip.AddrPort
	// Item is the BEP 44 target of an incoming get, or of a put this node
	// accepted and stored (SourceQuery; Method tells which); zero
	// otherwise. For a stored mutable item ItemMutable is set and ItemSeq
	// is its sequence number.
	Item        krpc.ID
	ItemMutable bool
	ItemSeq     int64
}

// Observer receives every sighting. A node calls Observe synchronously on
// the goroutine that reads its socket: Observe must never block (a store
// that cannot keep up drops and counts, as db.DB.NonBlocking does) and
// must not call back into the Node's blocking methods. The crawler's
// recorder may block: that slows the crawl down, which it prefers to
// losing what it saw.
type Observer interface {
	Observe(Sighting)
}

// ObserverFunc adapts a function to the Observer interface.
type ObserverFunc func(Sighting)

// Observe calls f(s).
func (f ObserverFunc) Observe(s Sighting) { f(s) }
