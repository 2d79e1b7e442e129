package lightdht

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// ipLimiter is a token bucket per source IP in a fixed-size table, so its
// memory does not grow with the number of sources. Each IP has two
// candidate slots (two-choice hashing) and a slot remembers whose bucket
// it holds, so an IP shares no bucket with another: when both slots are
// taken by other IPs, the one that has been quieter (more tokens) is
// evicted, and a quiet source loses little by starting over. A new
// source's bucket starts half full, so that its first queries count as
// heavy (see take): the full burst is for sources that have been quiet for
// a while. Safe for concurrent use.
type ipLimiter struct {
	rate  float64 // tokens per second
	burst float64
	seed  maphash.Seed

	mu    sync.Mutex
	slots []ipBucket
}

type ipBucket struct {
	ip     [16]byte
	tokens float64
	last   int64 // Unix nanoseconds of the last update; 0 = unused
}

const ipLimiterSlots = 1 << 16 // 2 MiB of buckets

func newIPLimiter(rate float64, burst int) *ipLimiter {
	return &ipLimiter{rate: rate, burst: float64(burst), seed: maphash.MakeSeed(), slots: make([]ipBucket, ipLimiterSlots)}
}

// allow takes one token from ip's bucket at time now.
func (l *ipLimiter) allow(ip netip.Addr, now time.Time) bool {
	ok, _ := l.take(ip, now)
	return ok
}

// bucket returns ip's bucket, refilled up to t, claiming a slot for it if
// it has none. l.mu must be held.
func (l *ipLimiter) bucket(ip netip.Addr, t int64) *ipBucket {
	a := ip.Unmap().As16()
	h := maphash.Bytes(l.seed, a[:])
	b1, b2 := &l.slots[h&(ipLimiterSlots-1)], &l.slots[(h>>32)&(ipLimiterSlots-1)]
	var b *ipBucket
	switch {
	case b1.last != 0 && b1.ip == a:
		b = b1
	case b2.last != 0 && b2.ip == a:
		b = b2
	default:
		// Claim the slot whose owner has more tokens now: an unused slot
		// counts as full.
		b = b1
		if l.level(b2, t) > l.level(b1, t) {
			b = b2
		}
		*b = ipBucket{ip: a, tokens: l.burst / 2, last: t}
		return b
	}
	b.tokens = l.level(b, t)
	b.last = t
	return b
}

// level is b's token count at time t.
func (l *ipLimiter) level(b *ipBucket, t int64) float64 {
	if b.last == 0 {
		return l.burst
	}
	if dt := float64(t-b.last) / 1e9; dt > 0 {
		return min(l.burst, b.tokens+dt*l.rate)
	}
	return b.tokens
}

// take takes one token from ip's bucket at time now. heavy reports that
// the bucket is below half its burst after the take: the source has
// recently sent much more than PerIPRate.
func (l *ipLimiter) take(ip netip.Addr, now time.Time) (ok, heavy bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucket(ip, now.UnixNano())
	if b.tokens < 1 {
		return false, true
	}
	b.tokens--
	return true, b.tokens < l.burst/2
}

// exhausted reports, without taking a token, whether ip's bucket is
// empty: the source sends faster than the per-IP rate. An IP without a
// bucket is not exhausted.
func (l *ipLimiter) exhausted(ip netip.Addr, now time.Time) bool {
	a := ip.Unmap().As16()
	h := maphash.Bytes(l.seed, a[:])
	l.mu.Lock()
	defer l.mu.Unlock()
	t := now.UnixNano()
	for _, b := range []*ipBucket{&l.slots[h&(ipLimiterSlots-1)], &l.slots[(h>>32)&(ipLimiterSlots-1)]} {
		if b.last != 0 && b.ip == a {
			return l.level(b, t) < 1
		}
	}
	return false
}

// heavyShare is the share of the node's send rate that heavy sources (see
// ipLimiter.take) may use together. The rest stays for the others, so that
// a flood spread over many sources, each within its per-IP limit, cannot
// crowd out the queries of ordinary nodes.
const heavyShare = 0.5

// admitter is a node's krpc.Config.Admit: the per-IP limit, then the
// heavy sources' shared cap.
type admitter struct {
	ips   *ipLimiter    // nil: no per-IP limit
	heavy *rate.Limiter // nil: no shared cap (no send rate)
	now   func() time.Time
	drops func() // counts a refused query
}

// flooding reports whether src has used up its per-IP budget; such
// sources do not enter the routing table (a node that floods us is no
// good contact, and its fresh IDs would set full buckets pinging).
func (a *admitter) flooding(src netip.Addr) bool {
	return a.ips != nil && a.ips.exhausted(src, a.now())
}

func (a *admitter) admit(src netip.AddrPort) bool {
	if a.ips == nil {
		return true
	}
	ok, heavy := a.ips.take(src.Addr(), a.now())
	if ok && heavy && a.heavy != nil {
		ok = a.heavy.AllowN(a.now(), 1)
	}
	if !ok {
		a.drops()
	}
	return ok
}
