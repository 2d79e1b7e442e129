package crawler

import (
	"container/heap"
	"errors"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/lightdht/lightdht/krpc"
)

// queue holds the work of one phase waiting to be sent. An item is an
// index that the phase interprets: a node in the enumeration, a get_peers
// task in the peers phase. Owned by the event loop.
type queue struct {
	ready []int32   // FIFO of items to send now
	later delayHeap // items waiting for their time, soonest first
}

// len returns the number of items waiting, ready or delayed.
func (q *queue) len() int { return len(q.ready) + q.later.Len() }

// push queues an item to be sent as soon as the limits allow.
func (q *queue) push(item int32) { q.ready = append(q.ready, item) }

// delay queues an item to be sent no earlier than at (Unix nanoseconds).
func (q *queue) delay(item int32, at int64) { heap.Push(&q.later, delayed{idx: item, at: at}) }

// promote moves the delayed items that are due to the ready queue.
func (q *queue) promote(now time.Time) {
	for q.later.Len() > 0 && q.later[0].at <= now.UnixNano() {
		d := heap.Pop(&q.later).(delayed)
		q.ready = append(q.ready, d.idx)
	}
}

// earliest returns the sooner of t and the next delayed item's time.
func (q *queue) earliest(t time.Time) time.Time {
	if q.later.Len() > 0 {
		at := time.Unix(0, q.later[0].at)
		if t.IsZero() || at.Before(t) {
			return at
		}
	}
	return t
}

// pacer holds the limits every query of the crawl obeys, whichever phase
// sends it: Config.Rate per second in all, and Config.PerIPInterval
// between two queries to one IP (kept in ips, the crawl's own or one
// shared through Config.IPSpacing). The peers phase shares it with the
// enumeration, so the intervals the enumeration started still hold.
// Owned by the event loop.
//
// With Config.Adaptive, the rate is the adaptive sender's (ctl), which
// stays at or below Config.Rate.
type pacer struct {
	lim    *rate.Limiter
	ctl    *controller // nil unless Config.Adaptive
	perIP  int64       // Config.PerIPInterval in nanoseconds
	ips    *IPSpacing  // when each IP was last queried
	shared bool        // ips is Config.IPSpacing, shared with other crawls
}

func newPacer(cfg Config) pacer {
	p := pacer{perIP: int64(cfg.PerIPInterval), ips: cfg.IPSpacing, shared: cfg.IPSpacing != nil}
	if p.ips == nil {
		p.ips = NewIPSpacing()
	}
	p.ips.use(p.perIP)
	r := cfg.Rate
	if cfg.Adaptive {
		p.ctl = newController(cfg.Rate, cfg.Timeout, cfg.Now().UnixNano())
		r = p.ctl.rate
	}
	p.lim = rate.NewLimiter(rate.Limit(r), p.burstOf(r))
	return p
}

// burstOf is the rate limit's burst at r queries per second: a tenth of
// a second's worth, or for the adaptive sender a hundredth, so that the
// tokens saved while the crawl had little to send do not leave as a
// burst that overflows a shallow queue the pacing would have passed; but
// at least 4 (or r, if less), which any queue holds.
func (p *pacer) burstOf(r float64) int {
	if p.ctl != nil {
		return max(1, min(4, int(r)), int(r/100))
	}
	return max(1, int(r/10))
}

// adapt sets the rate limit to the adaptive sender's rate at now.
func (p *pacer) adapt(now time.Time) {
	if p.ctl == nil {
		return
	}
	if r := p.ctl.update(now.UnixNano()); rate.Limit(r) != p.lim.Limit() {
		p.lim.SetLimitAt(now, rate.Limit(r))
		p.lim.SetBurstAt(now, p.burstOf(r))
	}
}

// outcome passes a query's outcome to the adaptive sender, if any.
func (p *pacer) outcome(r result, now time.Time) {
	if p.ctl == nil || (r.err != nil && !errors.Is(r.err, krpc.ErrTimeout)) {
		return // closed or cancelled: says nothing about the link
	}
	answered := r.resp.Msg != nil
	p.ctl.outcome(r.sent, now.UnixNano(), answered, r.resp.RTT, !r.resend)
}

// take takes one query from the rate limit and returns zero, or, when
// the limit allows none now, takes nothing and returns the wait.
func (p *pacer) take(now time.Time) time.Duration {
	r := p.lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d
	}
	return 0
}

// claim records a query about to go to ip at now, unless ip was queried
// within the interval (by this crawl or another sharing the record);
// then it returns when ip is due. On success it returns the time it
// replaced (0 for none), for unclaim.
func (p *pacer) claim(ip [16]byte, now time.Time) (due, prev int64, ok bool) {
	return p.ips.claim(ip, now.UnixNano(), p.perIP)
}

// unclaim takes back a claim of ip at now that sent nothing, restoring
// the time prev it replaced.
func (p *pacer) unclaim(ip [16]byte, now time.Time, prev int64) {
	p.ips.unclaim(ip, now.UnixNano(), prev)
}

// sent records that the query claimed for ip left at now.
func (p *pacer) sent(ip [16]byte, now time.Time) { p.ips.sent(ip, now.UnixNano()) }

// prune forgets the per-IP send times that no longer restrict anything
// (IPSpacing.prune).
func (p *pacer) prune(now time.Time) { p.ips.prune(now.UnixNano()) }

// IPSpacing is the record of when each IP was last queried, which
// Config.PerIPInterval is kept by. A crawl keeps one of its own; crawls
// that query from one socket, as the zones of a shared crawl do in one
// process (one after another, or several at once), share one through
// Config.IPSpacing, so that the interval holds across them: to a node
// they are one querier. It is safe for concurrent use.
type IPSpacing struct {
	mu       sync.Mutex
	interval int64              // the longest PerIPInterval of the crawls using it, ns
	at       map[[16]byte]int64 // last query time per IP, pruned as it ages
	// sends lists the (IP, time) of every query in the order sent, from
	// head on: prune expires the map from its front, so that its cost is
	// one step per query rather than a walk of the whole map.
	sends []ipSend
	head  int
}

// ipSend is one query's IP and when it was sent, for prune.
type ipSend struct {
	ip [16]byte
	t  int64
}

// NewIPSpacing returns an empty record, for Config.IPSpacing.
func NewIPSpacing() *IPSpacing { return &IPSpacing{at: make(map[[16]byte]int64)} }

// use notes a crawl's PerIPInterval (ns): times are kept for the longest.
func (s *IPSpacing) use(interval int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.interval = max(s.interval, interval)
}

// claim records a query to ip at t (Unix ns), unless ip was queried
// less than interval before; then it records nothing and returns when
// ip is due. Checking and recording under one lock is what keeps two
// crawls sharing the record from both taking an IP. On success it
// returns the time it replaced, 0 for none.
func (s *IPSpacing) claim(ip [16]byte, t, interval int64) (due, prev int64, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	last, had := s.at[ip]
	if had && last+interval > t {
		return last + interval, 0, false
	}
	s.at[ip] = t
	s.sends = append(s.sends, ipSend{ip, t})
	return 0, last, true
}

// unclaim takes back a claim of ip at t that sent nothing: ip's time goes
// back to prev (forgotten if 0), unless another query has been recorded
// since. The claim's entry in sends stays; prune skips it, as it does any
// entry whose IP has another time.
func (s *IPSpacing) unclaim(ip [16]byte, t, prev int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.at[ip] != t {
		return
	}
	if prev == 0 {
		delete(s.at, ip)
	} else {
		s.at[ip] = prev
	}
}

// sent records a query to ip at t (Unix ns), or moves a claim's time on
// to when the query left.
func (s *IPSpacing) sent(ip [16]byte, t int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.at[ip] = max(s.at[ip], t)
	s.sends = append(s.sends, ipSend{ip, t})
}

// prune forgets per-IP send times that no longer restrict anything at
// now (Unix ns), so the map holds only the IPs of the last interval. It
// walks the queries in the order sent and stops at the first that still
// counts; an IP queried again since keeps its newer time. (It used to
// walk the whole map on every call once it held 4,096 IPs: at a high
// rate, three quarters of a million-node crawl's CPU time.) Crawls that
// share the record send in nearly the order of the clock, and one that
// recorded a little late only keeps an entry a little longer.
func (s *IPSpacing) prune(now int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cutoff := now - s.interval
	for s.head < len(s.sends) && s.sends[s.head].t <= cutoff {
		e := s.sends[s.head]
		if s.at[e.ip] == e.t {
			delete(s.at, e.ip)
		}
		s.head++
	}
	// Reclaim the expired front once it is most of the slice.
	if s.head > 1024 && s.head > len(s.sends)/2 {
		n := copy(s.sends, s.sends[s.head:])
		s.sends, s.head = s.sends[:n], 0
	}
}

// dispatch is the crawl's one pacing loop, for every phase: it sends the
// phase's ready items while fewer than Config.MaxInFlight queries are out
// and the limits allow. An item whose IP was queried too recently waits in
// the delay heap for its turn; when the rate limit is reached, dispatch
// stops. It returns when it should be called again (zero if only a result
// can make progress).
func (c *Crawler) dispatch(ph *phase) time.Time {
	now := c.cfg.Now()
	q := ph.queue
	q.promote(now)
	c.pace.adapt(now)
	for c.inflight < c.cfg.MaxInFlight && (len(q.ready) > 0 || ph.more != nil && ph.more()) {
		item := q.ready[0]
		if ph.skip != nil && ph.skip(item) {
			q.ready = q.ready[1:]
			continue
		}
		// The IP is claimed before the rate is asked, in one look at
		// the per-IP record (two before: 0.46 s of BenchmarkCrawl1M's
		// profile went to the first): a busy IP costs no rate token,
		// and a claim the rate then refuses is taken back, once per
		// call.
		ip := ph.ip(item)
		due, prev, ok := c.pace.claim(ip, now)
		if !ok {
			q.ready = q.ready[1:]
			q.delay(item, due)
			continue
		}
		if d := c.pace.take(now); d > 0 {
			c.pace.unclaim(ip, now, prev)
			return q.earliest(now.Add(d))
		}
		q.ready = q.ready[1:]
		if c.pace.ctl != nil {
			c.pace.ctl.sent()
		}
		ph.send(item)
		if c.pace.shared {
			// On a socket shared with other crawls (shard's), a send can
			// wait for the others' packets, and now is the loop's start:
			// the interval runs from when the query left.
			c.pace.sent(ip, c.cfg.Now())
		}
	}
	c.pace.prune(now)
	return q.earliest(time.Time{})
}

// delayed is an item waiting for its time: its IP's interval, a BEP 51
// interval or a revisit.
type delayed struct {
	idx int32
	at  int64 // Unix nanoseconds
}

// delayHeap is a container/heap of delayed items, soonest first.
type delayHeap []delayed

// Len, Less, Swap, Push and Pop implement heap.Interface.
func (h delayHeap) Len() int           { return len(h) }
func (h delayHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h delayHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *delayHeap) Push(x any)        { *h = append(*h, x.(delayed)) }
func (h *delayHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
