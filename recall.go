package lightdht

import (
	"net/netip"
	"sync"
	"time"
)

// How lookups share what they learn about the addresses they query (see
// recall).
const (
	// quietBase is how long an address that just timed out is left
	// alone by lookups; each further timeout in a row doubles it, up to
	// quietMax. A live node behind 5% loss fails all four attempts of a
	// query about once in 10,000, so the price for live nodes is small.
	quietBase = time.Minute
	quietMax  = 16 * time.Minute
	// provenFor is how long a reply proves an address: as long as BEP 5
	// calls a node good after it replied.
	provenFor = 15 * time.Minute
	// inflightProven and inflightUnproven bound the lookup queries in
	// flight to one address at once. An address that has not replied
	// within provenFor gets one at a time: if it is silent, concurrent
	// lookups learn that from the one query instead of each asking it.
	inflightProven   = 4
	inflightUnproven = 1
	// recallPruneMin is the size below which the record map is never
	// pruned.
	recallPruneMin = 1024
)

// verdict is recall's answer to a lookup that wants to query an address.
type verdict uint8

const (
	askNow   verdict = iota // send the query (it is counted in flight)
	askLater                // another lookup's query is in flight: wait for its outcome
	askNot                  // it timed out recently: skip it
)

// recall is one family's shared memory of how the addresses it queried
// answered, so that concurrent and later lookups learn from each other:
// an address that just timed out is not asked again by any lookup for a
// while (quietBase, doubling), and an address asked by one lookup is not
// asked by others at the same time unless it has replied recently
// (inflightProven, inflightUnproven). Failures also count against the node
// in the routing table (handleResult); recall covers the addresses the
// table does not hold and the time until the table calls a node bad.
//
// Ownership: every field below mu is guarded by it. Waiters are called
// without it, on the goroutine of the query whose outcome they wait for.
type recall struct {
	now   func() time.Time
	stall time.Duration // a query older than this no longer lets a proven address take another

	mu      sync.Mutex
	addrs   map[netip.AddrPort]*addrRecord
	pruneAt int // prune when the map grows to this size
}

// addrRecord is what recall knows of one address.
type addrRecord struct {
	inflight   int       // lookup queries in flight
	since      time.Time // when the oldest of them was sent, or the last reply came
	lastReply  time.Time // zero: never, or not since the record was pruned
	quietUntil time.Time // lookups skip the address until then
	timeouts   int       // timeouts in a row
	waiters    []func()  // lookups waiting for the queries in flight to end
}

func newRecall(now func() time.Time, stall time.Duration) *recall {
	return &recall{now: now, stall: stall, addrs: map[netip.AddrPort]*addrRecord{}, pruneAt: recallPruneMin}
}

// ask decides whether a lookup may query addr now. On askNow the query is
// counted in flight and the caller must call release when it ends; on
// askLater wake is called once when a query in flight to addr ends (the
// caller then asks again); on askNot the caller skips the address.
// wake may be nil, for a caller that does not wait: askLater then means
// "not now".
func (r *recall) ask(addr netip.AddrPort, wake func()) verdict {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	rec := r.addrs[addr]
	if rec == nil {
		r.pruneLocked(now)
		rec = &addrRecord{}
		r.addrs[addr] = rec
	}
	switch {
	case now.Before(rec.quietUntil):
		return askNot
	case rec.inflight == 0:
	case !rec.proven(now) || rec.inflight >= inflightProven || now.Sub(rec.since) >= r.stall:
		if wake != nil {
			rec.waiters = append(rec.waiters, wake)
		}
		return askLater
	}
	if rec.inflight == 0 {
		rec.since = now
	}
	rec.inflight++
	return askNow
}

// quiet reports whether addr timed out recently, so that nothing but a
// caller's explicit query should be sent to it.
func (r *recall) quiet(addr netip.AddrPort) bool {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	rec := r.addrs[addr]
	return rec != nil && now.Before(rec.quietUntil)
}

func (rec *addrRecord) proven(now time.Time) bool {
	return !rec.lastReply.IsZero() && now.Sub(rec.lastReply) < provenFor
}

// replied records an answer from addr (a reply or a KRPC error) to any
// query of ours.
func (r *recall) replied(addr netip.AddrPort) {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	rec := r.addrs[addr]
	if rec == nil {
		r.pruneLocked(now)
		rec = &addrRecord{}
		r.addrs[addr] = rec
	}
	rec.lastReply, rec.since = now, now
	rec.timeouts, rec.quietUntil = 0, time.Time{}
}

// timedOut records that a query of ours to addr got no answer after
// every attempt.
func (r *recall) timedOut(addr netip.AddrPort) {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	rec := r.addrs[addr]
	if rec == nil {
		r.pruneLocked(now)
		rec = &addrRecord{}
		r.addrs[addr] = rec
	}
	if now.Before(rec.quietUntil) {
		return // queries that were in flight together time out together: one event
	}
	rec.timeouts++
	quiet := quietBase << min(rec.timeouts-1, 4)
	rec.quietUntil = now.Add(min(quiet, quietMax))
}

// release ends a query counted by ask, after its outcome has been
// recorded, and wakes the lookups waiting on addr.
func (r *recall) release(addr netip.AddrPort) {
	r.mu.Lock()
	var wake []func()
	if rec := r.addrs[addr]; rec != nil && rec.inflight > 0 {
		rec.inflight--
		wake, rec.waiters = rec.waiters, nil
	}
	r.mu.Unlock()
	for _, f := range wake {
		f()
	}
}

// pruneLocked forgets the records that say nothing any more (no query in
// flight, not quiet, no reply within provenFor) once the map has doubled
// since the last prune, so that it stays in proportion to the addresses
// in use at an amortised constant cost per new address.
func (r *recall) pruneLocked(now time.Time) {
	if len(r.addrs) < r.pruneAt {
		return
	}
	for a, rec := range r.addrs {
		if rec.inflight == 0 && len(rec.waiters) == 0 && !now.Before(rec.quietUntil) && !rec.proven(now) {
			delete(r.addrs, a)
		}
	}
	r.pruneAt = max(recallPruneMin, 2*len(r.addrs))
}
