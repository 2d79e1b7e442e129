package crawler

import (
	"testing"
	"time"
)

// TestPacerPrune: the per-IP times are forgotten once PerIPInterval has
// passed and no sooner, an IP queried again keeps its newer time, and the
// map holds only the IPs of the last interval however many were queried.
func TestPacerPrune(t *testing.T) {
	p := newPacer(Config{Rate: 1e6, PerIPInterval: 2 * time.Second})
	t0 := time.Unix(1_700_000_000, 0)
	ip := func(i int) (a [16]byte) {
		a[12], a[13], a[14], a[15] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
		return a
	}
	// 100,000 IPs, one every 100 µs (10 s in all); IP 7 again at 9 s.
	for i := range 100_000 {
		now := t0.Add(time.Duration(i) * 100 * time.Microsecond)
		p.sent(ip(i), now)
		if i == 90_000 {
			p.sent(ip(7), now)
		}
		p.prune(now)
		if len(p.lastIP) > 20_002 {
			t.Fatalf("at %v the map holds %d IPs, want those of the last 2 s (20,001)", now.Sub(t0), len(p.lastIP))
		}
	}
	end := t0.Add(99_999 * 100 * time.Microsecond)
	if _, busy := p.ipDue(ip(99_999), end); !busy {
		t.Error("the IP queried last is not busy")
	}
	if _, ok := p.lastIP[ip(70_000)]; ok {
		t.Error("an IP queried 3 s ago is still remembered")
	}
	due, busy := p.ipDue(ip(7), end)
	if !busy || due != t0.Add(9*time.Second+2*time.Second).UnixNano() {
		t.Errorf("IP 7, queried again at 9 s: due %v, busy %v; want 11 s, busy", time.Unix(0, due).Sub(t0), busy)
	}
	if len(p.sends)-p.sendsHead > 20_002 || cap(p.sends) > 4*40_000 {
		t.Errorf("the send list holds %d live of %d (cap %d)", len(p.sends)-p.sendsHead, len(p.sends), cap(p.sends))
	}
}
