package lightdht

import (
	"net/netip"
	"testing"
	"time"
)

// TestRecallPrunes: records that say nothing any more are forgotten, so
// that the map stays in proportion to the addresses in use, while quiet
// and proven ones are kept.
func TestRecallPrunes(t *testing.T) {
	now := time.Unix(1e9, 0)
	r := newRecall(func() time.Time { return now }, time.Second)
	addr := func(i int) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 6881)
	}
	quiet, proven := addr(1<<20), addr(1<<20+1)
	r.timedOut(quiet)
	r.replied(proven)
	for i := range 100_000 {
		if r.ask(addr(i), nil) != askNow {
			t.Fatalf("a new address was not askable")
		}
		r.release(addr(i))
		if i%10_000 == 0 {
			now = now.Add(time.Second)
		}
	}
	r.mu.Lock()
	n := len(r.addrs)
	r.mu.Unlock()
	if n > 4*recallPruneMin {
		t.Errorf("%d records kept for 100,000 addresses asked once", n)
	}
	if !r.quiet(quiet) {
		t.Error("the quiet address was forgotten within its window")
	}
	if v := r.ask(proven, nil); v != askNow {
		t.Fatalf("proven address: %v", v)
	}
	if v := r.ask(proven, nil); v != askNow {
		t.Errorf("a second query to a proven address: %v, want askNow", v)
	}
	now = now.Add(quietMax)
	if r.quiet(quiet) {
		t.Error("the address is still quiet after quietMax")
	}
}
