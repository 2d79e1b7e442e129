package lightdht

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"golang.org/x/time/rate"

	"github.com/lightdht/lightdht/bep42"
	"github.com/lightdht/lightdht/bep44"
	"github.com/lightdht/lightdht/internal/peerstore"
	"github.com/lightdht/lightdht/krpc"
	"github.com/lightdht/lightdht/serve"
	"github.com/lightdht/lightdht/table"
	"github.com/lightdht/lightdht/tokens"
)

// Node is a DHT node. Create it with New, run it with Serve, stop it with
// Close. Its methods are safe for concurrent use.
type Node struct {
	cfg    Config
	log    zerolog.Logger
	v4, v6 *family // nil when that socket is not configured
	tokens *tokens.Issuer
	peers  *peerstore.Store
	items  *bep44.Store // BEP 44 items put to this node
	limits *admitter    // per-IP limits, shared by both families
	// handler answers the queries of both families' sockets.
	handler *serve.Handler

	// id is the node ID. It changes only when the node learns an
	// external address its ID is not valid for (see learned); idMu
	// serialises such changes, readers load the pointer.
	id   atomic.Pointer[krpc.ID]
	idMu sync.Mutex

	mu       sync.Mutex
	serving  bool
	closed   bool
	ctx      context.Context // Serve's, for work started later (rejoins); set with serving
	cancel   context.CancelFunc
	boot     *bootFlight // the bootstrap in progress, which Bootstrap joins
	wg       sync.WaitGroup
	stopOnce sync.Once
	rejoin   rejoiner

	stats nodeCounters
}

// family is one address family: its socket's transport and its routing
// table (BEP 32 keeps them apart).
type family struct {
	v6     bool
	tr     *krpc.Transport
	table  table.Table
	recall *recall    // how the addresses we queried answered, shared by lookups
	votes  *ballotBox // our external address, as the repliers see it (BEP 42)

	resumeOnce sync.Once // the saved nodes (Config.Resume) are pinged once

	pingMu  sync.Mutex
	pinging map[netip.AddrPort]struct{} // table pings in flight
	pingLim *rate.Limiter               // table pings per second; nil: no cap
}

// maxTablePings bounds the pings a family's table may have in flight. A
// full bucket asks for pings each time a new node wants in; under a flood
// of queriers with fresh IDs that would be a ping storm. Requests over the
// bound are skipped: the bucket asks again with the next candidate.
const maxTablePings = 16

// tablePingShare is the share of the send rate that the table's pings may
// use. Queriers that want into full buckets ask for pings as fast as they
// query; without a cap, a flood of queriers within their per-IP limits
// turns into the node's own ping storm, and queries go out before replies
// (they wait for the send limiter, replies over it are dropped), so the
// storm would take the replies of the nodes the node knows.
const tablePingShare = 0.05

type nodeCounters struct {
	addrChanges   atomic.Uint64
	idChanges     atomic.Uint64
	rateLimited   atomic.Uint64
	insecureIDs   atomic.Uint64
	lookups       atomic.Uint64
	lookupQueries atomic.Uint64
}

// New checks cfg and returns a node. It starts nothing: call Serve.
func New(cfg Config) (*Node, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: cfg.Logger.With().Str("component", "node").Logger()}
	id := startID(cfg)
	n.id.Store(&id)
	if n.tokens, err = tokens.New(tokens.Config{Now: cfg.Now}); err != nil {
		return nil, fmt.Errorf("lightdht: %w", err)
	}
	if n.peers, err = peerstore.New(peerstore.Config{Now: cfg.Now, TTL: cfg.PeerTTL}); err != nil {
		return nil, fmt.Errorf("lightdht: %w", err)
	}
	n.limits = &admitter{now: cfg.Now, drops: func() { n.stats.rateLimited.Add(1) }}
	if cfg.SendRate > 0 { // the only limit under which a record counts: the send cap and the heavy share
		n.limits.known = newKnownAddrs()
	}
	if cfg.PerIPRate > 0 {
		n.limits.ips = newIPLimiter(cfg.PerIPRate, cfg.PerIPBurst)
		if cfg.SendRate > 0 {
			r := heavyShare * cfg.SendRate
			n.limits.heavy = rate.NewLimiter(rate.Limit(r), max(1, int(r/10))) // half the send limiter's burst
		}
	}
	n.items = bep44.NewStore(bep44.StoreConfig{TTL: cfg.ItemTTL, MaxItems: cfg.MaxItems, Now: cfg.Now})
	var table4, table6 table.Table
	if cfg.Conn4 != nil {
		if n.v4, err = n.newFamily(cfg, false); err != nil {
			return nil, err
		}
		table4 = n.v4.table
	}
	if cfg.Conn6 != nil {
		if n.v6, err = n.newFamily(cfg, true); err != nil {
			return nil, err
		}
		table6 = n.v6.table
	}
	hcfg := serve.Config{
		ID: n.ID(), Table4: table4, Table6: table6,
		Tokens: n.tokens, Peers: n.peers, Items: n.items,
		Samples: true, SampleInterval: cfg.SampleInterval,
		K: cfg.K, MaxValues: cfg.MaxValues,
		Observer: cfg.Observer, Now: cfg.Now,
		Heard: n.heard,
	}
	if cfg.ReadOnly {
		hcfg.Answer = func(*krpc.Msg, netip.AddrPort) bool { return false } // BEP 43: a read-only node answers nothing
	}
	if n.handler, err = serve.New(hcfg); err != nil {
		return nil, fmt.Errorf("lightdht: %w", err)
	}
	for _, f := range n.families() {
		if err := n.newTransport(cfg, f); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// heard puts a node that queried us in its family's routing table, unless
// the query came from a source the per-IP limits count as heavy: a
// flooding source must not be able to churn the table. A querier that has
// never answered us is pinged: until it answers it is only a candidate,
// left out of the nodes our replies hand out (serve lists only nodes that
// replied), since many clients query without ever answering.
func (n *Node) heard(q *krpc.Msg, querier krpc.NodeInfo) {
	// A querier that presents a valid token has shown that it receives
	// at its address (the token came in our reply to it), as a node
	// that answers us has: its queries come first from now on, as
	// known.
	if n.limits.known != nil && len(q.A.Token) > 0 && (q.Q == krpc.MethodAnnouncePeer || q.Q == krpc.MethodPut) &&
		n.tokens.Valid(q.A.Token, querier.Addr.Addr()) {
		n.limits.known.add(querier.Addr, n.cfg.Now())
	}
	if q.Admission == krpc.AdmittedHeavy {
		return
	}
	f := n.familyFor(querier.Addr.Addr())
	if !n.update(f, querier, table.Queried, q.RO) {
		return
	}
	if e, ok := f.table.Get(querier.ID); ok && e.Addr == querier.Addr && e.LastReply.IsZero() &&
		e.Failures < table.DefaultMaxFailures && !f.recall.quiet(querier.Addr) {
		n.pingEntry(f, querier)
	}
}

// newFamily makes a family's routing table; its transport comes once the
// query handler, which needs both families' tables, exists.
func (n *Node) newFamily(cfg Config, v6 bool) (*family, error) {
	f := &family{v6: v6, recall: newRecall(cfg.Now, cfg.StallAfter), votes: newBallotBox()}
	if cfg.SendRate > 0 {
		r := tablePingShare * cfg.SendRate
		f.pingLim = rate.NewLimiter(rate.Limit(r), maxTablePings)
	}
	var err error
	f.table, err = table.New(cfg.Table, table.Config{Self: n.ID(), K: cfg.K, Extended: !cfg.PlainTable, IPsPerBucket: cfg.IPsPerBucket, Now: cfg.Now})
	if err != nil {
		return nil, fmt.Errorf("lightdht: %w", err)
	}
	return f, nil
}

// newTransport makes the transport of family f, whose queries go to the
// node's handler after the per-IP admission.
func (n *Node) newTransport(cfg Config, f *family) error {
	conn := cfg.Conn4
	if f.v6 {
		conn = cfg.Conn6
	}
	// cfg is filled (see withDefaults), so every value passed is explicit;
	// only SendBurst and Limits, which Config does not offer, take the
	// transport's defaults.
	var err error
	f.tr, err = krpc.New(krpc.Config{
		Conn:    conn,
		Handler: n.handler,
		Timeout: cfg.QueryTimeout,

		AdaptiveTimeout: !cfg.FixedTimeouts,
		Retries:         cfg.Retries,
		SendRate:        cfg.SendRate,
		Version:         cfg.Version,
		ReadOnly:        cfg.ReadOnly,
		Logger:          cfg.Logger,

		Admit:            n.limits.verdict,
		MaxAmplification: cfg.MaxAmplification,
		PrefixReplyRate:  cfg.PrefixReplyRate,
		PrefixReplyBurst: cfg.PrefixReplyBurst,
	})
	if err != nil {
		return fmt.Errorf("lightdht: %w", err)
	}
	return nil
}

// ID returns the node's ID.
func (n *Node) ID() krpc.ID { return *n.id.Load() }

// Addr returns the local address of the IPv4 socket, or of the IPv6 one if
// there is no IPv4 socket.
func (n *Node) Addr() netip.AddrPort {
	f := n.primary()
	return addrPortOf(f.tr.LocalAddr().String())
}

func addrPortOf(s string) netip.AddrPort {
	ap, _ := netip.ParseAddrPort(s)
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// primary is the family lookups use by default: IPv4 when configured.
func (n *Node) primary() *family {
	if n.v4 != nil {
		return n.v4
	}
	return n.v6
}

func (n *Node) familyFor(a netip.Addr) *family {
	if a.Is4() || a.Is4In6() {
		return n.v4
	}
	return n.v6
}

// Table returns the routing table of the IPv4 socket (v6 false) or of the
// IPv6 socket (v6 true), or nil when that socket is not configured.
func (n *Node) Table(v6 bool) table.Table {
	f := n.v4
	if v6 {
		f = n.v6
	}
	if f == nil {
		return nil
	}
	return f.table
}

// Serve runs the node until ctx ends or Close is called, then closes it.
// It reads from the sockets, bootstraps from Config.Bootstrap and keeps
// the routing tables fresh in the background. It returns nil after a clean
// stop.
func (n *Node) Serve(ctx context.Context) error {
	n.mu.Lock()
	switch {
	case n.closed:
		n.mu.Unlock()
		return krpc.ErrClosed
	case n.serving:
		n.mu.Unlock()
		return errors.New("lightdht: Serve called twice")
	}
	n.serving = true
	ctx, n.cancel = context.WithCancel(ctx)
	n.ctx = ctx
	if !n.cfg.NoMaintenance {
		// Added under mu, which Close takes to set closed before it
		// waits: an Add after the Wait began would race with it.
		n.wg.Add(1)
	}
	n.mu.Unlock()

	errs := make(chan error, 2)
	var running int
	for _, f := range n.families() {
		running++
		go func() { errs <- f.tr.Serve(ctx) }()
	}
	if !n.cfg.NoMaintenance {
		go func() {
			defer n.wg.Done()
			n.maintain(ctx)
		}()
	}
	var first error
	for range running {
		err := <-errs
		if errors.Is(err, krpc.ErrClosed) && n.isClosed() {
			err = nil // Close came before the transport's Serve: a clean stop all the same
		}
		if err != nil && first == nil {
			first = err
			n.cancel()
		}
	}
	n.Close()
	return first
}

func (n *Node) isClosed() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.closed
}

func (n *Node) families() []*family {
	fs := make([]*family, 0, 2)
	if n.v4 != nil {
		fs = append(fs, n.v4)
	}
	if n.v6 != nil {
		fs = append(fs, n.v6)
	}
	return fs
}

// Close stops the node: it closes the sockets, ends every query in flight
// (their callbacks fire with an error wrapping krpc.ErrClosed), and returns
// once every goroutine the node started has returned. It is idempotent.
func (n *Node) Close() error {
	var err error
	n.stopOnce.Do(func() {
		n.mu.Lock()
		n.closed = true
		if n.cancel != nil {
			n.cancel()
		}
		n.mu.Unlock()
		for _, f := range n.families() {
			if e := f.tr.Close(); e != nil && err == nil {
				err = e
			}
		}
		n.wg.Wait()
	})
	return err
}

// observe reports a sighting to the observer, filling in Time and SecureID.
func (n *Node) observe(s Sighting) {
	if n.cfg.Observer == nil || s.Node.ID.IsZero() { // only nodes whose ID is known
		return
	}
	s.Time = n.cfg.Now()
	s.SecureID = bep42.Acceptable(s.Node.ID, s.Node.Addr.Addr())
	n.cfg.Observer.Observe(s)
}

// admit reports whether a node may enter a routing table.
func (n *Node) admit(ni krpc.NodeInfo, ro bool) bool {
	if ro || ni.ID.IsZero() || ni.ID == n.ID() || !ni.Addr.IsValid() || ni.Addr.Port() == 0 {
		return false
	}
	if n.cfg.EnforceSecureID && !bep42.Acceptable(ni.ID, ni.Addr.Addr()) {
		n.stats.insecureIDs.Add(1)
		return false
	}
	return true
}

// update records contact with a node in its family's table, and pings the
// questionable nodes a full bucket asks about. It reports whether the node
// was admitted (see admit).
func (n *Node) update(f *family, ni krpc.NodeInfo, ev table.Event, ro bool) bool {
	if f == nil || !n.admit(ni, ro) {
		return false
	}
	res := f.table.Update(ni, ev)
	for _, e := range res.Ping {
		n.pingEntry(f, e.NodeInfo)
	}
	return true
}

// pingEntry pings a questionable node on the table's behalf, unless it is
// already being pinged, maxTablePings are in flight or the family's
// share of the send rate for table pings is spent.
func (n *Node) pingEntry(f *family, ni krpc.NodeInfo) {
	f.pingMu.Lock()
	_, dup := f.pinging[ni.Addr]
	if dup || len(f.pinging) >= maxTablePings || (f.pingLim != nil && !f.pingLim.Allow()) {
		f.pingMu.Unlock()
		return
	}
	if f.pinging == nil {
		f.pinging = make(map[netip.AddrPort]struct{}, maxTablePings)
	}
	f.pinging[ni.Addr] = struct{}{}
	f.pingMu.Unlock()
	q := &krpc.Msg{Q: krpc.MethodPing, A: krpc.Args{ID: n.ID()}}
	f.tr.QueryAsync(context.Background(), ni.Addr, q, func(r krpc.Response, err error) {
		f.pingMu.Lock()
		delete(f.pinging, ni.Addr)
		f.pingMu.Unlock()
		n.handleResult(f, ni, krpc.MethodPing, r, err)
	})
}

// handleResult does the bookkeeping common to every query we send:
// table state, the family's recall and sightings of the queried node.
func (n *Node) handleResult(f *family, to krpc.NodeInfo, method string, r krpc.Response, err error) {
	if r.Msg == nil {
		if errors.Is(err, krpc.ErrTimeout) {
			f.recall.timedOut(to.Addr)
			if !to.ID.IsZero() {
				f.table.Failed(to)
			}
			n.observe(Sighting{Node: to, Source: SourceTimeout, Method: method})
		}
		return
	}
	f.recall.replied(to.Addr) // a reply or a KRPC error: the address answers
	from := krpc.NodeInfo{ID: r.SenderID(), Addr: r.From}
	if r.Y == krpc.KindReply {
		if n.limits.known != nil {
			n.limits.known.add(r.From, n.cfg.Now()) // its queries come first from now on
		}
		if !to.ID.IsZero() && from.ID != to.ID {
			// The address answered with another ID: the node we knew is
			// gone from there.
			f.table.Failed(to)
		}
		n.update(f, from, table.Replied, r.RO)
		if r.IP.IsValid() {
			n.vote(f, r.From.Addr(), r.IP.Addr())
		}
	}
	if !from.ID.IsZero() {
		n.observe(Sighting{Node: from, Source: SourceReply, Method: method, Version: string(r.V), RTT: r.RTT, ReadOnly: r.RO})
	}
}

// Ping sends a ping to addr and returns the replying node's ID and
// address, with the round-trip time.
func (n *Node) Ping(ctx context.Context, addr netip.AddrPort) (krpc.NodeInfo, time.Duration, error) {
	type pong struct {
		ni  krpc.NodeInfo
		rtt time.Duration
	}
	p, err := await(func(done func(pong, error)) {
		n.PingAsync(ctx, addr, func(ni krpc.NodeInfo, rtt time.Duration, err error) { done(pong{ni, rtt}, err) })
	})
	return p.ni, p.rtt, err
}

// PingAsync sends a ping to addr and returns at once; done is called once
// with the replying node, the round-trip time, or the error. It runs on one
// of the node's goroutines and must not block.
func (n *Node) PingAsync(ctx context.Context, addr netip.AddrPort, done func(krpc.NodeInfo, time.Duration, error)) {
	f := n.familyFor(addr.Addr())
	if f == nil {
		go done(krpc.NodeInfo{}, 0, fmt.Errorf("lightdht: ping %v: no socket for that address family", addr))
		return
	}
	q := &krpc.Msg{Q: krpc.MethodPing, A: krpc.Args{ID: n.ID()}}
	f.tr.QueryAsync(ctx, addr, q, func(r krpc.Response, err error) {
		n.handleResult(f, krpc.NodeInfo{Addr: addr}, krpc.MethodPing, r, err)
		if err != nil {
			done(krpc.NodeInfo{}, 0, err)
			return
		}
		done(krpc.NodeInfo{ID: r.R.ID, Addr: r.From}, r.RTT, nil)
	})
}

// Stats is a snapshot of a node's counters.
type Stats struct {
	ID                  krpc.ID
	Nodes4, Nodes6      int // routing table sizes
	Transport4          krpc.Stats
	Transport6          krpc.Stats
	QueriesByMethod     map[string]uint64 // incoming queries answered or refused, by method
	RateLimited         uint64            // incoming queries dropped by the per-IP limits
	BadTokens           uint64            // announce_peer refused for a bad token
	InsecureIDsRejected uint64            // nodes kept out of the table by BEP 42 enforcement
	AnnouncesStored     uint64
	Infohashes, Peers   int // held in the peer store
	Lookups             uint64
	LookupQueries       uint64

	// ExternalAddr4 and ExternalAddr6 are the node's addresses as other
	// nodes see them, decided from the "ip" of their replies (BEP 42):
	// zero until enough distinct networks agree (see ballotBox).
	ExternalAddr4, ExternalAddr6 netip.Addr
	// ExternalAddrChanges counts the decisions that changed an external
	// address, the first one included.
	ExternalAddrChanges uint64
	// IDChanges counts the times the node took a new ID for a new
	// external address and rejoined the network.
	IDChanges uint64
}

// Stats returns a snapshot of the node's counters.
func (n *Node) Stats() Stats {
	hs := n.handler.Stats()
	s := Stats{
		ID:                  n.ID(),
		QueriesByMethod:     hs.Queries,
		RateLimited:         n.stats.rateLimited.Load(),
		BadTokens:           hs.BadTokens,
		InsecureIDsRejected: n.stats.insecureIDs.Load(),
		AnnouncesStored:     hs.Announces,
		Lookups:             n.stats.lookups.Load(),
		LookupQueries:       n.stats.lookupQueries.Load(),
		ExternalAddrChanges: n.stats.addrChanges.Load(),
		IDChanges:           n.stats.idChanges.Load(),
	}
	if n.v4 != nil {
		s.Nodes4, s.Transport4 = n.v4.table.Len(), n.v4.tr.Stats()
		s.ExternalAddr4 = n.v4.votes.addr()
	}
	if n.v6 != nil {
		s.Nodes6, s.Transport6 = n.v6.table.Len(), n.v6.tr.Stats()
		s.ExternalAddr6 = n.v6.votes.addr()
	}
	s.Infohashes, s.Peers = n.peers.Len()
	return s
}
