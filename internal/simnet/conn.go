package simnet

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// packet is a datagram on its way or waiting in a receive queue.
type packet struct {
	from  netip.AddrPort
	data  []byte
	reply bool // returned by the handler: never handed to it again
}

// shrinkCap is the largest queue capacity kept once a queue is drained;
// bigger backing arrays are released so that a million idle conns do not
// keep the memory of their largest bursts.
const shrinkCap = 4

// errInvalidAddr is returned for a destination that is not a valid IP
// address and port.
var errInvalidAddr = errors.New("simnet: invalid address")

// Conn is one endpoint of a Network: a UDP-like [net.PacketConn] with its
// own address. Besides the net.PacketConn methods it has the allocation-free
// methods of [*net.UDPConn] that work with [netip.AddrPort]. Its methods are
// safe for concurrent use.
//
// Errors are [*net.OpError] values, as with real conns: after Close they
// satisfy errors.Is(err, net.ErrClosed), and on a passed read deadline
// errors.Is(err, os.ErrDeadlineExceeded) and their Timeout method reports
// true.
type Conn struct {
	net      *Network
	addr     netip.AddrPort
	closed   atomic.Bool // set with mu held; read without it on the write path
	listened bool        // made by Listen, so counted in Network.listenIPs

	mu   sync.Mutex
	q    []packet // receive queue; q[head:] is unread
	head int      // index of the oldest unread packet in q
	// wake, if not nil, is closed (and set to nil) when a packet arrives,
	// the conn closes or the read deadline changes, which wakes every
	// blocked reader. A reader about to block makes it if it is nil, so an
	// idle conn without a blocked reader has no channel.
	wake         chan struct{}
	readDeadline time.Time
	queueLen     int // packets the receive queue holds; 0: Config.QueueLen
}

// BufferPacketBytes is what one packet counts for in SetReadBuffer: a
// full Ethernet MTU.
const BufferPacketBytes = 1500

// SetReadBuffer sizes the conn's receive queue as a UDP socket's receive
// buffer would be sized: it holds bytes/BufferPacketBytes packets (at
// least 1) from now on, in place of Config.QueueLen. It fails only on a
// negative size, like [*net.UDPConn.SetReadBuffer].
func (c *Conn) SetReadBuffer(bytes int) error {
	if bytes < 0 {
		return c.opError("set", nil, errors.New("negative buffer size"))
	}
	c.mu.Lock()
	c.queueLen = max(1, bytes/BufferPacketBytes)
	c.mu.Unlock()
	return nil
}

// AddrPort returns the conn's local address.
func (c *Conn) AddrPort() netip.AddrPort { return c.addr }

// LocalAddr returns the conn's local address as a [*net.UDPAddr].
func (c *Conn) LocalAddr() net.Addr { return net.UDPAddrFromAddrPort(c.addr) }

// ReadFrom waits for a packet, copies its payload into b and returns the
// number of bytes copied and the sender's address as a [*net.UDPAddr]. A
// payload longer than b is truncated to len(b), and the rest is lost, as
// with UDP.
func (c *Conn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, from, err := c.read(b)
	if err != nil {
		return 0, nil, err
	}
	return n, net.UDPAddrFromAddrPort(from), nil
}

// ReadFromUDPAddrPort is like ReadFrom but returns the sender's address as
// a [netip.AddrPort], without allocating.
func (c *Conn) ReadFromUDPAddrPort(b []byte) (n int, addr netip.AddrPort, err error) {
	return c.read(b)
}

// WriteTo sends a packet with payload b to addr, which should be a
// [*net.UDPAddr]; other [net.Addr] values are accepted if their String
// method returns an "ip:port" that [netip.ParseAddrPort] parses. b is
// copied, so the caller may reuse it at once. WriteTo never blocks. As
// with UDP, a packet that is lost, filtered, too big, undeliverable or
// dropped at a full queue is dropped silently (and counted in Stats), and
// WriteTo still returns len(b), nil. It returns an error only if the conn
// is closed or addr is not a valid address.
func (c *Conn) WriteTo(b []byte, addr net.Addr) (int, error) {
	var to netip.AddrPort
	switch a := addr.(type) {
	case *net.UDPAddr:
		if a != nil {
			to = a.AddrPort()
		}
	case nil:
	default:
		to, _ = netip.ParseAddrPort(a.String())
	}
	if !to.Addr().IsValid() {
		if c.closed.Load() {
			return 0, c.opError("write", addr, net.ErrClosed)
		}
		return 0, c.opError("write", addr, errInvalidAddr)
	}
	return c.write(b, to)
}

// WriteToUDPAddrPort is like WriteTo but takes the destination as a
// [netip.AddrPort].
func (c *Conn) WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	if !addr.Addr().IsValid() && !c.closed.Load() {
		return 0, c.opError("write", nil, errInvalidAddr)
	}
	return c.write(b, addr)
}

func (c *Conn) write(b []byte, to netip.AddrPort) (int, error) {
	to = normalize(to)
	if c.closed.Load() {
		return 0, c.opError("write", udpAddrOrNil(to), net.ErrClosed)
	}
	c.net.send(c.addr, to, b)
	return len(b), nil
}

// Close closes the conn: blocked and later reads and writes return an
// error satisfying errors.Is(err, net.ErrClosed), unread packets are
// discarded, packets still in flight to the conn are dropped on arrival
// (counted in Stats.DroppedNoRoute), and the address becomes free for a new
// conn. Close is idempotent and always returns nil.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closed.Load() {
		c.mu.Unlock()
		return nil
	}
	c.closed.Store(true)
	clear(c.q)
	c.q, c.head = nil, 0
	c.wakeLocked()
	c.mu.Unlock()
	c.net.remove(c)
	return nil
}

// SetDeadline sets the read deadline, as SetReadDeadline does; the write
// deadline is ignored (see SetWriteDeadline).
func (c *Conn) SetDeadline(t time.Time) error { return c.SetReadDeadline(t) }

// SetReadDeadline sets the time after which reads fail with an error that
// satisfies errors.Is(err, os.ErrDeadlineExceeded). It applies to reads
// already blocked as well as to later ones. As with real conns, once the
// deadline has passed reads fail even if packets are queued. A zero t
// means no deadline. It returns an error only if the conn is closed.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		return c.opError("set", nil, net.ErrClosed)
	}
	c.readDeadline = t
	c.wakeLocked()
	return nil
}

// SetWriteDeadline accepts and ignores t: writes never block, so they
// never time out. It returns an error only if the conn is closed.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	if c.closed.Load() {
		return c.opError("set", nil, net.ErrClosed)
	}
	return nil
}

// wakeLocked wakes every blocked reader so that it looks at the conn's
// state again. c.mu must be held.
func (c *Conn) wakeLocked() {
	if c.wake != nil {
		close(c.wake)
		c.wake = nil
	}
}

// enqueue appends p to the receive queue, or drops it if the conn is
// closed or the queue is full.
func (c *Conn) enqueue(p packet) {
	n := c.net
	c.mu.Lock()
	switch {
	case c.closed.Load():
		c.mu.Unlock()
		n.droppedNoRoute.Add(1)
		return
	case len(c.q)-c.head >= c.limitLocked():
		c.mu.Unlock()
		n.droppedQueueFull.Add(1)
		return
	}
	if len(c.q) == cap(c.q) && c.head > 0 && c.head >= len(c.q)/2 {
		// Slide the unread packets to the front rather than grow; as at
		// least half of q is read, the copying costs O(1) per packet.
		k := copy(c.q, c.q[c.head:])
		clear(c.q[k:])
		c.q, c.head = c.q[:k], 0
	}
	c.q = append(c.q, p)
	c.wakeLocked()
	c.mu.Unlock()
	n.delivered.Add(1)
}

// limitLocked returns how many unread packets the queue holds.
func (c *Conn) limitLocked() int {
	if c.queueLen > 0 {
		return c.queueLen
	}
	return c.net.queueLen
}

// read waits for a packet and copies it into b.
func (c *Conn) read(b []byte) (int, netip.AddrPort, error) {
	var (
		timer      *time.Timer
		timerUntil time.Time
	)
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	c.mu.Lock()
	for {
		if c.closed.Load() {
			c.mu.Unlock()
			return 0, netip.AddrPort{}, c.opError("read", nil, net.ErrClosed)
		}
		deadline := c.readDeadline
		if !deadline.IsZero() && !time.Now().Before(deadline) {
			c.mu.Unlock()
			return 0, netip.AddrPort{}, c.opError("read", nil, os.ErrDeadlineExceeded)
		}
		if c.head < len(c.q) {
			p := c.q[c.head]
			c.q[c.head] = packet{}
			c.head++
			if c.head == len(c.q) {
				c.head = 0
				if cap(c.q) > shrinkCap {
					c.q = nil
				} else {
					c.q = c.q[:0]
				}
			}
			c.mu.Unlock()
			return copy(b, p.data), p.from, nil
		}

		if c.wake == nil {
			c.wake = make(chan struct{})
		}
		wake := c.wake
		c.mu.Unlock()

		var expired <-chan time.Time
		if !deadline.IsZero() {
			if timer == nil {
				timer = time.NewTimer(time.Until(deadline))
			} else if !deadline.Equal(timerUntil) {
				timer.Reset(time.Until(deadline))
			}
			timerUntil = deadline
			expired = timer.C
		}
		select {
		case <-wake:
		case <-expired:
		}
		c.mu.Lock()
	}
}

// opError wraps err the way the net package does for UDP conns.
func (c *Conn) opError(op string, addr net.Addr, err error) error {
	return &net.OpError{Op: op, Net: "udp", Source: c.LocalAddr(), Addr: addr, Err: err}
}

var _ net.PacketConn = (*Conn)(nil)
