package lightdht

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"time"
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
		return false
	}
	b.tokens--
	return true
}
