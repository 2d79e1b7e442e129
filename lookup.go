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
