package synth

import (
	"net/netip"
	"time"

	"github.com/lightdht/lightdht/internal/simnet"
	"github.com/lightdht/lightdht/krpc"
)

// NodeTruth is the ground truth about one entry of the network.
type NodeTruth struct {
	ID   krpc.ID // the ID it answers with (SetID changes it)
	Addr netip.AddrPort
	// ListedID is the ID other nodes' tables list it under: ID, unless
	// SetID changed it.
	ListedID krpc.ID
	Version  string // the "v" it sends; "" for none and for bogons

	// Bogon marks an entry with a private, loopback or reserved address
	// that only appears in tables; it is neither Silent nor Answering.
	Bogon bool

	// Silent marks a node that never answers.
	Silent bool

	// Answering is true for nodes that answer queries (not Silent, not
	// Bogon), regardless of SetOnline and churn: the set a complete crawl
	// should find.
	Answering bool

	// Online reports whether the node answered queries at the moment
	// Truth was called (Answering, not set offline, not churned out).
	Online bool

	BEP42 bool // the ID is BEP 42 valid for the address (bep42.Valid)
	BEP51 bool // answers sample_infohashes
	Num   int  // size of its infohash set (0 unless BEP51)

	// DropsUnknown marks an answering node that silently drops queries
	// of methods it does not know, sample_infohashes included
	// (Config.DropUnknownShare).
	DropsUnknown bool

	// The live-like roles (Config's fields after MinQueryGap).

	// RTT is the node's round-trip time without jitter: twice the
	// network's Latency plus its hold (Config.RTTMedian). A node whose
	// RTT exceeds a crawler's timeout answers too late to be heard.
	RTT time.Duration
	// RateLimits marks a node that blocks fast sources
	// (Config.RateLimitShare).
	RateLimits bool
	// Sybil marks a node on one of the SybilHosts IPs; SharedIP one
	// behind a NAT with others (SharedIPShare).
	Sybil, SharedIP bool
	// Rotates marks a node that takes a new ID every RotatePeriod; ID
	// is the one it has when Truth is called.
	Rotates bool
	// Poisons marks a node that lists fake contacts (PoisonShare).
	Poisons bool
	// Malformed names the bad entry its replies carry
	// (MalformedShare): "truncated", "port0", "zeroid", or "".
	Malformed string
}

// Truth is the ground truth of a network.
type Truth struct {
	// Nodes holds every entry, N nodes and Bogons bogons, in ascending ID
	// order; its indexes are the entry indexes of the Network's methods.
	Nodes []NodeTruth

	net *Network
}

// Answering returns the number of nodes that answer queries (Answering).
func (t Truth) Answering() int {
	c := 0
	for i := range t.Nodes {
		if t.Nodes[i].Answering {
			c++
		}
	}
	return c
}

// Infohashes returns the infohash set of entry i (see Network.Infohashes).
func (t Truth) Infohashes(i int) []krpc.ID { return t.net.Infohashes(i) }

// Index returns the entry index of the node or bogon at addr.
func (t Truth) Index(addr netip.AddrPort) (int, bool) { return t.net.lookup(addr) }

// Truth returns the ground truth: every entry with its ID, address and
// role. It allocates about 100 bytes per entry; call it once per test.
func (n *Network) Truth() Truth {
	now := time.Now()
	nodes := make([]NodeTruth, len(n.ids))
	for i := range nodes {
		f := n.flags[i]
		answering := f&(flagSilent|flagBogon) == 0
		nt := NodeTruth{
			ID:        n.idOf(i),
			ListedID:  n.ids[i],
			Addr:      n.addr(i),
			Version:   string(n.vers[n.ver[i]]),
			Bogon:     f&flagBogon != 0,
			Silent:    f&flagSilent != 0,
			Answering: answering,
			Online:    answering && n.offline[i/32].Load()&(1<<(i%32)) == 0 && !n.churned(i, now),
			BEP42:     f&flagBEP42 != 0,
			BEP51:     f&flagBEP51 != 0,

			DropsUnknown: f&flagDropUnknown != 0,
		}
		if nt.BEP51 {
			nt.Num = n.cfg.InfohashesPerNode
		}
		if answering {
			nt.RTT = 2*n.cfg.Latency + n.hold(i)
		}
		if n.xf != nil {
			x := n.xf[i]
			nt.RateLimits, nt.Rotates, nt.Poisons = x&xRateLimit != 0, x&xRotate != 0, x&xPoison != 0
			nt.Sybil, nt.SharedIP = x&xSybil != 0, x&xShared != 0
			switch {
			case x&xTruncate != 0:
				nt.Malformed = "truncated"
			case x&xPort0 != 0:
				nt.Malformed = "port0"
			case x&xZeroID != 0:
				nt.Malformed = "zeroid"
			}
		}
		if nt.Bogon {
			nt.Version = ""
		}
		nodes[i] = nt
	}
	return Truth{Nodes: nodes, net: n}
}

// Len returns the number of entries, N + Bogons.
func (n *Network) Len() int { return len(n.ids) }

// Sim returns the simnet network the nodes live on. The code under test
// gets its conn from it (NewConn4, which hands out 127.0.0.2 upwards and
// never collides with a synthetic node, or Listen), and may change its
// conditions with SetConditions or SetLinkFilter. Do not call SetHandler
// on it.
func (n *Network) Sim() *simnet.Network { return n.sim }

// Bootstrap returns the addresses of up to 8 answering nodes spread over
// the ID space, to start a crawl from. They are exempt from churn (but not
// from SetOnline).
func (n *Network) Bootstrap() []netip.AddrPort {
	out := make([]netip.AddrPort, len(n.boot))
	for j, i := range n.boot {
		out[j] = n.addr(int(i))
	}
	return out
}

// Close closes the simnet network and drops the replies nodes are
// holding (Config.RTTMedian). It always returns nil.
func (n *Network) Close() error {
	n.closeOnce.Do(func() { close(n.done) })
	return n.sim.Close()
}

// Stats counts what the synthetic nodes received and sent.
type Stats struct {
	Packets     uint64 // packets handed to the synthetic network
	NoSuchNode  uint64 // packets to an address with no node or bogon
	Unparseable uint64 // packets that are not KRPC (no reply)
	NonQuery    uint64 // replies and errors sent to a node (ignored)

	// Queries counts received queries by method ("ping", "find_node",
	// "get_peers", "announce_peer", "sample_infohashes" and "other"),
	// whether the receiver answers or not.
	Queries map[string]uint64

	Unanswered uint64 // queries to silent, offline or bogon entries
	Dropped    uint64 // queries of unknown methods dropped (Config.DropUnknownShare)
	Replies    uint64 // replies ("y":"r") sent
	Errors     uint64 // errors ("y":"e") sent

	MaxPerNode      uint64 // the most queries one entry received
	MaxPerNodeIndex int    // an entry that received MaxPerNode (-1 if none)

	// Sampled counts answered sample_infohashes queries. Violations counts
	// those that came less than Interval after the previous answered one
	// to the same node: two quick samples of a node are one violation.
	Sampled    uint64
	Violations uint64

	// RateViolations counts queries that reached a node less than
	// Config.MinQueryGap after the previous one; 0 without MinQueryGap.
	RateViolations uint64

	// RateBans counts the times a node began to block a source
	// (Config.RateLimitShare), RateLimited the queries it ignored while
	// blocked; a polite crawler trips none.
	RateBans, RateLimited uint64
	// FakeContacts counts the fake contacts poisoners listed
	// (PoisonShare), MalformedReplies the replies that carried a bad
	// entry (MalformedShare).
	FakeContacts, MalformedReplies uint64
}

// Stats returns a snapshot of the counters. It scans the per-entry counts
// for MaxPerNode, so it costs a few milliseconds at a million nodes.
func (n *Network) Stats() Stats {
	s := Stats{
		Packets:          n.st.packets.Load(),
		NoSuchNode:       n.st.noSuchNode.Load(),
		Unparseable:      n.st.unparseable.Load(),
		NonQuery:         n.st.nonQuery.Load(),
		Queries:          n.st.byMethod.Snapshot(false),
		Unanswered:       n.st.unanswered.Load(),
		Dropped:          n.st.dropped.Load(),
		Replies:          n.st.replies.Load(),
		Errors:           n.st.errors.Load(),
		Sampled:          n.st.sampled.Load(),
		Violations:       n.st.violations.Load(),
		RateViolations:   n.st.rateViolations.Load(),
		RateBans:         n.st.rateBans.Load(),
		RateLimited:      n.st.rateLimited.Load(),
		FakeContacts:     n.st.fake.Load(),
		MalformedReplies: n.st.malformed.Load(),
		MaxPerNodeIndex:  -1,
	}
	for i := range n.queries {
		if q := uint64(n.queries[i].Load()); q > s.MaxPerNode {
			s.MaxPerNode, s.MaxPerNodeIndex = q, i
		}
	}
	return s
}

// QueriesTo returns the number of queries entry i received.
func (n *Network) QueriesTo(i int) int { return int(n.queries[i].Load()) }

// SampleTimes returns when entry i answered sample_infohashes queries, as
// offsets from the network's creation (on the fake clock in a synctest
// bubble).
func (n *Network) SampleTimes(i int) []time.Duration {
	n.sampleM.Lock()
	defer n.sampleM.Unlock()
	return append([]time.Duration(nil), n.samples[int32(i)]...)
}
