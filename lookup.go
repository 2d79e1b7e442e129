package lightdht

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/lightdht/lightdht/bep44"
	"github.com/lightdht/lightdht/internal/peerstore"
	"github.com/lightdht/lightdht/krpc"
)

// ErrNoNodes is returned by a lookup that has no node to start from (an
// empty routing table and no bootstrap addresses) or whose every query
// failed.
var ErrNoNodes = errors.New("lightdht: no node answered")

// LookupStats describes one lookup.
type LookupStats struct {
	Queries  int           // queries sent
	Replies  int           // replies received
	Timeouts int           // queries that got no reply
	Errors   int           // KRPC error replies and other failures
	Skipped  int           // nodes not queried: they timed out recently, for this lookup or another
	Duration time.Duration // from start to completion
}

// NodeToken is a node that answered a get_peers lookup, with the token it
// issued for announce_peer.
type NodeToken struct {
	krpc.NodeInfo
	Token []byte
}

// FindNodeResult is the outcome of a find_node lookup.
type FindNodeResult struct {
	Nodes  []krpc.NodeInfo // the K closest IPv4 nodes that replied, nearest first
	Nodes6 []krpc.NodeInfo // the same for IPv6, when the node has an IPv6 socket
	Stats  LookupStats     // both families together
}

// GetPeersResult is the outcome of a get_peers lookup.
type GetPeersResult struct {
	Peers []netip.AddrPort // every distinct peer received, IPv4 and IPv6
	Nodes []NodeToken      // per family, the K closest nodes that replied, nearest first, with their tokens
	Stats LookupStats      // both families together
}

// add sums two families' stats; the duration is the longer one, since the
// families' lookups run at the same time.
func (s LookupStats) add(o LookupStats) LookupStats {
	return LookupStats{Queries: s.Queries + o.Queries, Replies: s.Replies + o.Replies,
		Timeouts: s.Timeouts + o.Timeouts, Errors: s.Errors + o.Errors, Skipped: s.Skipped + o.Skipped,
		Duration: max(s.Duration, o.Duration)}
}

// perFamily runs start once per configured family and calls done once,
// when every family has called its finished. The combined error is nil
// when at least one family succeeded. Callers merge the families' results
// under a lock of their own before calling finished.
func (n *Node) perFamily(start func(f *family, finished func(err error)), done func(err error)) {
	fs := n.families()
	var (
		mu      sync.Mutex
		pending = len(fs)
		errs    []error
	)
	for _, f := range fs {
		start(f, func(err error) {
			mu.Lock()
			if err != nil {
				errs = append(errs, err)
			}
			pending--
			last := pending == 0
			mu.Unlock()
			if !last {
				return
			}
			if len(errs) == len(fs) {
				done(errors.Join(errs...))
				return
			}
			done(nil)
		})
	}
}

type lookupKind uint8

const (
	findNodeLookup lookupKind = iota
	getPeersLookup
	getItemLookup // BEP 44 get
)

// Candidate states.
const (
	candFresh   uint8 = iota
	candWaiting       // another lookup is querying its address: wait for the outcome (see recall)
	candAsked
	candReplied
	candFailed // no answer, or skipped because its address timed out recently
)

type cand struct {
	ni      krpc.NodeInfo
	state   uint8
	stalled bool // asked, and slower than StallAfter: no longer counted against alpha
	token   []byte
	stall   *time.Timer // armed when the candidate is asked; calls lookup.stalled
}

// lookup is one iterative lookup on one address family.
//
// Ownership. The fields above mu are set before run and only read after.
// Every other field, and every field of the candidates, is guarded by
// mu, the lookup's one lock, which four kinds of goroutine take: the
// caller's (run), the transport's (onResult, the callback of each query),
// the stall timers' (stalled) and those of other lookups' queries, whose
// end wakes the candidates waiting on their address (woken, retrySeed;
// see recall). The rules:
//
//   - mu is never held while sending a query, updating the routing table,
//     reporting a sighting or calling a callback. It may be held while
//     asking the family's recall (recall.mu nests inside it), never while
//     releasing it, which wakes other lookups.
//   - The callbacks onPeers and finish are never called where their input
//     arises: it is queued under mu (a batch of peers in outbox; the end
//     in done and err) and then deliver runs the queue, on one goroutine
//     at a time: the one that finds delivering unset sets it and drains
//     the queue, batches first, while the others leave. So onPeers calls
//     never overlap each other or finish, every batch queued before the
//     end reaches onPeers before finish, finish runs exactly once, and
//     nothing is delivered after it.
//   - Once done is set the search state and the result are frozen: a late
//     reply still reaches handleResult (the table and the observer) but
//     changes no field, and finish reads the frozen fields without mu.
type lookup struct {
	n      *Node
	f      *family
	kind   lookupKind
	target krpc.ID
	ctx    context.Context
	start  time.Time

	onPeers func([]netip.AddrPort) // get_peers: new peers as they arrive; nil: none
	finish  func(l *lookup, err error)

	// BEP 44 get: what a valid item must match.
	mutable bool
	itemK   [32]byte
	salt    []byte

	mu sync.Mutex

	// The search.
	cands       []*cand // sorted by distance to target, nearest first
	seen        map[netip.AddrPort]bool
	active      int // queries in flight counted against alpha
	outstanding int // every query in flight
	seedWaits   int // bootstrap addresses waiting for another lookup's query to them (see retrySeed)

	// The result.
	stats   LookupStats
	peers   []netip.AddrPort
	peerSet map[netip.AddrPort]bool
	item    *bep44.Item // BEP 44 get: the best valid item found
	done    bool        // ended: everything above is frozen
	err     error       // the outcome, for finish

	// The callback queue; see deliver.
	outbox     [][]netip.AddrPort // peer batches for onPeers, oldest first
	delivering bool               // a goroutine is running the queue
	finished   bool               // finish has been called
}

func (n *Node) newLookup(ctx context.Context, f *family, kind lookupKind, target krpc.ID) *lookup {
	n.stats.lookups.Add(1)
	l := &lookup{n: n, f: f, kind: kind, target: target, ctx: ctx, start: n.cfg.Now(),
		seen: map[netip.AddrPort]bool{}, peerSet: map[netip.AddrPort]bool{}}
	for _, e := range f.table.Closest(target, n.cfg.K) {
		l.addCand(e.NodeInfo)
	}
	return l
}

// run starts the lookup: from the routing table, and from the bootstrap
// addresses too when withSeeds is set or the table has fewer than K nodes.
func (l *lookup) run(withSeeds bool) {
	var seeds []netip.AddrPort
	l.mu.Lock()
	if withSeeds || len(l.cands) < l.n.cfg.K {
		for _, a := range l.n.cfg.Bootstrap {
			if l.n.familyFor(a.Addr()) != l.f || l.seen[a] {
				continue
			}
			l.seen[a] = true
			switch l.f.recall.ask(a, func() { l.retrySeed(a) }) {
			case askNow:
				seeds = append(seeds, a)
			case askLater:
				l.seedWaits++
			case askNot:
				l.stats.Skipped++
			}
		}
	}
	if len(l.cands) == 0 && len(seeds) == 0 && l.seedWaits == 0 {
		l.mu.Unlock()
		what := "empty routing table and no bootstrap address"
		if l.stats.Skipped > 0 {
			what = "empty routing table, and the bootstrap addresses timed out recently"
		}
		l.end(fmt.Errorf("lightdht: lookup %v: %s: %w", l.target, what, ErrNoNodes))
		return
	}
	l.outstanding += len(seeds)
	l.stats.Queries += len(seeds)
	l.mu.Unlock()
	for _, a := range seeds {
		l.send(nil, a)
	}
	l.step()
}

// retrySeed asks the recall again about a bootstrap address another
// lookup was querying, now that its query has ended, and queries it if
// allowed.
func (l *lookup) retrySeed(a netip.AddrPort) {
	l.mu.Lock()
	if l.done {
		l.mu.Unlock()
		return
	}
	switch l.f.recall.ask(a, func() { l.retrySeed(a) }) {
	case askLater:
		l.mu.Unlock()
		return
	case askNow:
		l.seedWaits--
		l.outstanding++
		l.stats.Queries++
		l.mu.Unlock()
		l.send(nil, a)
	case askNot:
		l.seedWaits--
		l.stats.Skipped++
		l.mu.Unlock()
	}
	l.step()
}

// addCand inserts a candidate in distance order unless its address is
// already known. l.mu must be held (or the lookup not yet shared).
func (l *lookup) addCand(ni krpc.NodeInfo) {
	if ni.ID.IsZero() || ni.ID == l.n.ID() || !ni.Addr.IsValid() || ni.Addr.Port() == 0 || l.seen[ni.Addr] {
		return
	}
	if ni.Is6() != l.f.v6 {
		return
	}
	l.seen[ni.Addr] = true
	i, _ := slices.BinarySearchFunc(l.cands, ni.ID, func(c *cand, id krpc.ID) int {
		switch {
		case krpc.CloserTo(l.target, c.ni.ID, id):
			return -1
		case krpc.CloserTo(l.target, id, c.ni.ID):
			return 1
		}
		return 0
	})
	if limit := 16 * l.n.cfg.K; i >= limit {
		return // farther than every candidate worth keeping
	}
	l.cands = slices.Insert(l.cands, i, &cand{ni: ni})
	if limit := 16 * l.n.cfg.K; len(l.cands) > limit {
		last := l.cands[len(l.cands)-1]
		if last.state == candFresh {
			l.cands = l.cands[:len(l.cands)-1]
		}
	}
}

// step sends queries while fewer than alpha are active, and ends the lookup
// when the K closest live candidates have all replied or nothing is left
// to ask.
func (l *lookup) step() {
	if err := l.ctx.Err(); err != nil {
		l.end(fmt.Errorf("lightdht: lookup %v: %w", l.target, context.Cause(l.ctx)))
		return
	}
	k, alpha := l.n.cfg.K, l.n.cfg.Alpha
	var send []*cand
	l.mu.Lock()
	if l.done {
		l.mu.Unlock()
		return
	}
	// Converged: the nearest candidate has answered, so no reply has come
	// closer than it. As in Kademlia, ask every one of the K closest that
	// is still unasked at once instead of alpha at a time.
	if len(l.cands) > 0 && l.cands[0].state == candReplied {
		alpha = max(alpha, k)
	}
	replied, pending := 0, false
	for _, c := range l.cands {
		if replied >= k {
			break
		}
		if c.state == candFresh && l.active < alpha {
			// The family's recall decides first: an address that just
			// timed out for some lookup is skipped, one that another
			// lookup is asking may have to wait for its outcome.
			switch l.f.recall.ask(c.ni.Addr, func() { l.woken(c) }) {
			case askLater:
				c.state = candWaiting
			case askNot:
				c.state = candFailed
				l.stats.Skipped++
			case askNow:
				c.state = candAsked
				c.stall = time.AfterFunc(l.n.cfg.StallAfter, func() { l.stalled(c) })
				l.active++
				l.outstanding++
				l.stats.Queries++
				send = append(send, c)
			}
		}
		switch c.state {
		case candReplied:
			replied++
		case candFresh, candWaiting, candAsked:
			pending = true
		}
	}
	finished := (replied >= k && !pending) || (!pending && l.outstanding == 0 && l.seedWaits == 0)
	l.mu.Unlock()
	if finished {
		l.end(nil)
		return
	}
	for _, c := range send {
		l.send(c, c.ni.Addr)
	}
}

// send queries one candidate (or, with c nil, a bootstrap address).
func (l *lookup) send(c *cand, addr netip.AddrPort) {
	q := &krpc.Msg{Q: krpc.MethodFindNode, A: krpc.Args{ID: l.n.ID(), Target: l.target}}
	switch l.kind {
	case getPeersLookup:
		q = &krpc.Msg{Q: krpc.MethodGetPeers, A: krpc.Args{ID: l.n.ID(), InfoHash: l.target}}
	case getItemLookup:
		q = &krpc.Msg{Q: krpc.MethodGet, A: krpc.Args{ID: l.n.ID(), Target: l.target}}
	}
	l.n.stats.lookupQueries.Add(1)
	l.f.tr.QueryAsync(l.ctx, addr, q, func(r krpc.Response, err error) { l.onResult(c, addr, q.Q, r, err) })
}

// woken makes a waiting candidate askable again, once the query another
// lookup had in flight to its address has ended (see recall.ask).
func (l *lookup) woken(c *cand) {
	l.mu.Lock()
	if l.done || c.state != candWaiting {
		l.mu.Unlock()
		return
	}
	c.state = candFresh
	l.mu.Unlock()
	l.step()
}

// stalled frees the alpha slot of a slow query.
func (l *lookup) stalled(c *cand) {
	l.mu.Lock()
	if l.done || c.state != candAsked || c.stalled {
		l.mu.Unlock()
		return
	}
	c.stalled = true
	l.active--
	l.mu.Unlock()
	l.step()
}

func (l *lookup) onResult(c *cand, addr netip.AddrPort, method string, r krpc.Response, err error) {
	to := krpc.NodeInfo{Addr: addr}
	if c != nil {
		to = c.ni
	}
	l.n.handleResult(l.f, to, method, r, err)
	l.f.recall.release(addr) // after handleResult, so that the lookups it wakes see the outcome
	ok := err == nil && r.Msg != nil
	var nodes []krpc.NodeInfo
	if ok {
		nodes = r.R.Nodes
		if l.f.v6 {
			nodes = r.R.Nodes6
		}
		reporter := krpc.NodeInfo{ID: r.R.ID, Addr: r.From}
		for _, ni := range nodes {
			l.n.observe(Sighting{Node: ni, Source: SourceReported, Method: method, Reporter: reporter})
		}
	}

	l.mu.Lock()
	if l.done {
		l.mu.Unlock()
		return // a late reply: the result is final
	}
	l.outstanding--
	if c != nil {
		c.stall.Stop()
		if !c.stalled {
			l.active--
		}
	}
	switch {
	case ok:
		l.stats.Replies++
	case errors.Is(err, krpc.ErrTimeout):
		l.stats.Timeouts++
	default:
		l.stats.Errors++
	}
	var fresh []netip.AddrPort
	if ok {
		if c == nil {
			// A bootstrap node: now that its ID is known it is a
			// candidate like any other, and one that has replied.
			from := krpc.NodeInfo{ID: r.R.ID, Addr: r.From}
			delete(l.seen, from.Addr)
			l.addCand(from)
			for _, x := range l.cands {
				if x.ni.Addr == from.Addr {
					x.state = candReplied
					x.token = slices.Clone(r.R.Token)
				}
			}
		} else {
			c.state = candReplied
			c.token = slices.Clone(r.R.Token)
		}
		for _, ni := range nodes {
			l.addCand(ni)
		}
		if l.kind == getItemLookup && len(r.R.V) > 0 {
			l.considerItem(&r.R)
		}
		for _, p := range r.R.Values {
			if !l.peerSet[p] {
				l.peerSet[p] = true
				l.peers = append(l.peers, p)
				fresh = append(fresh, p)
			}
		}
	} else if c != nil {
		c.state = candFailed
	}
	queued := len(fresh) > 0 && l.onPeers != nil
	if queued {
		l.outbox = append(l.outbox, fresh)
	}
	l.mu.Unlock()

	if queued {
		l.deliver()
	}
	l.step()
}

// end ends the lookup once: it freezes the result and queues finish.
func (l *lookup) end(err error) {
	l.mu.Lock()
	if l.done {
		l.mu.Unlock()
		return
	}
	l.done = true
	l.stats.Duration = l.n.cfg.Now().Sub(l.start)
	replied := 0
	for _, c := range l.cands {
		if c.stall != nil {
			c.stall.Stop()
		}
		if c.state == candReplied {
			replied++
		}
	}
	if err == nil && replied == 0 {
		err = fmt.Errorf("lightdht: lookup %v: %w", l.target, ErrNoNodes)
	}
	l.err = err
	l.mu.Unlock()
	l.deliver()
}

// deliver runs the queued callbacks, unless another goroutine is running
// them already, in which case that one runs what was queued too (see the
// rules on lookup). Call it without l.mu held, after queuing.
func (l *lookup) deliver() {
	l.mu.Lock()
	if l.delivering {
		l.mu.Unlock()
		return
	}
	l.delivering = true
	for {
		switch {
		case len(l.outbox) > 0:
			batch := l.outbox[0]
			l.outbox = l.outbox[1:]
			l.mu.Unlock()
			l.onPeers(batch)
			l.mu.Lock()
		case l.done && !l.finished:
			l.finished = true
			err := l.err
			l.mu.Unlock()
			l.finish(l, err)
			l.mu.Lock()
		default:
			l.delivering = false
			l.mu.Unlock()
			return
		}
	}
}

// closest returns the K closest candidates that replied. Call it from
// finish, when the candidates are frozen.
func (l *lookup) closest() []*cand {
	var out []*cand
	for _, c := range l.cands {
		if c.state == candReplied {
			out = append(out, c)
			if len(out) == l.n.cfg.K {
				break
			}
		}
	}
	return out
}

// FindNodeAsync looks up the K nodes closest to target and calls done
// once with them. It returns at once; done runs on one of the node's
// goroutines and must not block.
func (n *Node) FindNodeAsync(ctx context.Context, target krpc.ID, done func(FindNodeResult, error)) {
	var (
		mu  sync.Mutex
		res FindNodeResult
	)
	n.perFamily(func(f *family, finished func(error)) {
		n.findNodeAsync(ctx, f, target, false, func(r FindNodeResult, err error) {
			mu.Lock()
			if f.v6 {
				res.Nodes6 = r.Nodes
			} else {
				res.Nodes = r.Nodes
			}
			res.Stats = res.Stats.add(r.Stats)
			mu.Unlock()
			finished(err)
		})
	}, func(err error) { done(res, err) })
}

func (n *Node) findNodeAsync(ctx context.Context, f *family, target krpc.ID, withSeeds bool, done func(FindNodeResult, error)) {
	l := n.newLookup(ctx, f, findNodeLookup, target)
	l.finish = func(l *lookup, err error) {
		var res FindNodeResult
		for _, c := range l.closest() {
			res.Nodes = append(res.Nodes, c.ni)
		}
		res.Stats = l.stats
		done(res, err)
	}
	l.run(withSeeds)
}

// lookupSync runs a find_node lookup on family f and waits for it.
func (n *Node) lookupSync(ctx context.Context, f *family, target krpc.ID, withSeeds bool) (FindNodeResult, error) {
	return await(func(done func(FindNodeResult, error)) { n.findNodeAsync(ctx, f, target, withSeeds, done) })
}

// FindNode looks up the K nodes closest to target. On error the result
// holds what the lookup found before it stopped.
func (n *Node) FindNode(ctx context.Context, target krpc.ID) (FindNodeResult, error) {
	return await(func(done func(FindNodeResult, error)) { n.FindNodeAsync(ctx, target, done) })
}

// GetPeersAsync looks up the peers of infohash. onPeers (may be nil)
// receives each batch of new, distinct peers as replies arrive; calls are
// never concurrent. Peers announced to this node itself come first, in a
// call made before GetPeersAsync returns. done is called once at the end
// with every peer and the K closest nodes with their tokens. GetPeersAsync
// returns at once; the callbacks run on the node's goroutines and must not
// block.
func (n *Node) GetPeersAsync(ctx context.Context, infohash krpc.ID, onPeers func([]netip.AddrPort), done func(GetPeersResult, error)) {
	var (
		mu      sync.Mutex // guards res
		res     GetPeersResult
		deliver func([]netip.AddrPort)
	)
	if onPeers != nil {
		// Each family's lookup calls onPeers one batch at a time, but the
		// two families' lookups run at once: dmu keeps their calls apart.
		var dmu sync.Mutex
		deliver = func(ps []netip.AddrPort) {
			dmu.Lock()
			defer dmu.Unlock()
			onPeers(ps)
		}
	}
	n.perFamily(func(f *family, finished func(error)) {
		n.getPeersAsync(ctx, f, infohash, deliver, func(r GetPeersResult, err error) {
			mu.Lock()
			res.Peers = append(res.Peers, r.Peers...)
			res.Nodes = append(res.Nodes, r.Nodes...)
			res.Stats = res.Stats.add(r.Stats)
			mu.Unlock()
			finished(err)
		})
	}, func(err error) { done(res, err) })
}

func (n *Node) getPeersAsync(ctx context.Context, f *family, infohash krpc.ID, onPeers func([]netip.AddrPort), done func(GetPeersResult, error)) {
	l := n.newLookup(ctx, f, getPeersLookup, infohash)
	l.onPeers = onPeers
	// This node is part of the DHT too: peers announced to it count.
	fam := peerstore.IPv4
	if f.v6 {
		fam = peerstore.IPv6
	}
	if local := n.peers.Peers(infohash, fam, n.cfg.MaxValues, false); len(local) > 0 {
		for _, p := range local {
			l.peerSet[p] = true
		}
		l.peers = append(l.peers, local...)
		if onPeers != nil {
			l.outbox = append(l.outbox, local)
		}
	}
	l.finish = func(l *lookup, err error) {
		var res GetPeersResult
		for _, c := range l.closest() {
			res.Nodes = append(res.Nodes, NodeToken{NodeInfo: c.ni, Token: c.token})
		}
		res.Peers = slices.Clone(l.peers)
		res.Stats = l.stats
		done(res, err)
	}
	l.deliver() // the local peers, before GetPeersAsync returns
	l.run(false)
}

// GetPeers looks up the peers of infohash. On error the result holds what
// the lookup found before it stopped.
func (n *Node) GetPeers(ctx context.Context, infohash krpc.ID) (GetPeersResult, error) {
	return await(func(done func(GetPeersResult, error)) { n.GetPeersAsync(ctx, infohash, nil, done) })
}

// considerItem keeps a BEP 44 item from a get reply if it is valid for the
// lookup's target and better than the one held: the value must hash to the
// target (immutable), or carry the expected key and a valid signature,
// with a higher seq than any seen (mutable). l.mu must be held.
func (l *lookup) considerItem(r *krpc.Return) {
	it := bep44.Item{V: slices.Clone(r.V)}
	if l.mutable {
		if r.Seq == nil || r.K != l.itemK {
			return
		}
		it.Mutable, it.K, it.Salt, it.Seq, it.Sig = true, r.K, l.salt, *r.Seq, r.Sig
		if l.item != nil && it.Seq <= l.item.Seq {
			return
		}
	} else if l.item != nil {
		return
	}
	if it.Check() != nil || it.Target() != l.target {
		return
	}
	l.item = &it
}

// GetItemResult is the outcome of a BEP 44 get lookup.
type GetItemResult struct {
	Item  bep44.Item  // the item found: for a mutable one, the highest seq of either family
	Found bool        // whether a valid item was found
	Nodes []NodeToken // per family, the K closest nodes that replied, with their tokens (for a put)
	Stats LookupStats // both families together
}

// GetAsync looks up the immutable item stored under target and calls done
// once. Only a value whose SHA-1 is target is accepted. Like get_peers,
// BEP 44 lookups run on every address family the node has (BEP 32), at
// the same time; an item found over either counts.
func (n *Node) GetAsync(ctx context.Context, target krpc.ID, done func(GetItemResult, error)) {
	n.getItemAsync(ctx, target, false, [32]byte{}, nil, done)
}

// GetMutableAsync looks up the mutable item of public key k and salt and
// calls done once with the highest-seq item whose signature verifies.
func (n *Node) GetMutableAsync(ctx context.Context, k [32]byte, salt []byte, done func(GetItemResult, error)) {
	n.getItemAsync(ctx, bep44.MutableTarget(k, salt), true, k, salt, done)
}

func (n *Node) getItemAsync(ctx context.Context, target krpc.ID, mutable bool, k [32]byte, salt []byte, done func(GetItemResult, error)) {
	var (
		mu  sync.Mutex // guards res
		res GetItemResult
	)
	n.perFamily(func(f *family, finished func(error)) {
		l := n.newLookup(ctx, f, getItemLookup, target)
		l.mutable, l.itemK, l.salt = mutable, k, slices.Clone(salt)
		l.finish = func(l *lookup, err error) {
			mu.Lock()
			for _, c := range l.closest() {
				res.Nodes = append(res.Nodes, NodeToken{NodeInfo: c.ni, Token: c.token})
			}
			// Both families' items passed considerItem: any one will do
			// for an immutable target, the higher seq for a mutable one.
			if it := l.item; it != nil && (!res.Found || (mutable && it.Seq > res.Item.Seq)) {
				res.Item, res.Found = *it, true
			}
			res.Stats = res.Stats.add(l.stats)
			mu.Unlock()
			finished(err)
		}
		l.run(false)
	}, func(err error) {
		mu.Lock()
		out := res
		mu.Unlock()
		if err == nil && !out.Found {
			err = fmt.Errorf("lightdht: get %v: %w", target, bep44.ErrNotFound)
		}
		done(out, err)
	})
}

// Get looks up the immutable item stored under target; see GetAsync.
func (n *Node) Get(ctx context.Context, target krpc.ID) (GetItemResult, error) {
	return await(func(done func(GetItemResult, error)) { n.GetAsync(ctx, target, done) })
}

// GetMutable looks up a mutable item; see GetMutableAsync.
func (n *Node) GetMutable(ctx context.Context, k [32]byte, salt []byte) (GetItemResult, error) {
	return await(func(done func(GetItemResult, error)) { n.GetMutableAsync(ctx, k, salt, done) })
}

// PutResult is the outcome of a BEP 44 put.
type PutResult struct {
	Target   krpc.ID
	StoredAt []krpc.NodeInfo         // nodes that accepted the put
	Refused  map[krpc.NodeInfo]error // nodes that refused it, with their error (e.g. 302)
	Lookup   GetItemResult           // the get lookup that found the nodes and tokens
}

// PutAsync stores item in the DHT: it checks the item, looks up the K
// closest nodes of each address family to its target with get
// (collecting tokens), then sends put to each that gave a token, with cas
// when set. done is called once; the
// put succeeds when at least one node stored the item.
func (n *Node) PutAsync(ctx context.Context, item bep44.Item, cas *int64, done func(PutResult, error)) {
	target := item.Target()
	if err := item.Check(); err != nil {
		go done(PutResult{Target: target}, fmt.Errorf("lightdht: put %v: %w", target, err))
		return
	}
	n.getItemAsync(ctx, target, item.Mutable, item.K, item.Salt, func(lr GetItemResult, err error) {
		res := PutResult{Target: target, Lookup: lr, Refused: map[krpc.NodeInfo]error{}}
		if err != nil && !errors.Is(err, bep44.ErrNotFound) {
			done(res, err)
			return
		}
		n.storeAt(ctx, "put", target, lr.Nodes, func(nt NodeToken) *krpc.Msg {
			// An immutable put carries seq 0 too: BEP 44 leaves it out, but
			// anacrolix/dht refuses a put without one, and other nodes
			// ignore seq when there is no key.
			seq := item.Seq
			q := &krpc.Msg{Q: krpc.MethodPut, A: krpc.Args{ID: n.ID(), Token: nt.Token, V: item.V, CAS: cas, Seq: &seq}}
			if item.Mutable {
				q.A.K, q.A.Salt, q.A.Sig = item.K, item.Salt, item.Sig
			}
			return q
		}, func(accepted []krpc.NodeInfo, refused map[krpc.NodeInfo]error, err error) {
			res.StoredAt, res.Refused = accepted, refused
			done(res, err)
		})
	})
}

// Put stores item in the DHT; see PutAsync.
func (n *Node) Put(ctx context.Context, item bep44.Item, cas *int64) (PutResult, error) {
	return await(func(done func(PutResult, error)) { n.PutAsync(ctx, item, cas, done) })
}
