package shard

import (
	"errors"
	"net"
	"os"
	"sync"
	"time"

	"github.com/lightdht/lightdht/crawler"
)

// mux shares the process's one socket among the zone crawls it runs at
// once (Config.Parallel): each crawl's transport reads every packet the
// socket receives (a transport drops replies whose transaction ID is not
// its own, as it drops any stray reply), and all crawls' packets leave
// through one pacer at the process's rate, so that the process queries
// no faster than one crawler. Overlapping zones hides the tail each
// zone's crawl ends with (its last timeouts), which a process would
// otherwise pay once per zone. The vantage stays the socket's, and so
// does the per-IP interval: every crawl on the socket, at once or one
// after another, keeps it in the mux's one IPSpacing, so that no IP
// hears from the process more often than one crawl would ask.
type mux struct {
	conn     net.PacketConn
	interval time.Duration      // least time between two packets sent
	done     chan struct{}      // closed when the reader has ended
	ips      *crawler.IPSpacing // when each IP was last queried, by any of the crawls (their Config.IPSpacing)

	mu   sync.Mutex
	next time.Time // when the next packet may leave
	subs map[*muxConn]struct{}
}

// muxQueue is the packets a crawl's conn holds before it drops (as a
// socket buffer does when its reader lags).
const muxQueue = 4096

// newMux starts reading conn for the crawls to come, pacing their
// packets to rate per second and their queries to each IP through ips
// (a new IPSpacing if nil).
func newMux(conn net.PacketConn, rate float64, ips *crawler.IPSpacing) *mux {
	if ips == nil {
		ips = crawler.NewIPSpacing()
	}
	m := &mux{conn: conn, interval: time.Duration(float64(time.Second) / rate), done: make(chan struct{}),
		ips: ips, subs: make(map[*muxConn]struct{})}
	go m.read()
	return m
}

// read passes every packet the socket receives to every crawl's conn,
// until the socket is closed.
func (m *mux) read() {
	defer close(m.done)
	buf := make([]byte, 64<<10)
	for {
		n, addr, err := m.conn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			time.Sleep(time.Millisecond) // a transient error (ICMP); keep reading
			continue
		}
		m.mu.Lock()
		for s := range m.subs {
			p := packet{b: append([]byte(nil), buf[:n]...), addr: addr}
			select {
			case s.in <- p:
			default: // the crawl lags: dropped, as by a full socket buffer
			}
		}
		m.mu.Unlock()
	}
}

// close closes the socket and waits for the reader to end.
func (m *mux) close() error {
	err := m.conn.Close()
	<-m.done
	return err
}

// attach returns a conn for one zone's crawl.
func (m *mux) attach() *muxConn {
	c := &muxConn{m: m, in: make(chan packet, muxQueue), closed: make(chan struct{})}
	m.mu.Lock()
	m.subs[c] = struct{}{}
	m.mu.Unlock()
	return c
}

// muxBurst is how many packets may leave at once after a quiet spell,
// as the crawler's own pacer allows.
const muxBurst = 50

// pace waits until the next packet may leave: a token bucket of
// muxBurst packets, filled at the process's rate.
func (m *mux) pace() {
	m.mu.Lock()
	now := time.Now()
	if floor := now.Add(-muxBurst * m.interval); m.next.Before(floor) {
		m.next = floor
	}
	at := m.next
	m.next = at.Add(m.interval)
	m.mu.Unlock()
	if d := at.Sub(now); d > 0 {
		time.Sleep(d)
	}
}

// packet is one received datagram.
type packet struct {
	b    []byte
	addr net.Addr
}

// muxConn is one zone crawl's view of the process's socket. The crawler
// owns and closes it; Close detaches it and leaves the socket open.
type muxConn struct {
	m      *mux
	in     chan packet
	once   sync.Once
	closed chan struct{}
}

// ReadFrom returns the next packet the socket received, or net.ErrClosed
// once Close has been called.
func (c *muxConn) ReadFrom(b []byte) (int, net.Addr, error) {
	select {
	case p := <-c.in:
		return copy(b, p.b), p.addr, nil
	case <-c.closed:
		return 0, nil, net.ErrClosed
	}
}

// WriteTo sends b through the process's pacer.
func (c *muxConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	c.m.pace()
	return c.m.conn.WriteTo(b, addr)
}

// Close detaches the conn: its reads fail from now on. The socket stays
// open for the process's other crawls.
func (c *muxConn) Close() error {
	c.once.Do(func() {
		c.m.mu.Lock()
		delete(c.m.subs, c)
		c.m.mu.Unlock()
		close(c.closed)
	})
	return nil
}

// LocalAddr returns the socket's address: the process's vantage.
func (c *muxConn) LocalAddr() net.Addr { return c.m.conn.LocalAddr() }

// SetDeadline, SetReadDeadline and SetWriteDeadline do nothing: the
// socket is the process's, and the transport sets none.
func (c *muxConn) SetDeadline(time.Time) error      { return nil }
func (c *muxConn) SetReadDeadline(time.Time) error  { return nil }
func (c *muxConn) SetWriteDeadline(time.Time) error { return nil }

// SetReadBuffer sizes the socket's receive buffer, if it has one, as the
// crawler asks.
func (c *muxConn) SetReadBuffer(n int) error {
	if rb, ok := c.m.conn.(interface{ SetReadBuffer(int) error }); ok {
		return rb.SetReadBuffer(n)
	}
	return nil
}
