package crawler

import (
	"testing"
	"time"
)

// ip returns a test IP numbered i.
func ip(i int) (a [16]byte) {
	a[12], a[13], a[14], a[15] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
	return a
}

// TestPacerPrune: the per-IP times are forgotten once PerIPInterval has
// passed and no sooner, an IP queried again keeps its newer time, and the
// map holds only the IPs of the last interval however many were queried.
func TestPacerPrune(t *testing.T) {
	p := newPacer(Config{Rate: 1e6, PerIPInterval: 2 * time.Second})
	t0 := time.Unix(1_700_000_000, 0)
	// 100,000 IPs, one every 100 µs (10 s in all); IP 7 again at 9 s.
	for i := range 100_000 {
		now := t0.Add(time.Duration(i) * 100 * time.Microsecond)
		p.sent(ip(i), now)
		if i == 90_000 {
			p.sent(ip(7), now)
		}
		p.prune(now)
		if len(p.ips.at) > 20_002 {
			t.Fatalf("at %v the map holds %d IPs, want those of the last 2 s (20,001)", now.Sub(t0), len(p.ips.at))
		}
	}
	end := t0.Add(99_999 * 100 * time.Microsecond)
	if _, _, ok := p.claim(ip(99_999), end); ok {
		t.Error("the IP queried last is not busy")
	}
	if _, ok := p.ips.at[ip(70_000)]; ok {
		t.Error("an IP queried 3 s ago is still remembered")
	}
	due, _, ok := p.claim(ip(7), end)
	if ok || due != t0.Add(9*time.Second+2*time.Second).UnixNano() {
		t.Errorf("IP 7, queried again at 9 s: due %v, claimed %v; want 11 s, busy", time.Unix(0, due).Sub(t0), ok)
	}
	if len(p.ips.sends)-p.ips.head > 20_002 || cap(p.ips.sends) > 4*40_000 {
		t.Errorf("the send list holds %d live of %d (cap %d)", len(p.ips.sends)-p.ips.head, len(p.ips.sends), cap(p.ips.sends))
	}
}

// TestIPSpacingShared: two crawls' pacers that share an IPSpacing keep
// the interval between them: an IP one has queried is busy for the
// other, a claim the other lost to a race is refused with the time it is
// due, and the record keeps times for the longer of their intervals.
func TestIPSpacingShared(t *testing.T) {
	shared := NewIPSpacing()
	a := newPacer(Config{Rate: 100, PerIPInterval: 2 * time.Second, IPSpacing: shared})
	b := newPacer(Config{Rate: 100, PerIPInterval: 5 * time.Second, IPSpacing: shared})
	t0 := time.Unix(1_000_000, 0)
	x := ip(1)
	if _, prev, ok := a.claim(x, t0); !ok || prev != 0 {
		t.Fatalf("a's first claim: ok %v, replaced %d", ok, prev)
	}
	a.sent(x, t0.Add(10*time.Millisecond)) // the query left a little later
	if due, _, ok := b.claim(x, t0.Add(time.Second)); ok || due != t0.Add(5*time.Second+10*time.Millisecond).UnixNano() {
		t.Errorf("b's claim 1 s after a's: ok %v, due %v; want busy until 5 s after a's query left", ok, time.Unix(0, due))
	}
	t1 := t0.Add(2*time.Second + 10*time.Millisecond)
	_, prev, ok := a.claim(x, t1)
	if !ok || prev != t0.Add(10*time.Millisecond).UnixNano() {
		t.Fatalf("a's claim once its own interval has passed: ok %v, replaced %v", ok, time.Unix(0, prev))
	}
	// A claim the rate refused is taken back: the IP is due as before.
	a.unclaim(x, t1, prev)
	if due, _, ok := b.claim(x, t1); ok || due != t0.Add(5*time.Second+10*time.Millisecond).UnixNano() {
		t.Errorf("after a's claim was taken back, b's claim: ok %v, due %v; want due as after a's first query", ok, time.Unix(0, due))
	}
	if _, _, ok := a.claim(x, t1); !ok {
		t.Fatal("a's claim again refused")
	}
	// Pruning keeps the times for the longer interval (b's 5 s).
	a.prune(t0.Add(4 * time.Second))
	if _, ok := shared.at[x]; !ok {
		t.Error("pruned 2 s after the last query, though b's interval is 5 s")
	}
	a.prune(t0.Add(8 * time.Second))
	if _, ok := shared.at[x]; ok {
		t.Error("kept past the longest interval")
	}
}
