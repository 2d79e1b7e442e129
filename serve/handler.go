package serve

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lightdht/lightdht/bep42"
	"github.com/lightdht/lightdht/bep44"
	"github.com/lightdht/lightdht/internal/peerstore"
	"github.com/lightdht/lightdht/krpc"
	"github.com/lightdht/lightdht/observe"
	"github.com/lightdht/lightdht/table"
	"github.com/lightdht/lightdht/tokens"
)

// Config is what a Handler is built from. Tokens and Peers are required;
// every other part is optional, and a method whose part is missing is
// answered as unknown (error 204).
type Config struct {
	// ID is the node ID put in every reply, until SetID changes it.
	ID krpc.ID

	// Table4 and Table6 are the routing tables whose closest nodes fill
	// "nodes" (IPv4) and "nodes6" (IPv6, BEP 32); only entries that have
	// answered one of our queries and failed none since are listed
	// (table.Table.AppendClosestReplied). Nil: the handler has no
	// nodes of that family to hand out. The same table may be given for
	// both: each list then gets the entries of its family among the K
	// closest, so a table that mixes families hands out fewer than K of
	// each (the crawler's, with one socket, holds one family).
	Table4, Table6 table.Table
	// Tokens issues the tokens of get_peers and get replies and checks
	// those of announce_peer and put. Required.
	Tokens *tokens.Issuer
	// Peers stores announced peers and answers get_peers from them.
	// Required.
	Peers *peerstore.Store
	// Items stores the BEP 44 items put to this node. Nil: get and put
	// are unknown methods.
	Items *bep44.Store
	// Samples turns on BEP 51: sample_infohashes is answered with up to
	// SampleMax infohashes from Peers, drawn afresh once per
	// SampleInterval. Off: sample_infohashes is an unknown method.
	Samples bool
	// SampleInterval is how long one sample stands, and the interval
	// samplers are asked to wait. Zero: DefaultSampleInterval; at most
	// MaxSampleInterval.
	SampleInterval time.Duration

	// K is the number of closest nodes in a reply. Zero: table.DefaultK.
	K int
	// MaxValues caps the peers in one get_peers reply. Zero:
	// DefaultMaxValues.
	MaxValues int

	// Observer receives a sighting of every querier that sent an ID,
	// once its query has been handled, so that an accepted announce_peer
	// or put carries what it stored. Nil: none.
	Observer observe.Observer
	// Heard is called for every querier that sent an ID, on the
	// transport's read goroutine, before the handler decides whether to
	// answer. The node updates its routing table there; the crawler
	// queues the querier for a visit. Nil: nothing.
	Heard func(q *krpc.Msg, querier krpc.NodeInfo)
	// Answer is asked, after Heard, whether to answer a query at all;
	// false sends nothing. A read-only node (BEP 43) and the crawler's
	// reply cap use it. Nil: every query is answered.
	Answer func(q *krpc.Msg, src netip.AddrPort) bool

	// Now is the clock. Nil: time.Now.
	Now func() time.Time
}

// ErrConfig is wrapped by every error New returns for a bad Config.
var ErrConfig = errors.New("serve: config")

func (c Config) withDefaults() (Config, error) {
	switch {
	case c.Tokens == nil:
		return c, fmt.Errorf("%w: Tokens is required", ErrConfig)
	case c.Peers == nil:
		return c, fmt.Errorf("%w: Peers is required", ErrConfig)
	case c.K < 0:
		return c, fmt.Errorf("%w: negative K %d", ErrConfig, c.K)
	case c.MaxValues < 0:
		return c, fmt.Errorf("%w: negative MaxValues %d", ErrConfig, c.MaxValues)
	case c.SampleInterval < 0 || c.SampleInterval > MaxSampleInterval:
		return c, fmt.Errorf("%w: SampleInterval %v outside BEP 51's 0 to %v", ErrConfig, c.SampleInterval, MaxSampleInterval)
	}
	if c.K == 0 {
		c.K = table.DefaultK
	}
	if c.MaxValues == 0 {
		c.MaxValues = DefaultMaxValues
	}
	if c.SampleInterval == 0 {
		c.SampleInterval = DefaultSampleInterval
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c, nil
}

// Handler answers DHT queries; it implements krpc.Handler. It is safe for
// concurrent use: a node with two sockets calls it from both read
// goroutines. Its own mutable state is the sample cache (under sampleMu),
// the ID (an atomic, set by SetID) and the counters (atomics); the tables
// and stores guard themselves.
type Handler struct {
	cfg Config
	id  atomic.Pointer[krpc.ID] // the ID replies carry; cfg.ID at first

	queries   krpc.MethodCounts
	badTokens atomic.Uint64
	announces atomic.Uint64
	repeated  atomic.Uint64

	recent *recentQueries // retransmissions, recognised so they are counted once

	// scratch holds the buffers the closest-node lookups fill, one per
	// concurrent call, so that a reply costs no allocation.
	scratch sync.Pool

	sampleMu sync.Mutex // guards the cached BEP 51 sample
	sample   []krpc.ID
	sampleN  int
	sampleAt time.Time
}

// New checks cfg, fills its defaults and returns a handler.
func New(cfg Config) (*Handler, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	h := &Handler{cfg: cfg, recent: newRecentQueries()}
	h.SetID(cfg.ID)
	h.scratch.New = func() any {
		buf := make([]table.Entry, 0, cfg.K)
		return &buf
	}
	return h, nil
}

// SetID changes the ID every later reply carries, for a node that takes a
// new ID (BEP 42) while it runs.
func (h *Handler) SetID(id krpc.ID) { h.id.Store(&id) }

// ID returns the ID replies carry.
func (h *Handler) ID() krpc.ID { return *h.id.Load() }

// Stats counts what a handler has seen.
type Stats struct {
	Queries   map[string]uint64 // queries received, answered or not, by method (krpc.MethodCounts)
	Total     uint64            // all queries received
	BadTokens uint64            // announce_peer and put refused for a bad token
	Announces uint64            // announce_peer accepted and stored
	Repeated  uint64            // retransmissions: answered again, not heard or observed again
}

// Stats returns a snapshot of the handler's counters.
func (h *Handler) Stats() Stats {
	s := Stats{Queries: h.queries.Snapshot(true), BadTokens: h.badTokens.Load(), Announces: h.announces.Load(),
		Repeated: h.repeated.Load()}
	for _, v := range s.Queries {
		s.Total += v
	}
	return s
}

var errMissingSeq = &krpc.Error{Code: krpc.CodeProtocol, Msg: "missing seq"}

// ServeKRPC answers one query, filling reply; it returns false when no
// reply is to be sent. A retransmission (the same query with the same
// transaction ID from the same address, within RepeatWindow) is answered
// again, since the first reply may have been lost, but its querier is
// neither heard nor observed a second time: the data counts queries, not
// packets.
func (h *Handler) ServeKRPC(reply, q *krpc.Msg, src netip.AddrPort) bool {
	h.queries.Add(q.Q)
	var s *observe.Sighting // of the querier; nil when it sent no ID
	if !q.A.ID.IsZero() && h.recent.repeat(q, src, h.cfg.Now()) {
		h.repeated.Add(1)
	} else if !q.A.ID.IsZero() {
		querier := krpc.NodeInfo{ID: q.A.ID, Addr: src}
		s = &observe.Sighting{Node: querier, Source: observe.SourceQuery, Method: q.Q, Version: string(q.V), ReadOnly: q.RO}
		switch q.Q {
		case krpc.MethodGetPeers, krpc.MethodAnnouncePeer:
			s.Infohash = q.A.InfoHash
		case krpc.MethodGet:
			if h.cfg.Items != nil {
				s.Item = q.A.Target
			}
		}
		defer h.observe(s)
		if h.cfg.Heard != nil {
			h.cfg.Heard(q, querier)
		}
	}
	if h.cfg.Answer != nil && !h.cfg.Answer(q, src) {
		return false
	}
	if q.A.ID.IsZero() {
		return reply.Fail(krpc.ErrorMissingID)
	}
	reply.IP = src // BEP 42: tell the querier its address
	reply.R.ID = *h.id.Load()

	switch q.Q {
	case krpc.MethodPing:
		return true
	case krpc.MethodFindNode:
		if q.A.Target.IsZero() {
			return reply.Fail(krpc.ErrorMissingTarget)
		}
		h.closestNodes(reply, q.A.Target, q.A.Want, src)
		return true
	case krpc.MethodGetPeers:
		return h.getPeers(reply, q, src)
	case krpc.MethodAnnouncePeer:
		return h.announcePeer(reply, q, src, s)
	case krpc.MethodGet:
		if h.cfg.Items != nil {
			return h.get(reply, q, src)
		}
	case krpc.MethodPut:
		if h.cfg.Items != nil {
			return h.put(reply, q, src, s)
		}
	case krpc.MethodSampleInfohashes:
		if h.cfg.Samples {
			if q.A.Target.IsZero() {
				return reply.Fail(krpc.ErrorMissingTarget)
			}
			reply.R.Samples, reply.R.Num = h.sampleInfohashes(reply.R.Samples[:0])
			reply.R.Interval = int(h.cfg.SampleInterval / time.Second)
			h.closestNodes(reply, q.A.Target, q.A.Want, src)
			return true
		}
	}
	return reply.Fail(krpc.ErrorMethodUnknown)
}

func (h *Handler) getPeers(reply, q *krpc.Msg, src netip.AddrPort) bool {
	if q.A.InfoHash.IsZero() {
		return reply.Fail(krpc.ErrorMissingInfohash)
	}
	reply.R.Token = h.cfg.Tokens.Append(reply.R.Token[:0], src.Addr())
	reply.R.Values = h.cfg.Peers.AppendPeers(reply.R.Values[:0], q.A.InfoHash, peerstore.FamilyOf(src.Addr()), h.cfg.MaxValues, q.A.NoSeed)
	if len(reply.R.Values) == 0 {
		h.closestNodes(reply, q.A.InfoHash, q.A.Want, src)
	}
	if q.A.Scrape { // BEP 33
		seeds, peers := h.cfg.Peers.Scrape(q.A.InfoHash)
		reply.R.BFsd, reply.R.BFpe = seeds[:], peers[:]
	}
	return true
}

func (h *Handler) announcePeer(reply, q *krpc.Msg, src netip.AddrPort, s *observe.Sighting) bool {
	if q.A.InfoHash.IsZero() {
		return reply.Fail(krpc.ErrorMissingInfohash)
	}
	if !h.cfg.Tokens.Valid(q.A.Token, src.Addr()) {
		h.badTokens.Add(1)
		return reply.Fail(krpc.ErrorBadToken)
	}
	peer, ok := q.A.AnnouncedPeer(src)
	if !ok {
		return reply.Fail(krpc.ErrorBadPort)
	}
	h.cfg.Peers.Announce(q.A.InfoHash, peer, q.A.Seed)
	h.announces.Add(1)
	if s != nil { // nil for a retransmission
		s.Peer = peer
	}
	return true
}

// get answers a BEP 44 get: a token for a later put, the closest nodes,
// and the item when this node holds it.
func (h *Handler) get(reply, q *krpc.Msg, src netip.AddrPort) bool {
	if q.A.Target.IsZero() {
		return reply.Fail(krpc.ErrorMissingTarget)
	}
	reply.R.Token = h.cfg.Tokens.Append(reply.R.Token[:0], src.Addr())
	h.closestNodes(reply, q.A.Target, q.A.Want, src)
	it, ok := h.cfg.Items.Get(q.A.Target)
	if !ok {
		return true
	}
	if !it.Mutable {
		reply.R.V = it.V
		return true
	}
	seq := it.Seq
	reply.R.K, reply.R.Seq, reply.R.Sig = it.K, &seq, it.Sig
	// A getter that has this seq or a newer one needs no value.
	if q.A.Seq == nil || *q.A.Seq < it.Seq {
		reply.R.V = it.V
	}
	return true
}

// put answers a BEP 44 put: the store checks the item (size, signature,
// sequence number, CAS) and its error code goes back to the putter.
func (h *Handler) put(reply, q *krpc.Msg, src netip.AddrPort, s *observe.Sighting) bool {
	if !h.cfg.Tokens.Valid(q.A.Token, src.Addr()) {
		h.badTokens.Add(1)
		return reply.Fail(krpc.ErrorBadToken)
	}
	it := bep44.Item{V: q.A.V}
	if q.A.K != [32]byte{} {
		if q.A.Seq == nil {
			return reply.Fail(errMissingSeq)
		}
		it.Mutable, it.K, it.Salt, it.Seq, it.Sig = true, q.A.K, q.A.Salt, *q.A.Seq, q.A.Sig
	}
	if err := h.cfg.Items.Put(it, q.A.CAS); err != nil {
		var kerr *krpc.Error
		if !errors.As(err, &kerr) {
			kerr = &krpc.Error{Code: krpc.CodeServer, Msg: err.Error()}
		}
		return reply.Fail(kerr)
	}
	if s != nil { // who stored what; nil for a retransmission
		s.Item, s.ItemMutable, s.ItemSeq = it.Target(), it.Mutable, it.Seq
	}
	return true
}

// sampleInfohashes appends the BEP 51 sample: up to SampleMax infohashes
// the peer store holds, drawn afresh once per SampleInterval.
func (h *Handler) sampleInfohashes(dst []krpc.ID) ([]krpc.ID, int) {
	now := h.cfg.Now()
	h.sampleMu.Lock()
	defer h.sampleMu.Unlock()
	if h.sampleAt.IsZero() || now.Sub(h.sampleAt) >= h.cfg.SampleInterval || now.Before(h.sampleAt) {
		h.sample, h.sampleN = h.cfg.Peers.SampleInfohashes(h.sample[:0], SampleMax)
		h.sampleAt = now
	}
	return append(dst, h.sample...), h.sampleN
}

// closestNodes fills reply with the K closest nodes to target: from the
// querier's own family by default, or from the families BEP 32's want
// asks for.
func (h *Handler) closestNodes(reply *krpc.Msg, target krpc.ID, want krpc.Want, src netip.AddrPort) {
	if want == 0 {
		want = krpc.WantN4
		if !src.Addr().Unmap().Is4() {
			want = krpc.WantN6
		}
	}
	if want&krpc.WantN4 != 0 && h.cfg.Table4 != nil {
		reply.R.Nodes = h.appendClosest(reply.R.Nodes[:0], h.cfg.Table4, target, false)
	}
	if want&krpc.WantN6 != 0 && h.cfg.Table6 != nil {
		reply.R.Nodes6 = h.appendClosest(reply.R.Nodes6[:0], h.cfg.Table6, target, true)
	}
}

// appendClosest appends the nodes of the v6 family among tab's K closest
// to target that have answered our queries (see
// table.Table.AppendClosestReplied): a node that has only queried us is
// not handed out before it answers one of ours.
func (h *Handler) appendClosest(dst []krpc.NodeInfo, tab table.Table, target krpc.ID, v6 bool) []krpc.NodeInfo {
	buf := h.scratch.Get().(*[]table.Entry)
	es := tab.AppendClosestReplied((*buf)[:0], target, h.cfg.K)
	for _, e := range es {
		if e.Is6() == v6 {
			dst = append(dst, e.NodeInfo)
		}
	}
	*buf = es[:0]
	h.scratch.Put(buf)
	return dst
}

// observe reports a querier's sighting, with its time and BEP 42 status.
func (h *Handler) observe(s *observe.Sighting) {
	if h.cfg.Observer == nil {
		return
	}
	s.Time = h.cfg.Now()
	s.SecureID = bep42.Acceptable(s.Node.ID, s.Node.Addr.Addr())
	h.cfg.Observer.Observe(*s)
}
