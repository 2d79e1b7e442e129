package simnet

import (
	"net/netip"
	"testing"
	"testing/synctest"
	"time"
)

// TestLinkUp: a host's link sends one packet per 1/PacketsPerSecond, so a
// burst leaves it spaced out, each packet delayed by the ones before it;
// packets beyond the queue are dropped; latency adds after the link.
func TestLinkUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const latency = 5 * time.Millisecond
		n := newNet(t, Config{Latency: latency})
		a, b := newConn(t, n, false), newConn(t, n, false)
		if err := n.SetLink(a.AddrPort().Addr(), Link{PacketsPerSecond: 100, Queue: 4}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		for range 6 {
			send(t, a, b.AddrPort(), []byte("x"))
		}
		for i := 1; i <= 4; i++ {
			recv(t, b)
			if got, want := time.Since(start), time.Duration(i)*10*time.Millisecond+latency; got != want {
				t.Errorf("packet %d arrived after %v, want %v", i, got, want)
			}
		}
		checkStats(t, n, Stats{Sent: 6, Delivered: 4, DroppedLink: 2})
		st, ok := n.LinkStats(a.AddrPort().Addr())
		if want := (LinkDirStats{Passed: 4, Dropped: 2, MaxDelay: 40 * time.Millisecond}); !ok || st.Up != want || st.Down != (LinkDirStats{}) {
			t.Errorf("LinkStats = %+v, %v; want Up %+v and nothing down", st, ok, want)
		}

		// Once the queue has drained, a packet waits only its own 10 ms.
		time.Sleep(time.Second)
		start = time.Now()
		send(t, a, b.AddrPort(), []byte("y"))
		recv(t, b)
		if got := time.Since(start); got != 10*time.Millisecond+latency {
			t.Errorf("after the queue drained a packet took %v, want %v", got, 10*time.Millisecond+latency)
		}

		// Packets sent at the link's rate never queue: no drop.
		for range 50 {
			send(t, a, b.AddrPort(), []byte("z"))
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(time.Second)
		if st, _ := n.LinkStats(a.AddrPort().Addr()); st.Up.Dropped != 2 || st.Up.Passed != 55 {
			t.Errorf("paced packets: %+v, want 55 passed and no new drop", st.Up)
		}

		// Removing the link removes the delay.
		if err := n.SetLink(a.AddrPort().Addr(), Link{}); err != nil {
			t.Fatal(err)
		}
		if _, ok := n.LinkStats(a.AddrPort().Addr()); ok {
			t.Error("LinkStats after removal reports a link")
		}
		start = time.Now()
		send(t, a, b.AddrPort(), []byte("w"))
		for range 51 {
			recv(t, b)
		}
		if got := time.Since(start); got != latency {
			t.Errorf("without a link a packet took %v, want %v", got, latency)
		}
	})
}

// TestLinkDown: packets addressed to a host queue on its link's down
// direction on arrival, handler replies included, and the two directions
// queue apart.
func TestLinkDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t, Config{Latency: time.Millisecond})
		a := newConn(t, n, false)
		ghost := netip.MustParseAddrPort("198.51.100.7:6881")
		n.SetHandler(func(_, _ netip.AddrPort, pkt []byte) ([]byte, bool) { return []byte("re"), true })
		if err := n.SetLink(a.AddrPort().Addr(), Link{PacketsPerSecond: 1000, Queue: 3}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		for range 3 {
			send(t, a, ghost, []byte("q"))
		}
		// Up: leave at 1, 2, 3 ms; handled at 2, 3, 4 ms; replies reach
		// the link at 3, 4, 5 ms, find it free each time, and take 1 ms.
		for i := 1; i <= 3; i++ {
			recv(t, a)
			if got, want := time.Since(start), time.Duration(i+3)*time.Millisecond; got != want {
				t.Errorf("reply %d after %v, want %v", i, got, want)
			}
		}
		st, _ := n.LinkStats(a.AddrPort().Addr())
		if st.Up.Passed != 3 || st.Down.Passed != 3 || st.Down.MaxDelay != time.Millisecond {
			t.Errorf("LinkStats = %+v, want 3 passed each way, down never queued", st)
		}

		// A burst arriving at once is spaced out and cut at the queue.
		b := newConn(t, n, false)
		for range 5 {
			send(t, b, a.AddrPort(), []byte("in"))
		}
		start = time.Now()
		for i := 1; i <= 3; i++ {
			recv(t, a)
			if got, want := time.Since(start), time.Duration(i+1)*time.Millisecond; got != want {
				t.Errorf("burst packet %d after %v, want %v", i, got, want)
			}
		}
		if st, _ := n.LinkStats(a.AddrPort().Addr()); st.Down.Dropped != 2 {
			t.Errorf("down %+v, want 2 dropped at a queue of 3", st.Down)
		}
	})
}

// TestSetLinkValidates: bad links are refused and change nothing; Queue 0
// is the default queue.
func TestSetLinkValidates(t *testing.T) {
	n := newNet(t, Config{})
	ip := netip.MustParseAddr("127.0.0.2")
	for _, l := range []Link{{PacketsPerSecond: -1}, {PacketsPerSecond: 2e9}, {PacketsPerSecond: 10, Queue: -1}} {
		if err := n.SetLink(ip, l); err == nil {
			t.Errorf("SetLink(%+v) = nil, want an error", l)
		}
	}
	if err := n.SetLink(netip.Addr{}, Link{PacketsPerSecond: 1}); err == nil {
		t.Error("SetLink of an invalid IP succeeded")
	}
	if _, ok := n.LinkStats(ip); ok {
		t.Error("a refused SetLink made a link")
	}
	if err := n.SetLink(netip.MustParseAddr("::ffff:127.0.0.2"), Link{PacketsPerSecond: 1}); err != nil {
		t.Fatal(err)
	}
	if l := n.link(ip); l == nil || l.queue != DefaultLinkQueue {
		t.Errorf("link of a mapped address: %+v, want one with the default queue under the unmapped IP", l)
	}
}
