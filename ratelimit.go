package lightdht

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// ipLimiter is a token bucket per source IP in a fixed-size table, so its
// memory does not grow with the number of sources: IPs hash to slots, and
// the rare IPs that share a slot share a bucket (which only makes the limit
// stricter for them). Safe for concurrent use.
type ipLimiter struct {
	rate  float64 // tokens per second
	burst float64
	seed  maphash.Seed

	mu    sync.Mutex
	slots []ipBucket
}

type ipBucket struct {
	tokens float64
	last   int64 // Unix nanoseconds of the last update; 0 = unused
}

const ipLimiterSlots = 1 << 16 // 1 MiB of buckets

func newIPLimiter(rate float64, burst int) *ipLimiter {
	return &ipLimiter{rate: rate, burst: float64(burst), seed: maphash.MakeSeed(), slots: make([]ipBucket, ipLimiterSlots)}
}

// allow takes one token from ip's bucket at time now.
func (l *ipLimiter) allow(ip netip.Addr, now time.Time) bool {
	ok, _ := l.take(ip, now)
	return ok
}

// take takes one token from ip's bucket at time now. heavy reports that
// the bucket is below half its burst after the take: the source has
// recently sent much more than PerIPRate.
func (l *ipLimiter) take(ip netip.Addr, now time.Time) (ok, heavy bool) {
	a := ip.Unmap().As16()
	i := maphash.Bytes(l.seed, a[:]) & (ipLimiterSlots - 1)
	t := now.UnixNano()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := &l.slots[i]
	if b.last == 0 {
		b.tokens = l.burst
	} else if dt := float64(t-b.last) / 1e9; dt > 0 {
		b.tokens = min(l.burst, b.tokens+dt*l.rate)
	}
	b.last = t
	if b.tokens < 1 {
		return false, true
	}
	b.tokens--
	return true, b.tokens < l.burst/2
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
