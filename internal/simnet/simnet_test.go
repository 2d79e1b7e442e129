package simnet

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

// newNet returns a network that is closed when the test ends.
func newNet(t testing.TB, cfg Config) *Network {
	t.Helper()
	n, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// newConn opens a conn with NewConn4 or, if v6, NewConn6.
func newConn(t testing.TB, n *Network, v6 bool) *Conn {
	t.Helper()
	var (
		c   *Conn
		err error
	)
	if v6 {
		c, err = n.NewConn6()
	} else {
		c, err = n.NewConn4()
	}
	if err != nil {
		t.Fatalf("NewConn(v6=%v): %v", v6, err)
	}
	return c
}

// listen opens a conn at addr, which must parse.
func listen(t testing.TB, n *Network, addr string) *Conn {
	t.Helper()
	c, err := n.Listen(netip.MustParseAddrPort(addr))
	if err != nil {
		t.Fatalf("Listen(%s): %v", addr, err)
	}
	return c
}

// send writes payload from c to dst and fails the test on error.
func send(t testing.TB, c *Conn, dst netip.AddrPort, payload []byte) {
	t.Helper()
	n, err := c.WriteToUDPAddrPort(payload, dst)
	if err != nil || n != len(payload) {
		t.Fatalf("WriteToUDPAddrPort(%d bytes, %v) = %d, %v", len(payload), dst, n, err)
	}
}

// hangGuard bounds the waits of the tests that run in real time (outside
// a synctest bubble) on goroutines and timers: it only stops a hung run,
// and a loaded machine stays well within it.
const hangGuard = time.Minute

// recv reads one packet from c, failing the test if none comes within a
// second. Tests that use it run in a synctest bubble, where that second
// passes only while every goroutine waits.
func recv(t testing.TB, c *Conn) ([]byte, netip.AddrPort) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(time.Second)); err != nil {
		t.Fatalf("SetReadDeadline: %v", err)
	}
	buf := make([]byte, 2048)
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("ReadFromUDPAddrPort on %v: %v", c.AddrPort(), err)
	}
	return buf[:n], from
}

// checkStats compares the network's counters with want.
func checkStats(t testing.TB, n *Network, want Stats) {
	t.Helper()
	if got := n.Stats(); got != want {
		t.Errorf("Stats() = %+v\nwant      %+v", got, want)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) && errors.As(err, &ne) && ne.Timeout()
}

func TestNewValidatesConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr bool
	}{
		{"zero", Config{}, false},
		{"full", Config{Seed: 7, Latency: time.Millisecond, Jitter: time.Millisecond, Loss: 0.5, MaxPacket: 1500, QueueLen: 8}, false},
		{"loss 1", Config{Loss: 1}, false},
		{"negative latency", Config{Latency: -1}, true},
		{"negative jitter", Config{Jitter: -1}, true},
		{"negative loss", Config{Loss: -0.1}, true},
		{"loss above 1", Config{Loss: 1.01}, true},
		{"loss NaN", Config{Loss: math.NaN()}, true},
		{"negative max packet", Config{MaxPacket: -1}, true},
		{"negative queue", Config{QueueLen: -1}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := New(tt.cfg)
			if (err != nil) != tt.wantErr {
				t.Fatalf("New(%+v) error = %v, want error: %v", tt.cfg, err, tt.wantErr)
			}
			if n != nil {
				n.Close()
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		open func(t *testing.T, n *Network) (a, b *Conn)
	}{
		{"IPv4", func(t *testing.T, n *Network) (*Conn, *Conn) { return newConn(t, n, false), newConn(t, n, false) }},
		{"IPv6", func(t *testing.T, n *Network) (*Conn, *Conn) { return newConn(t, n, true), newConn(t, n, true) }},
		{"mixed families", func(t *testing.T, n *Network) (*Conn, *Conn) { return newConn(t, n, false), newConn(t, n, true) }},
		{"Listen", func(t *testing.T, n *Network) (*Conn, *Conn) {
			return listen(t, n, "203.0.113.5:1234"), listen(t, n, "[2001:db8::7]:6881")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n := newNet(t, Config{})
				a, b := tt.open(t, n)

				b.SetReadDeadline(time.Now().Add(5 * time.Second)) // a failure must not hang

				// a -> b through the net.PacketConn methods.
				if _, err := a.WriteTo([]byte("ping"), b.LocalAddr()); err != nil {
					t.Fatalf("WriteTo: %v", err)
				}
				buf := make([]byte, 100)
				k, from, err := b.ReadFrom(buf)
				if err != nil {
					t.Fatalf("ReadFrom: %v", err)
				}
				ua, ok := from.(*net.UDPAddr)
				if !ok {
					t.Fatalf("ReadFrom returned address of type %T, want *net.UDPAddr", from)
				}
				if got := string(buf[:k]); got != "ping" {
					t.Errorf("payload = %q, want %q", got, "ping")
				}
				if ua.AddrPort() != a.AddrPort() {
					t.Errorf("sender = %v, want %v", ua, a.AddrPort())
				}
				if la, ok := a.LocalAddr().(*net.UDPAddr); !ok || la.AddrPort() != a.AddrPort() {
					t.Errorf("LocalAddr() = %#v, want *net.UDPAddr %v", a.LocalAddr(), a.AddrPort())
				}

				// b -> a through the netip methods, replying to what was read.
				send(t, b, ua.AddrPort(), []byte("pong"))
				got, src := recv(t, a)
				if string(got) != "pong" || src != b.AddrPort() {
					t.Errorf("got %q from %v, want %q from %v", got, src, "pong", b.AddrPort())
				}
				checkStats(t, n, Stats{Sent: 2, Delivered: 2})
			})
		})
	}
}

// stringAddr is a net.Addr that is not a *net.UDPAddr.
type stringAddr string

func (a stringAddr) Network() string { return "udp" }
func (a stringAddr) String() string  { return string(a) }

func TestWriteToAddressForms(t *testing.T) {
	tests := []struct {
		name string
		addr net.Addr
	}{
		{"UDPAddr", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 200), Port: 7000}}, // 16-byte form
		{"UDPAddr 4-byte", &net.UDPAddr{IP: net.IP{127, 0, 0, 200}, Port: 7000}},
		{"string addr", stringAddr("127.0.0.200:7000")},
		{"mapped string addr", stringAddr("[::ffff:127.0.0.200]:7000")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n := newNet(t, Config{})
				a := newConn(t, n, false)
				b := listen(t, n, "127.0.0.200:7000")
				if _, err := a.WriteTo([]byte(tt.name), tt.addr); err != nil {
					t.Fatalf("WriteTo(%v): %v", tt.addr, err)
				}
				if got, _ := recv(t, b); string(got) != tt.name {
					t.Errorf("got %q, want %q", got, tt.name)
				}
			})
		})
	}

	n := newNet(t, Config{})
	a := newConn(t, n, false)
	bad := []net.Addr{nil, (*net.UDPAddr)(nil), stringAddr("not an address"), &net.UDPAddr{Port: 1}}
	for _, addr := range bad {
		if _, err := a.WriteTo([]byte("x"), addr); err == nil {
			t.Errorf("WriteTo(%#v) succeeded, want error", addr)
		}
	}
	if _, err := a.WriteToUDPAddrPort([]byte("x"), netip.AddrPort{}); err == nil {
		t.Errorf("WriteToUDPAddrPort(zero address) succeeded, want error")
	}
}

func TestMappedAddressesAreUnmapped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t, Config{})
		a := newConn(t, n, false)
		b, err := n.Listen(netip.MustParseAddrPort("[::ffff:10.1.2.3]:5000"))
		if err != nil {
			t.Fatal(err)
		}
		if want := netip.MustParseAddrPort("10.1.2.3:5000"); b.AddrPort() != want {
			t.Errorf("Listen on mapped address: AddrPort() = %v, want %v", b.AddrPort(), want)
		}
		send(t, a, netip.MustParseAddrPort("[::ffff:10.1.2.3]:5000"), []byte("hi"))
		if got, from := recv(t, b); string(got) != "hi" || from != a.AddrPort() {
			t.Errorf("got %q from %v, want %q from %v", got, from, "hi", a.AddrPort())
		}
	})
}

func TestDistinctAddresses(t *testing.T) {
	n := newNet(t, Config{})
	const count = 600 // crosses the 127.0.0.255 -> 127.0.1.0 boundary
	seen := make(map[netip.Addr]bool)
	ula := netip.MustParsePrefix("fd00::/8")
	for i := range count {
		for _, v6 := range []bool{false, true} {
			c := newConn(t, n, v6)
			ap := c.AddrPort()
			ip := ap.Addr()
			if seen[ip] {
				t.Fatalf("address %v handed out twice", ip)
			}
			seen[ip] = true
			if ap.Port() != 6881 {
				t.Errorf("%v: port %d, want 6881", ap, ap.Port())
			}
			switch {
			case !v6 && (!ip.Is4() || !ip.IsLoopback() || ip == netip.MustParseAddr("127.0.0.1")):
				t.Errorf("NewConn4 gave %v, want 127.0.0.0/8 other than 127.0.0.1", ip)
			case v6 && (!ip.Is6() || !ula.Contains(ip)):
				t.Errorf("NewConn6 gave %v, want fd00::/8", ip)
			}
			if i == 0 {
				want := map[bool]string{false: "127.0.0.2", true: "fd6c:6474:0:1::1"}[v6]
				if ip.String() != want {
					t.Errorf("first address %v, want %v", ip, want)
				}
			}
		}
	}
	// Each IPv6 conn has its own /64.
	prefixes := make(map[netip.Prefix]bool)
	for ip := range seen {
		if ip.Is6() {
			prefixes[netip.PrefixFrom(ip, 64).Masked()] = true
		}
	}
	if len(prefixes) != count {
		t.Errorf("%d distinct /64 prefixes among %d IPv6 conns", len(prefixes), count)
	}
}

func TestNewConnSkipsTakenIPs(t *testing.T) {
	n := newNet(t, Config{})
	listen(t, n, "127.0.0.2:9999")       // same IP, other port
	listen(t, n, "127.0.0.3:6881")       // same address
	listen(t, n, "[fd6c:6474:0:1::1]:1") // first IPv6 candidate
	if got := newConn(t, n, false).AddrPort().String(); got != "127.0.0.4:6881" {
		t.Errorf("NewConn4 = %v, want 127.0.0.4:6881", got)
	}
	if got := newConn(t, n, true).AddrPort().String(); got != "[fd6c:6474:0:2::1]:6881" {
		t.Errorf("NewConn6 = %v, want [fd6c:6474:0:2::1]:6881", got)
	}
}

func TestListen(t *testing.T) {
	n := newNet(t, Config{})
	first := listen(t, n, "192.0.2.1:6881")

	tests := []struct {
		name    string
		addr    netip.AddrPort
		wantErr bool
		wantIs  error // if not nil, the error must match it
	}{
		{"other port same IP", netip.MustParseAddrPort("192.0.2.1:6882"), false, nil},
		{"taken", netip.MustParseAddrPort("192.0.2.1:6881"), true, syscall.EADDRINUSE},
		{"taken via mapped form", netip.MustParseAddrPort("[::ffff:192.0.2.1]:6881"), true, syscall.EADDRINUSE},
		{"invalid", netip.AddrPort{}, true, nil},
		{"unspecified v4", netip.MustParseAddrPort("0.0.0.0:6881"), true, nil},
		{"unspecified v6", netip.MustParseAddrPort("[::]:6881"), true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := n.Listen(tt.addr)
			switch {
			case !tt.wantErr && err != nil:
				t.Fatalf("Listen(%v): %v", tt.addr, err)
			case !tt.wantErr:
				c.Close()
			case err == nil:
				t.Fatalf("Listen(%v) succeeded, want error", tt.addr)
			case tt.wantIs != nil && !errors.Is(err, tt.wantIs):
				t.Fatalf("Listen(%v) = %v, want %v", tt.addr, err, tt.wantIs)
			}
		})
	}

	t.Run("port 0", func(t *testing.T) {
		ports := make(map[uint16]bool)
		for range 3 {
			c, err := n.Listen(netip.MustParseAddrPort("192.0.2.1:0"))
			if err != nil {
				t.Fatal(err)
			}
			p := c.AddrPort().Port()
			if p == 0 || ports[p] {
				t.Errorf("port 0 gave port %d (seen before: %v)", p, ports[p])
			}
			ports[p] = true
		}
	})

	t.Run("reuse after Close", func(t *testing.T) {
		first.Close()
		listen(t, n, "192.0.2.1:6881")
	})
}

func TestTruncation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t, Config{})
		a, b := newConn(t, n, false), newConn(t, n, false)
		payload := []byte("0123456789")
		b.SetReadDeadline(time.Now().Add(5 * time.Second)) // a failure must not hang
		for _, size := range []int{0, 1, 4, 10, 20} {
			send(t, a, b.AddrPort(), payload)
			buf := make([]byte, size)
			k, _, err := b.ReadFrom(buf)
			want := min(size, len(payload))
			if err != nil || k != want || !bytes.Equal(buf[:k], payload[:want]) {
				t.Errorf("ReadFrom(%d-byte buffer) = %d %q, %v; want %d %q", size, k, buf[:k], err, want, payload[:want])
			}
		}
		// An empty datagram is a datagram.
		send(t, a, b.AddrPort(), nil)
		if got, _ := recv(t, b); len(got) != 0 {
			t.Errorf("empty packet read as %q", got)
		}
	})
}

func TestWriteCopiesPayload(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t, Config{Latency: time.Millisecond})
		a, b := newConn(t, n, false), newConn(t, n, false)
		buf := []byte("original")
		send(t, a, b.AddrPort(), buf)
		copy(buf, "mutated!")
		if got, _ := recv(t, b); string(got) != "original" {
			t.Errorf("received %q, want %q", got, "original")
		}
	})
}

func TestNoRoute(t *testing.T) {
	n := newNet(t, Config{})
	a := newConn(t, n, false)
	k, err := a.WriteToUDPAddrPort([]byte("into the void"), netip.MustParseAddrPort("127.9.9.9:1"))
	if err != nil || k != len("into the void") {
		t.Fatalf("write to nowhere = %d, %v; want %d, nil", k, err, len("into the void"))
	}
	checkStats(t, n, Stats{Sent: 1, DroppedNoRoute: 1})
}

func TestDrops(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		filter  func(from, to netip.AddrPort) bool
		payload int
		sends   int
		want    Stats
	}{
		{"too big default", Config{}, nil, 65508, 1, Stats{Sent: 1, DroppedTooBig: 1}},
		{"max default fits", Config{}, nil, 65507, 1, Stats{Sent: 1, Delivered: 1}},
		{"too big custom", Config{MaxPacket: 1500}, nil, 1501, 2, Stats{Sent: 2, DroppedTooBig: 2}},
		{"filtered", Config{}, func(_, _ netip.AddrPort) bool { return false }, 10, 3, Stats{Sent: 3, DroppedFiltered: 3}},
		{"filter passes", Config{}, func(_, _ netip.AddrPort) bool { return true }, 10, 3, Stats{Sent: 3, Delivered: 3}},
		{"total loss", Config{Loss: 1}, nil, 10, 5, Stats{Sent: 5, DroppedLoss: 5}},
		{"queue full", Config{QueueLen: 4}, nil, 10, 10, Stats{Sent: 10, Delivered: 4, DroppedQueueFull: 6}},
		{"default queue", Config{}, nil, 1, 300, Stats{Sent: 300, Delivered: 256, DroppedQueueFull: 44}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newNet(t, tt.cfg)
			n.SetLinkFilter(tt.filter)
			a, b := newConn(t, n, false), newConn(t, n, true)
			for range tt.sends {
				send(t, a, b.AddrPort(), make([]byte, tt.payload))
			}
			checkStats(t, n, tt.want)
		})
	}
}

func TestQueueOverflowKeepsOldest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t, Config{QueueLen: 3})
		a, b := newConn(t, n, false), newConn(t, n, false)
		for i := range 5 {
			send(t, a, b.AddrPort(), []byte{byte(i)})
		}
		for i := range 3 {
			if got, _ := recv(t, b); len(got) != 1 || got[0] != byte(i) {
				t.Errorf("packet %d = %v, want [%d]", i, got, i)
			}
		}
		// Reading made room again.
		send(t, a, b.AddrPort(), []byte{9})
		if got, _ := recv(t, b); len(got) != 1 || got[0] != 9 {
			t.Errorf("after draining got %v, want [9]", got)
		}
		checkStats(t, n, Stats{Sent: 6, Delivered: 4, DroppedQueueFull: 2})
	})
}

func TestLinkFilterArguments(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t, Config{})
		a, b, c := newConn(t, n, false), newConn(t, n, false), newConn(t, n, false)
		// Partition: c may not talk to a, in either direction.
		n.SetLinkFilter(func(from, to netip.AddrPort) bool {
			return !(from == c.AddrPort() && to == a.AddrPort() || from == a.AddrPort() && to == c.AddrPort())
		})
		send(t, a, b.AddrPort(), []byte("ok"))
		send(t, a, c.AddrPort(), []byte("blocked"))
		send(t, c, a.AddrPort(), []byte("blocked"))
		send(t, c, b.AddrPort(), []byte("ok"))
		checkStats(t, n, Stats{Sent: 4, Delivered: 2, DroppedFiltered: 2})
		n.SetLinkFilter(nil)
		send(t, a, c.AddrPort(), []byte("healed"))
		if got, _ := recv(t, c); string(got) != "healed" {
			t.Errorf("after removing filter got %q", got)
		}
	})
}

func TestLossRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const packets, loss = 10_000, 0.05
		run := func(seed int64) (Stats, []byte) {
			n := newNet(t, Config{Seed: seed, Loss: loss, QueueLen: packets})
			a, b := newConn(t, n, false), newConn(t, n, false)
			for i := range packets {
				send(t, a, b.AddrPort(), []byte{byte(i), byte(i >> 8)})
			}
			// Record which packets got through.
			var got []byte
			buf := make([]byte, 2)
			b.SetReadDeadline(time.Now().Add(5 * time.Second)) // a failure must not hang
			for range n.Stats().Delivered {
				k, _, err := b.ReadFromUDPAddrPort(buf)
				if err != nil || k != 2 {
					t.Fatalf("read: %d, %v", k, err)
				}
				got = append(got, buf...)
			}
			return n.Stats(), got
		}
		for _, seed := range []int64{0, 1, 42} {
			st, got := run(seed)
			rate := float64(st.DroppedLoss) / packets
			if rate < 0.03 || rate > 0.07 {
				t.Errorf("seed %d: loss rate %.4f, want within [0.03, 0.07]", seed, rate)
			}
			if st.Delivered+st.DroppedLoss != packets {
				t.Errorf("seed %d: %+v does not add up to %d", seed, st, packets)
			}
			st2, got2 := run(seed)
			if st2 != st || !bytes.Equal(got, got2) {
				t.Errorf("seed %d: two runs differ: %+v vs %+v", seed, st, st2)
			}
		}
		// Seed 0 means seed 1.
		st0, got0 := run(0)
		st1, got1 := run(1)
		if st0 != st1 || !bytes.Equal(got0, got1) {
			t.Errorf("seed 0 and seed 1 differ")
		}
	})
}

func TestLatencyIsExact(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const latency = 100 * time.Millisecond
		n := newNet(t, Config{Latency: latency})
		a, b := newConn(t, n, false), newConn(t, n, true)
		start := time.Now()
		send(t, a, b.AddrPort(), []byte("slow"))

		// Not there a moment before the latency has passed.
		b.SetReadDeadline(start.Add(latency - time.Nanosecond))
		if _, _, err := b.ReadFromUDPAddrPort(make([]byte, 10)); !isTimeout(err) {
			t.Fatalf("read before arrival: err = %v, want timeout", err)
		}
		b.SetReadDeadline(time.Time{})
		if _, _, err := b.ReadFromUDPAddrPort(make([]byte, 10)); err != nil {
			t.Fatal(err)
		}
		if got := time.Since(start); got != latency {
			t.Errorf("packet arrived after %v, want exactly %v", got, latency)
		}
		checkStats(t, n, Stats{Sent: 1, Delivered: 1})
	})
}

func TestJitterBounds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const latency, jitter, packets = 50 * time.Millisecond, 20 * time.Millisecond, 200
		n := newNet(t, Config{Seed: 3, Latency: latency, Jitter: jitter, QueueLen: packets})
		a, b := newConn(t, n, false), newConn(t, n, false)
		start := time.Now()
		for range packets {
			send(t, a, b.AddrPort(), []byte("j"))
		}
		arrivals := make(map[time.Duration]bool)
		for range packets {
			recv(t, b)
			d := time.Since(start)
			if d < latency || d >= latency+jitter {
				t.Fatalf("packet arrived after %v, want within [%v, %v)", d, latency, latency+jitter)
			}
			arrivals[d] = true
		}
		if len(arrivals) < 10 {
			t.Errorf("only %d distinct arrival times among %d packets: jitter not applied?", len(arrivals), packets)
		}
	})
}

func TestBubbleEndsWithPacketsInFlight(t *testing.T) {
	// Packets still waiting out their latency when the test returns (after
	// the network is closed by Cleanup) must not upset synctest.
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t, Config{Latency: time.Hour})
		a, b := newConn(t, n, false), newConn(t, n, true)
		send(t, a, b.AddrPort(), []byte("never read"))
	})
}

func TestInFlightToClosedConn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t, Config{Latency: time.Second})
		a, b := newConn(t, n, false), newConn(t, n, false)
		send(t, a, b.AddrPort(), []byte("late"))
		b.Close()
		time.Sleep(2 * time.Second)
		checkStats(t, n, Stats{Sent: 1, DroppedNoRoute: 1})
	})
}

func TestReadDeadline(t *testing.T) {
	// Real clock, short deadline.
	n := newNet(t, Config{})
	c := newConn(t, n, false)
	c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	start := time.Now()
	_, _, err := c.ReadFrom(make([]byte, 10))
	if !isTimeout(err) {
		t.Fatalf("ReadFrom after deadline: err = %v, want timeout net.Error", err)
	}
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Errorf("timed out after %v, before the deadline", d)
	}
	// A passed deadline fails reads even with packets queued, as on real
	// conns; clearing it lets them through.
	send(t, newConn(t, n, false), c.AddrPort(), []byte("queued"))
	if _, _, err := c.ReadFrom(make([]byte, 10)); !isTimeout(err) {
		t.Fatalf("read with passed deadline and queued packet: err = %v, want timeout", err)
	}
	c.SetDeadline(time.Time{})
	buf := make([]byte, 10)
	if k, _, err := c.ReadFrom(buf); err != nil || string(buf[:k]) != "queued" {
		t.Errorf("read after clearing the deadline: %q, %v; want %q", buf[:k], err, "queued")
	}
}

func TestDeadlineChangeWhileBlocked(t *testing.T) {
	tests := []struct {
		name     string
		initial  time.Duration // 0: no deadline
		changeAt time.Duration
		changeTo time.Duration // relative to the start; 0: clear the deadline
		want     time.Duration // when the read times out; 0: it does not
	}{
		{"set while none", 0, time.Second, 3 * time.Second, 3 * time.Second},
		{"shorten", time.Hour, time.Second, 2 * time.Second, 2 * time.Second},
		{"shorten to the past", time.Hour, time.Second, time.Millisecond, time.Second},
		{"extend", 2 * time.Second, time.Second, 5 * time.Second, 5 * time.Second},
		{"clear", 2 * time.Second, time.Second, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n := newNet(t, Config{})
				c := newConn(t, n, false)
				start := time.Now()
				if tt.initial != 0 {
					c.SetReadDeadline(start.Add(tt.initial))
				}
				type result struct {
					err error
					at  time.Duration
				}
				done := make(chan result, 1)
				go func() {
					_, _, err := c.ReadFrom(make([]byte, 10))
					done <- result{err, time.Since(start)}
				}()
				time.Sleep(tt.changeAt)
				synctest.Wait()
				select {
				case r := <-done:
					t.Fatalf("read returned early after %v: %v", r.at, r.err)
				default:
				}
				if tt.changeTo == 0 {
					c.SetReadDeadline(time.Time{})
				} else {
					c.SetReadDeadline(start.Add(tt.changeTo))
				}
				if tt.want == 0 {
					time.Sleep(time.Hour)
					synctest.Wait()
					select {
					case r := <-done:
						t.Fatalf("read returned after clearing the deadline: %v", r.err)
					default:
					}
					c.Close()
					if r := <-done; !errors.Is(r.err, net.ErrClosed) {
						t.Fatalf("after Close: %v, want net.ErrClosed", r.err)
					}
					return
				}
				r := <-done
				if !isTimeout(r.err) || r.at != tt.want {
					t.Fatalf("read returned %v after %v, want timeout after %v", r.err, r.at, tt.want)
				}
			})
		})
	}
}

func TestClose(t *testing.T) {
	n := newNet(t, Config{})
	a, b := newConn(t, n, false), newConn(t, n, false)

	const readers = 3
	errs := make(chan error, readers)
	for range readers {
		go func() {
			_, _, err := b.ReadFrom(make([]byte, 10))
			errs <- err
		}()
	}
	time.Sleep(10 * time.Millisecond) // let the readers block (not required for correctness)
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for range readers {
		select {
		case err := <-errs:
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("blocked read after Close: %v, want net.ErrClosed", err)
			}
		case <-time.After(hangGuard):
			t.Fatal("Close did not unblock a reader")
		}
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	checks := map[string]error{}
	_, _, checks["ReadFrom"] = b.ReadFrom(make([]byte, 1))
	_, _, checks["ReadFromUDPAddrPort"] = b.ReadFromUDPAddrPort(make([]byte, 1))
	_, checks["WriteTo"] = b.WriteTo([]byte("x"), a.LocalAddr())
	_, checks["WriteTo nil"] = b.WriteTo([]byte("x"), nil)
	_, checks["WriteToUDPAddrPort"] = b.WriteToUDPAddrPort([]byte("x"), a.AddrPort())
	checks["SetDeadline"] = b.SetDeadline(time.Now())
	checks["SetReadDeadline"] = b.SetReadDeadline(time.Now())
	checks["SetWriteDeadline"] = b.SetWriteDeadline(time.Now())
	for op, err := range checks {
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("%s after Close: %v, want net.ErrClosed", op, err)
		}
	}
	// The closed conn no longer receives; its address is free.
	send(t, a, b.AddrPort(), []byte("x"))
	checkStats(t, n, Stats{Sent: 1, DroppedNoRoute: 1})
	listen(t, n, b.AddrPort().String())
}

func TestNetworkClose(t *testing.T) {
	n, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	a, b := newConn(t, n, false), listen(t, n, "[2001:db8::1]:53")
	done := make(chan error, 1)
	go func() {
		_, _, err := a.ReadFrom(make([]byte, 1))
		done <- err
	}()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Errorf("blocked read after Network.Close: %v", err)
	}
	if _, err := b.WriteToUDPAddrPort([]byte("x"), a.AddrPort()); !errors.Is(err, net.ErrClosed) {
		t.Errorf("write after Network.Close: %v", err)
	}
	if _, err := n.NewConn4(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("NewConn4 after Close: %v", err)
	}
	if _, err := n.NewConn6(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("NewConn6 after Close: %v", err)
	}
	if _, err := n.Listen(netip.MustParseAddrPort("127.0.0.9:1")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Listen after Close: %v", err)
	}
}

func TestConcurrentWritersAndReaders(t *testing.T) {
	const writers, readers, perWriter = 8, 3, 500
	n := newNet(t, Config{Seed: 9, Loss: 0.1, QueueLen: writers * perWriter})
	dst := newConn(t, n, true)

	var wg sync.WaitGroup
	for w := range writers {
		src := newConn(t, n, w%2 == 0)
		wg.Go(func() {
			buf := make([]byte, 8)
			for i := range perWriter {
				buf[0] = byte(i) // the buffer is reused at once
				if _, err := src.WriteToUDPAddrPort(buf, dst.AddrPort()); err != nil {
					t.Errorf("write: %v", err)
					return
				}
			}
		})
	}
	// Meanwhile, flip the link filter.
	wg.Go(func() {
		for i := range 100 {
			if i%2 == 0 {
				n.SetLinkFilter(func(_, _ netip.AddrPort) bool { return true })
			} else {
				n.SetLinkFilter(nil)
			}
			n.Stats()
		}
	})
	wg.Wait()

	st := n.Stats()
	if st.Sent != writers*perWriter || st.Delivered+st.DroppedLoss != st.Sent {
		t.Fatalf("stats do not add up: %+v", st)
	}
	// Several readers drain the queue concurrently.
	var mu sync.Mutex
	var read uint64
	var rg sync.WaitGroup
	dst.SetReadDeadline(time.Now().Add(hangGuard))
	for range readers {
		rg.Go(func() {
			buf := make([]byte, 8)
			for {
				mu.Lock()
				if read == st.Delivered {
					mu.Unlock()
					return
				}
				read++
				mu.Unlock()
				if _, _, err := dst.ReadFromUDPAddrPort(buf); err != nil {
					t.Errorf("read: %v", err)
					return
				}
			}
		})
	}
	rg.Wait()
}

func TestConcurrentBlockedReaders(t *testing.T) {
	// Readers block first; a burst of packets must wake all of them.
	const readers = 4
	n := newNet(t, Config{})
	a, b := newConn(t, n, false), newConn(t, n, false)
	got := make(chan byte, readers)
	for range readers {
		go func() {
			buf := make([]byte, 1)
			if _, _, err := b.ReadFrom(buf); err == nil {
				got <- buf[0]
			}
		}()
	}
	time.Sleep(10 * time.Millisecond)
	for i := range readers {
		send(t, a, b.AddrPort(), []byte{byte(i)})
	}
	seen := make(map[byte]bool)
	for range readers {
		select {
		case v := <-got:
			seen[v] = true
		case <-time.After(hangGuard):
			t.Fatalf("only %d of %d blocked readers got a packet", len(seen), readers)
		}
	}
	if len(seen) != readers {
		t.Errorf("readers got %v, want %d distinct packets", seen, readers)
	}
}

func TestNoGoroutineLeak(t *testing.T) {
	base := runtime.NumGoroutine()
	n, err := New(Config{Latency: 5 * time.Millisecond, Jitter: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var conns []*Conn
	for i := range 20 {
		conns = append(conns, newConn(t, n, i%2 == 1))
	}
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() {
			c.SetReadDeadline(time.Now().Add(time.Hour))
			buf := make([]byte, 16)
			for {
				if _, _, err := c.ReadFrom(buf); err != nil {
					return
				}
			}
		})
	}
	for i, c := range conns {
		send(t, c, conns[(i+1)%len(conns)].AddrPort(), []byte("hello"))
	}
	time.Sleep(10 * time.Millisecond)
	for i, c := range conns {
		send(t, c, conns[(i+3)%len(conns)].AddrPort(), []byte("in flight at Close"))
	}
	n.Close()
	wg.Wait()

	deadline := time.Now().Add(hangGuard) // delivery callbacks still exiting
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines after Close, %d before:\n%s",
				runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestManyConns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const count = 10_000
		n := newNet(t, Config{})
		conns := make([]*Conn, count)
		for i := range conns {
			conns[i] = newConn(t, n, i%2 == 1)
		}
		// A few spot checks that routing works among them.
		for _, i := range []int{0, 1, count / 2, count - 1} {
			j := (i + count/3) % count
			send(t, conns[i], conns[j].AddrPort(), []byte(fmt.Sprint(i)))
			if got, from := recv(t, conns[j]); string(got) != fmt.Sprint(i) || from != conns[i].AddrPort() {
				t.Errorf("conn %d -> %d: got %q from %v", i, j, got, from)
			}
		}
	})
}

func BenchmarkSendReceive(b *testing.B) {
	n := newNet(b, Config{})
	src, dst := newConn(b, n, false), newConn(b, n, false)
	to := dst.AddrPort()
	payload := make([]byte, 200) // a typical KRPC message
	buf := make([]byte, 1500)
	b.ReportAllocs()
	packets := 0
	for b.Loop() {
		packets++
		if _, err := src.WriteToUDPAddrPort(payload, to); err != nil {
			b.Fatal(err)
		}
		if _, _, err := dst.ReadFromUDPAddrPort(buf); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(packets)/b.Elapsed().Seconds(), "packets/s")
}

func BenchmarkSendReceiveParallel(b *testing.B) {
	// Each goroutine has its own pair of conns and reads what it wrote.
	n := newNet(b, Config{QueueLen: 1})
	var mu sync.Mutex
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		mu.Lock()
		src, dst := newConn(b, n, false), newConn(b, n, true)
		mu.Unlock()
		to := dst.AddrPort()
		payload := make([]byte, 200)
		buf := make([]byte, 1500)
		for pb.Next() {
			src.WriteToUDPAddrPort(payload, to)
			if _, _, err := dst.ReadFromUDPAddrPort(buf); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "packets/s")
}

func BenchmarkPingPong(b *testing.B) {
	// Two goroutines bounce a packet, so every read blocks and is woken.
	n := newNet(b, Config{})
	ping, pong := newConn(b, n, false), newConn(b, n, false)
	go func() {
		buf := make([]byte, 1500)
		for {
			k, from, err := pong.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			pong.WriteToUDPAddrPort(buf[:k], from)
		}
	}()
	payload := make([]byte, 200)
	buf := make([]byte, 1500)
	b.ReportAllocs()
	rounds := 0
	for b.Loop() {
		rounds++
		ping.WriteToUDPAddrPort(payload, pong.AddrPort())
		if _, _, err := ping.ReadFromUDPAddrPort(buf); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(2*rounds)/b.Elapsed().Seconds(), "packets/s")
}

// BenchmarkConnMemory reports the heap held per open conn that has a
// blocked-read notification channel and an empty queue.
func BenchmarkConnMemory(b *testing.B) {
	const count = 100_000
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		n, err := New(Config{})
		if err != nil {
			b.Fatal(err)
		}
		conns := make([]*Conn, count)
		for i := range conns {
			c, err := n.NewConn4()
			if err != nil {
				b.Fatal(err)
			}
			// Make the channel a conn has while a read is blocked.
			c.wake = make(chan struct{})
			conns[i] = c
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		// The conns slice itself is not part of the cost.
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/count-8, "bytes/conn")
		runtime.KeepAlive(conns)
		n.Close()
	}
}

func TestSetConditions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const latency = 100 * time.Millisecond
		n := newNet(t, Config{})
		a, b := newConn(t, n, false), newConn(t, n, false)
		buf := make([]byte, 10)

		// Built without delay: delivered before WriteTo returns.
		send(t, a, b.AddrPort(), []byte("now"))
		checkStats(t, n, Stats{Sent: 1, Delivered: 1})
		recv(t, b)

		// Invalid values are refused and change nothing.
		for _, c := range []struct {
			latency, jitter time.Duration
			loss            float64
		}{{-1, 0, 0}, {0, -1, 0}, {0, 0, -0.1}, {0, 0, 1.1}, {0, 0, math.NaN()}} {
			if err := n.SetConditions(c.latency, c.jitter, c.loss); err == nil {
				t.Errorf("SetConditions(%v, %v, %v) = nil, want an error", c.latency, c.jitter, c.loss)
			}
		}
		start := time.Now()
		send(t, a, b.AddrPort(), []byte("still"))
		if _, _, err := b.ReadFromUDPAddrPort(buf); err != nil {
			t.Fatal(err)
		}
		if got := time.Since(start); got != 0 {
			t.Errorf("after refused SetConditions calls a packet took %v, want 0", got)
		}

		// Latency applies to packets written afterwards; a packet in
		// flight keeps its delay when the conditions change again.
		if err := n.SetConditions(latency, 0, 0); err != nil {
			t.Fatal(err)
		}
		start = time.Now()
		send(t, a, b.AddrPort(), []byte("slow"))
		if err := n.SetConditions(0, 0, 0); err != nil {
			t.Fatal(err)
		}
		if _, _, err := b.ReadFromUDPAddrPort(buf); err != nil {
			t.Fatal(err)
		}
		if got := time.Since(start); got != latency {
			t.Errorf("packet arrived after %v, want exactly %v", got, latency)
		}

		// Loss 1 drops everything; back to 0, nothing is lost.
		if err := n.SetConditions(0, 0, 1); err != nil {
			t.Fatal(err)
		}
		send(t, a, b.AddrPort(), []byte("lost"))
		if err := n.SetConditions(0, 0, 0); err != nil {
			t.Fatal(err)
		}
		send(t, a, b.AddrPort(), []byte("kept"))
		if got, _ := recv(t, b); string(got) != "kept" {
			t.Errorf("received %q, want %q", got, "kept")
		}
		checkStats(t, n, Stats{Sent: 5, Delivered: 4, DroppedLoss: 1})
	})
}

func TestSetConditionsWhilePacketsFlow(t *testing.T) {
	// Run with -race: SetConditions races with WriteTo by design.
	n := newNet(t, Config{QueueLen: 100_000})
	a, b := newConn(t, n, false), newConn(t, n, false)
	const writers, packets = 4, 500
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for range packets {
				send(t, a, b.AddrPort(), []byte("x"))
			}
		})
	}
	wg.Go(func() {
		for i := range 200 {
			if err := n.SetConditions(time.Duration(i%3)*time.Microsecond, time.Duration(i%2)*time.Microsecond, float64(i%2)/2); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
	deadline := time.Now().Add(hangGuard) // packets still in flight
	for {
		st := n.Stats()
		if st.Delivered+st.DroppedLoss == writers*packets {
			if st.Sent != writers*packets {
				t.Errorf("Stats() = %+v, want Sent = %d", st, writers*packets)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("packets unaccounted for: %+v", n.Stats())
		}
		time.Sleep(time.Millisecond)
	}
}

func TestHandler(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t, Config{})
		a := newConn(t, n, false)
		owned := listen(t, n, "192.0.2.1:1")
		var calls []string
		n.SetHandler(func(to, from netip.AddrPort, pkt []byte) ([]byte, bool) {
			calls = append(calls, fmt.Sprintf("%v<-%v:%s", to, from, pkt))
			if string(pkt) == "silent" {
				return nil, false
			}
			return append([]byte("re:"), pkt...), true
		})
		ghost := netip.MustParseAddrPort("198.51.100.7:6881")
		send(t, a, ghost, []byte("hello"))
		got, from := recv(t, a)
		if string(got) != "re:hello" || from != ghost {
			t.Errorf("reply = %q from %v; want %q from %v", got, from, "re:hello", ghost)
		}
		send(t, a, ghost, []byte("silent"))
		// A conn takes precedence over the handler.
		send(t, a, owned.AddrPort(), []byte("to conn"))
		if got, _ := recv(t, owned); string(got) != "to conn" {
			t.Errorf("conn got %q", got)
		}
		want := []string{
			fmt.Sprintf("%v<-%v:hello", ghost, a.AddrPort()),
			fmt.Sprintf("%v<-%v:silent", ghost, a.AddrPort()),
		}
		if fmt.Sprint(calls) != fmt.Sprint(want) {
			t.Errorf("handler calls = %q; want %q", calls, want)
		}
		checkStats(t, n, Stats{Sent: 4, Delivered: 2, Handled: 2})

		// Removing the handler restores DroppedNoRoute.
		n.SetHandler(nil)
		send(t, owned, ghost, []byte("z"))
		checkStats(t, n, Stats{Sent: 5, Delivered: 2, Handled: 2, DroppedNoRoute: 1})
	})
}

func TestHandlerRepliesSeeConditions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t, Config{Latency: 10 * time.Millisecond})
		a := newConn(t, n, false)
		ghost := netip.MustParseAddrPort("198.51.100.7:6881")
		var handledAt atomic.Int64 // UnixNano; the handler runs in a timer goroutine
		n.SetHandler(func(_, _ netip.AddrPort, pkt []byte) ([]byte, bool) {
			handledAt.Store(time.Now().UnixNano())
			return []byte("pong"), true
		})
		start := time.Now()
		send(t, a, ghost, []byte("ping"))
		got, _ := recv(t, a)
		if string(got) != "pong" {
			t.Fatalf("got %q", got)
		}
		if d := time.Unix(0, handledAt.Load()).Sub(start); d != 10*time.Millisecond {
			t.Errorf("handled after %v; want 10ms", d)
		}
		if d := time.Since(start); d != 20*time.Millisecond {
			t.Errorf("round trip %v; want 20ms", d)
		}

		// Loss applies to replies too: with total loss on the way back the
		// handler runs but nothing arrives.
		n.SetLinkFilter(func(from, _ netip.AddrPort) bool { return from != ghost })
		send(t, a, ghost, []byte("ping"))
		time.Sleep(time.Second)
		a.SetReadDeadline(time.Now())
		if _, _, err := a.ReadFromUDPAddrPort(make([]byte, 10)); !isTimeout(err) {
			t.Errorf("read after filtered reply: %v; want timeout", err)
		}
		checkStats(t, n, Stats{Sent: 4, Delivered: 1, Handled: 2, DroppedFiltered: 1})

		// A reply that arrives after its destination closed is dropped,
		// not handed back to the handler.
		n.SetLinkFilter(nil)
		var calls atomic.Int32
		n.SetHandler(func(_, _ netip.AddrPort, _ []byte) ([]byte, bool) {
			calls.Add(1)
			return []byte("late"), true
		})
		send(t, a, ghost, []byte("ping"))
		time.Sleep(15 * time.Millisecond) // handled at 10ms, reply in flight
		a.Close()
		time.Sleep(time.Second)
		if calls.Load() != 1 {
			t.Errorf("handler called %d times; want 1", calls.Load())
		}
		checkStats(t, n, Stats{Sent: 6, Delivered: 1, Handled: 3, DroppedFiltered: 1, DroppedNoRoute: 1})

		// After Close the handler is not called.
		b := newConn(t, n, false)
		send(t, b, ghost, []byte("ping"))
		n.Close()
		time.Sleep(time.Second)
		if calls.Load() != 1 {
			t.Errorf("handler called %d times after Close; want 1", calls.Load())
		}
	})
}
