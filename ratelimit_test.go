package lightdht

import (
	"net/netip"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/lightdht/lightdht/krpc"
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

// TestKnownAddrs: an address that answered is known for 15 minutes, by IP
// and port; thousands of addresses each keep a slot of their own until
// the table is full, and then a new one evicts the oldest of its two.
func TestKnownAddrs(t *testing.T) {
	k := newKnownAddrs()
	now := time.Unix(1000, 0)
	a := netip.MustParseAddrPort("10.1.2.3:6881")
	if k.has(a, now) {
		t.Fatal("known before it answered")
	}
	k.add(a, now)
	if !k.has(a, now.Add(knownFor-time.Second)) || k.has(a, now.Add(knownFor)) {
		t.Error("want known for exactly knownFor after the answer")
	}
	if k.has(netip.MustParseAddrPort("10.1.2.3:6882"), now) || k.has(netip.MustParseAddrPort("[::ffff:10.1.2.3]:6881"), now) == false {
		t.Error("another port of the same IP is another node; a mapped form of the same address is the same")
	}
	addr := func(i int) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{11, byte(i >> 16), byte(i >> 8), byte(i)}), 6881)
	}
	const n = knownSlots / 16
	for i := range n {
		k.add(addr(i), now)
	}
	missing := 0
	for i := range n {
		if !k.has(addr(i), now) {
			missing++
		}
	}
	// With two choices a table a sixteenth full loses almost nothing.
	if missing > n/100 {
		t.Errorf("%d of %d addresses forgotten in a table a sixteenth full", missing, n)
	}
}

// TestKnownSkipsHeavyCap: a source that has answered the node keeps being
// admitted, as AdmittedKnown, while the heavy sources' shared cap is
// spent; an unknown source in the same state is refused. Both are held to
// their per-IP limit.
func TestKnownSkipsHeavyCap(t *testing.T) {
	now := time.Unix(1000, 0)
	a := &admitter{ips: newIPLimiter(10, 50), heavy: rate.NewLimiter(0, 1), known: newKnownAddrs(),
		now: func() time.Time { return now }, drops: func() {}}
	a.heavy.Allow() // the shared cap is spent, and does not refill
	known, stranger := netip.MustParseAddrPort("10.0.0.1:1"), netip.MustParseAddrPort("10.0.0.2:1")
	a.known.add(known, now)
	// New sources start with half the burst, so they count as heavy.
	if v := a.verdict(stranger); v != krpc.Refused {
		t.Errorf("unknown heavy source with the shared cap spent: %v, want Refused", v)
	}
	var admitted int
	for range 30 {
		if v := a.verdict(known); v == krpc.AdmittedKnown || v == krpc.AdmittedHeavy {
			admitted++
		}
	}
	if admitted != 25 {
		t.Errorf("known source: %d of 30 queries admitted in one instant, want its 25 tokens", admitted)
	}
}
