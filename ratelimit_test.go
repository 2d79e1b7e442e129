package lightdht

import (
	"net/netip"
	"testing"
	"time"
)

// allow takes one token from ip's bucket at time now.
func (l *ipLimiter) allow(ip netip.Addr, now time.Time) bool {
	ok, _ := l.take(ip, now)
	return ok
}

// TestIPLimiterNoSharedBuckets: thousands of sources each get a bucket of
// their own, so one source's flood never throttles another.
func TestIPLimiterNoSharedBuckets(t *testing.T) {
	l := newIPLimiter(10, 50)
	now := time.Unix(1000, 0)
	ip := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}) }
	const sources = 5000
	for i := range sources {
		// A new source has half the burst: 25 tokens.
		for k := range 25 {
			if !l.allow(ip(i), now) {
				t.Fatalf("source %d refused at query %d of its first 25", i, k)
			}
		}
		if l.allow(ip(i), now) {
			t.Fatalf("source %d allowed a 26th query in the same instant", i)
		}
	}
	// Every bucket is empty and none was shared: all stay refused.
	refused := 0
	for i := range sources {
		if !l.allow(ip(i), now) {
			refused++
		}
	}
	if refused < sources*99/100 {
		t.Errorf("%d of %d exhausted sources refused; sources share buckets", refused, sources)
	}
	// An unknown source is not exhausted by its first query; a source
	// that used its burst is.
	if _, left := l.take(ip(sources+1), now); left < 1 {
		t.Error("an unknown source is exhausted")
	}
	if _, left := l.take(ip(0), now); left >= 1 {
		t.Error("a source that used its burst is not exhausted")
	}
	// Refill: after 5 s at 10/s an exhausted source has its full burst.
	later := now.Add(5 * time.Second)
	if ok, left := l.take(ip(1), later); !ok || left < l.burst/2 {
		t.Errorf("after 5 s: ok %v with %v tokens left, want a light source again", ok, left)
	}
}

// TestIPLimiterEvictsTheQuieter: when both slots of a new source are
// taken, the owner with more tokens (the quieter one) makes room.
func TestIPLimiterEvictsTheQuieter(t *testing.T) {
	l := newIPLimiter(1, 50)
	now := time.Unix(1000, 0)
	// Fill the whole table with busy sources.
	for i := range ipLimiterSlots * 3 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		for range 25 {
			l.allow(a, now)
		}
	}
	// Each newcomer gets a fresh bucket of its own (24 tokens left after
	// its first query), taken from whoever was quieter.
	for i := range 100 {
		a := netip.AddrFrom4([4]byte{192, 0, 2, byte(i)})
		if !l.allow(a, now) {
			t.Fatalf("newcomer %v refused: it shares an exhausted bucket", a)
		}
		l.mu.Lock()
		b := l.bucket(a, now.UnixNano())
		l.mu.Unlock()
		if b.ip != a.As16() || b.tokens != 24 {
			t.Fatalf("newcomer %v: bucket of %v with %v tokens", a, netip.AddrFrom16(b.ip), b.tokens)
		}
	}
}
