package crawler

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/lightdht/lightdht/internal/peerstore"
	"github.com/lightdht/lightdht/krpc"
	"github.com/lightdht/lightdht/observe"
	"github.com/lightdht/lightdht/serve"
	"github.com/lightdht/lightdht/table"
	"github.com/lightdht/lightdht/tokens"
)

// heardQueue bounds the queriers waiting for the event loop. When it is
// full a querier is not queued for a query, though its sighting is still
// recorded: it will be heard again.
const heardQueue = 1024

// responder answers the queries that reach a crawl with Config.Respond,
// as a BEP 5 node does, and records each of them. Its routing table holds
// the nodes that answered the crawl. ServeKRPC runs on the transport's
// read goroutine; the event loop feeds the table (which has its own lock)
// and reads the counters.
type responder struct {
	id     krpc.ID
	table  table.Table
	tokens *tokens.Issuer
	peers  *peerstore.Store
	rec    Recorder
	lim    *rate.Limiter      // replies per second, all queriers together
	heard  chan krpc.NodeInfo // queriers, for the event loop to discover

	closest []table.Entry // read goroutine only

	queries atomic.Uint64 // queries received

	mu  sync.Mutex
	ihs map[krpc.ID]struct{} // infohashes of incoming get_peers and announce_peer
}

func newResponder(cfg Config) (*responder, error) {
	ipsPerBucket := 0 // table.DefaultIPsPerBucket
	if cfg.TestNet {
		ipsPerBucket = -1 // test networks put many nodes on one IP
	}
	tab, err := table.New(table.KBucket, table.Config{Self: cfg.ID, IPsPerBucket: ipsPerBucket})
	if err != nil {
		return nil, err
	}
	tok, err := tokens.New(tokens.Config{})
	if err != nil {
		return nil, err
	}
	ps, err := peerstore.New(peerstore.Config{})
	if err != nil {
		return nil, err
	}
	return &responder{
		id: cfg.ID, table: tab, tokens: tok, peers: ps, rec: cfg.Recorder,
		lim:   rate.NewLimiter(rate.Limit(cfg.Rate), max(1, int(cfg.Rate/10))),
		heard: make(chan krpc.NodeInfo, heardQueue),
		ihs:   make(map[krpc.ID]struct{}),
	}, nil
}

// ServeKRPC answers one query: ping, find_node, get_peers and
// announce_peer; every other method gets error 204.
func (r *responder) ServeKRPC(reply, q *krpc.Msg, src netip.AddrPort) bool {
	r.queries.Add(1)
	querier := krpc.NodeInfo{ID: q.A.ID, Addr: src}
	var s observe.Sighting
	if !q.A.ID.IsZero() {
		s = observe.Sighting{Node: querier, Time: time.Now(), Source: observe.SourceQuery, Method: q.Q,
			Version: string(q.V), ReadOnly: q.RO, SecureID: secure(querier)}
		if q.Q == krpc.MethodGetPeers || q.Q == krpc.MethodAnnouncePeer {
			s.Infohash = q.A.InfoHash
		}
		// Recorded once the query is handled, so that an accepted
		// announce carries the peer it stored.
		defer r.record(&s)
		if !q.RO {
			select {
			case r.heard <- querier:
			default:
			}
		}
	}
	if !r.lim.Allow() {
		return false // over the reply cap
	}
	if q.A.ID.IsZero() {
		return reply.Fail(krpc.ErrorMissingID)
	}
	reply.IP = src // BEP 42: tell the querier its address
	reply.R.ID = r.id
	switch q.Q {
	case krpc.MethodPing:
	case krpc.MethodFindNode:
		if q.A.Target.IsZero() {
			return reply.Fail(krpc.ErrorMissingTarget)
		}
		r.closestNodes(reply, q.A.Target, src)
	case krpc.MethodGetPeers:
		if q.A.InfoHash.IsZero() {
			return reply.Fail(krpc.ErrorMissingInfohash)
		}
		reply.R.Token = r.tokens.Append(reply.R.Token[:0], src.Addr())
		reply.R.Values = r.peers.AppendPeers(reply.R.Values[:0], q.A.InfoHash, peerstore.FamilyOf(src.Addr()), serve.DefaultMaxValues, q.A.NoSeed)
		if len(reply.R.Values) == 0 {
			r.closestNodes(reply, q.A.InfoHash, src)
		}
	case krpc.MethodAnnouncePeer:
		if q.A.InfoHash.IsZero() {
			return reply.Fail(krpc.ErrorMissingInfohash)
		}
		if !r.tokens.Valid(q.A.Token, src.Addr()) {
			return reply.Fail(krpc.ErrorBadToken)
		}
		peer, ok := q.A.AnnouncedPeer(src)
		if !ok {
			return reply.Fail(krpc.ErrorBadPort)
		}
		s.Peer = peer
		r.peers.Announce(q.A.InfoHash, s.Peer, q.A.Seed)
	default:
		return reply.Fail(krpc.ErrorMethodUnknown)
	}
	return true
}

// closestNodes puts the 8 nodes of the table closest to target in reply,
// as nodes or, for an IPv6 querier, nodes6 (BEP 32).
func (r *responder) closestNodes(reply *krpc.Msg, target krpc.ID, src netip.AddrPort) {
	r.closest = r.table.AppendClosest(r.closest[:0], target, table.DefaultK)
	dst := &reply.R.Nodes
	if !src.Addr().Unmap().Is4() {
		dst = &reply.R.Nodes6
	}
	*dst = (*dst)[:0]
	for _, e := range r.closest {
		*dst = append(*dst, e.NodeInfo)
	}
}

// record reports a querier's sighting and counts its infohash.
func (r *responder) record(s *observe.Sighting) {
	if !s.Infohash.IsZero() {
		r.mu.Lock()
		r.ihs[s.Infohash] = struct{}{}
		r.mu.Unlock()
	}
	if r.rec != nil {
		r.rec.Observe(*s)
	}
}

// infohashes returns the number of distinct infohashes queried or
// announced to the crawler.
func (r *responder) infohashes() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ihs)
}
