package crawler

import (
	"net/netip"
	"sync"

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
// as a BEP 5 node does, with the node's query handler (package serve):
// ping, find_node, get_peers and announce_peer, and error 204 for every
// other method. What is its own is the reply cap and the feed of queriers
// to the crawl. Its routing table holds the nodes that answered the crawl.
// ServeKRPC runs on the transport's read goroutine; the event loop feeds
// the table (which has its own lock) and reads the counters.
type responder struct {
	*serve.Handler
	table table.Table
	rec   Recorder
	lim   *rate.Limiter      // replies per second, all queriers together
	heard chan krpc.NodeInfo // queriers, for the event loop to discover

	mu  sync.Mutex
	ihs map[krpc.ID]struct{} // infohashes of incoming get_peers and announce_peer
}

func newResponder(cfg Config) (*responder, error) {
	ipsPerBucket := 0 // table.DefaultIPsPerBucket
	if cfg.TestNet {
		ipsPerBucket = -1 // test networks put many nodes on one IP
	}
	tab, err := table.New(table.KBucket, table.Config{Self: cfg.ID, IPsPerBucket: ipsPerBucket, Now: cfg.Now})
	if err != nil {
		return nil, err
	}
	tok, err := tokens.New(tokens.Config{Now: cfg.Now})
	if err != nil {
		return nil, err
	}
	ps, err := peerstore.New(peerstore.Config{Now: cfg.Now})
	if err != nil {
		return nil, err
	}
	r := &responder{
		table: tab, rec: cfg.Recorder,
		lim:   rate.NewLimiter(rate.Limit(cfg.Rate), max(1, int(cfg.Rate/10))),
		heard: make(chan krpc.NodeInfo, heardQueue),
		ihs:   make(map[krpc.ID]struct{}),
	}
	// The one table serves both families: the crawl has one socket, and
	// the handler lists only nodes of the family a reply asks for.
	r.Handler, err = serve.New(serve.Config{
		ID: cfg.ID, Table4: tab, Table6: tab, Tokens: tok, Peers: ps,
		Observer: observe.ObserverFunc(r.record),
		Heard:    r.hear,
		Answer:   func(*krpc.Msg, netip.AddrPort) bool { return r.lim.Allow() },
		Now:      cfg.Now,
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

// hear queues a querier for the event loop to discover, unless it is
// read-only (BEP 43: it answers nothing) or the queue is full.
func (r *responder) hear(q *krpc.Msg, querier krpc.NodeInfo) {
	if q.RO {
		return
	}
	select {
	case r.heard <- querier:
	default:
	}
}

// record reports a querier's sighting and counts its infohash.
func (r *responder) record(s observe.Sighting) {
	if !s.Infohash.IsZero() {
		r.mu.Lock()
		r.ihs[s.Infohash] = struct{}{}
		r.mu.Unlock()
	}
	if r.rec != nil {
		r.rec.Observe(s)
	}
}

// queries returns the number of queries received, answered or not.
func (r *responder) queries() uint64 { return r.Stats().Total }

// infohashes returns the number of distinct infohashes queried or
// announced to the crawler.
func (r *responder) infohashes() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ihs)
}
