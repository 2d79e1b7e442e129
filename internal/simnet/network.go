package simnet

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	defaultMaxPacket = 65507 // largest UDP payload over IPv4
	defaultQueueLen  = 256
	defaultPort      = 6881 // port of conns made by NewConn4 and NewConn6

	// Ports picked by Listen for port 0, like an ephemeral port range.
	firstEphemeral = 49152
	lastEphemeral  = 65535

	first4 = 0x7f000002 // 127.0.0.2
	last4  = 0x7ffffffe // 127.255.255.254
)

// prefix6 is the fixed top half of NewConn6 addresses: fd6c:6474::/32.
var prefix6 = [4]byte{0xfd, 0x6c, 0x64, 0x74}

// Config sets the behaviour of a Network. The zero value is a valid,
// lossless network that delivers immediately.
type Config struct {
	// Seed seeds the generator for loss and jitter draws. 0 means seed 1,
	// so the zero Config is deterministic too.
	Seed int64

	// Latency is the one-way base delay of every packet. 0 means no delay.
	Latency time.Duration

	// Jitter adds a uniform random delay in [0, Jitter) to every packet.
	// 0 means none. With both Latency and Jitter 0, WriteTo delivers the
	// packet before it returns.
	Jitter time.Duration

	// Loss is the probability, in [0, 1], that a packet is dropped.
	Loss float64

	// MaxPacket is the largest payload, in bytes, that is carried; larger
	// packets are dropped and counted in Stats.DroppedTooBig. 0 means
	// 65507, the largest UDP payload over IPv4.
	MaxPacket int

	// QueueLen is the number of received but unread packets a conn holds.
	// Packets arriving at a full queue are dropped and counted in
	// Stats.DroppedQueueFull, like datagrams arriving at a full socket
	// buffer. 0 means 256.
	QueueLen int
}

// Stats counts what happened to the packets written to a Network. Once no
// packet is in flight (waiting out its latency),
//
//	Sent == Delivered + DroppedLoss + DroppedNoRoute + DroppedQueueFull +
//	        DroppedTooBig + DroppedFiltered + DroppedLink
type Stats struct {
	Sent             uint64 // packets accepted by WriteTo on an open conn
	Delivered        uint64 // packets put on a receive queue (read or not)
	DroppedLoss      uint64 // dropped by the random loss of Config.Loss
	DroppedNoRoute   uint64 // no open conn had the destination address on arrival
	DroppedQueueFull uint64 // the destination's receive queue was full
	DroppedTooBig    uint64 // payload longer than Config.MaxPacket
	DroppedFiltered  uint64 // rejected by the link filter
	DroppedLink      uint64 // dropped at a full queue of a host's link (SetLink)

	// Handled counts packets handed to the handler installed with
	// SetHandler because no open conn had their destination. They are not
	// counted in Delivered, so with a handler the sum above becomes
	//
	//	Sent == Delivered + Handled + DroppedLoss + DroppedNoRoute +
	//	        DroppedQueueFull + DroppedTooBig + DroppedFiltered +
	//	        DroppedLink
	//
	// Replies returned by the handler count in Sent like any packet.
	Handled uint64
}

// conditions are the delay and loss applied to each packet. A Network
// swaps them as a whole, so that a packet never sees a mix of old and new
// values.
type conditions struct {
	latency time.Duration
	jitter  time.Duration
	loss    float64
}

// checkConditions returns an error if a duration is negative or loss is
// not in [0, 1].
func checkConditions(latency, jitter time.Duration, loss float64) error {
	switch {
	case latency < 0:
		return fmt.Errorf("simnet: negative Latency %v", latency)
	case jitter < 0:
		return fmt.Errorf("simnet: negative Jitter %v", jitter)
	case math.IsNaN(loss) || loss < 0 || loss > 1:
		return fmt.Errorf("simnet: Loss %v outside [0, 1]", loss)
	}
	return nil
}

// linkFilter decides whether a packet from one address to another may pass.
type linkFilter = func(from, to netip.AddrPort) bool

// Handler answers packets sent to addresses that no conn owns; see
// [Network.SetHandler].
type Handler = func(to, from netip.AddrPort, pkt []byte) (reply []byte, ok bool)

// Network is an in-memory UDP network. Create one with New; its methods are
// safe for concurrent use.
type Network struct {
	cond      atomic.Pointer[conditions] // latency, jitter and loss; never nil
	maxPacket int
	queueLen  int

	rngMu sync.Mutex
	rng   *rand.Rand

	filter  atomic.Pointer[linkFilter]
	handler atomic.Pointer[Handler]

	linkMu sync.Mutex            // serializes SetLink
	links  atomic.Pointer[links] // hosts' links by IP (link.go); never nil

	mu        sync.RWMutex
	conns     map[netip.AddrPort]*Conn
	listenIPs map[netip.Addr]int // open conns made by Listen, by IP
	next4     uint32             // next candidate for NewConn4
	next6     uint32             // next candidate /64 for NewConn6
	nextPort  uint16             // next candidate port for Listen with port 0
	closed    bool

	sent             atomic.Uint64
	delivered        atomic.Uint64
	droppedLoss      atomic.Uint64
	droppedNoRoute   atomic.Uint64
	droppedQueueFull atomic.Uint64
	droppedTooBig    atomic.Uint64
	droppedFiltered  atomic.Uint64
	droppedLink      atomic.Uint64
	handled          atomic.Uint64
}

// New returns an empty network with the given configuration. It returns an
// error if a duration, MaxPacket or QueueLen is negative, or if Loss is not
// in [0, 1].
func New(cfg Config) (*Network, error) {
	if err := checkConditions(cfg.Latency, cfg.Jitter, cfg.Loss); err != nil {
		return nil, err
	}
	switch {
	case cfg.MaxPacket < 0:
		return nil, fmt.Errorf("simnet: negative MaxPacket %d", cfg.MaxPacket)
	case cfg.QueueLen < 0:
		return nil, fmt.Errorf("simnet: negative QueueLen %d", cfg.QueueLen)
	}
	seed := uint64(cfg.Seed)
	if seed == 0 {
		seed = 1
	}
	n := &Network{
		maxPacket: cfg.MaxPacket,
		queueLen:  cfg.QueueLen,
		rng:       rand.New(rand.NewPCG(seed, 0x73696d6e6574)), // "simnet"
		conns:     make(map[netip.AddrPort]*Conn),
		listenIPs: make(map[netip.Addr]int),
		next4:     first4,
		next6:     1,
		nextPort:  firstEphemeral,
	}
	n.cond.Store(&conditions{latency: cfg.Latency, jitter: cfg.Jitter, loss: cfg.Loss})
	n.links.Store(&links{})
	if n.maxPacket == 0 {
		n.maxPacket = defaultMaxPacket
	}
	if n.queueLen == 0 {
		n.queueLen = defaultQueueLen
	}
	return n, nil
}

// normalize unmaps IPv4-mapped IPv6 addresses and drops IPv6 zones, so
// that every spelling of an address finds the same conn.
func normalize(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port())
}

// Listen opens a conn at addr. If addr's port is 0, a free port at or above
// 49152 is picked. It returns an error if addr is invalid or unspecified
// (0.0.0.0, ::), if the address is taken (errors.Is(err,
// syscall.EADDRINUSE) holds), or if the network is closed (errors.Is(err,
// net.ErrClosed) holds).
func (n *Network) Listen(addr netip.AddrPort) (*Conn, error) {
	addr = normalize(addr)
	if !addr.Addr().IsValid() || addr.Addr().IsUnspecified() {
		return nil, &net.OpError{Op: "listen", Net: "udp", Addr: udpAddrOrNil(addr),
			Err: errors.New("simnet: Listen needs a specific IP address")}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, &net.OpError{Op: "listen", Net: "udp", Addr: udpAddrOrNil(addr), Err: net.ErrClosed}
	}
	if addr.Port() == 0 {
		port, ok := n.freePortLocked(addr.Addr())
		if !ok {
			return nil, &net.OpError{Op: "listen", Net: "udp", Addr: udpAddrOrNil(addr),
				Err: errors.New("simnet: no free port")}
		}
		addr = netip.AddrPortFrom(addr.Addr(), port)
	}
	if _, taken := n.conns[addr]; taken {
		return nil, &net.OpError{Op: "listen", Net: "udp", Addr: udpAddrOrNil(addr),
			Err: os.NewSyscallError("bind", syscall.EADDRINUSE)}
	}
	c := n.addLocked(addr)
	c.listened = true
	n.listenIPs[addr.Addr()]++
	return c, nil
}

// freePortLocked returns a port in the ephemeral range that no conn uses at
// ip. n.mu must be held.
func (n *Network) freePortLocked(ip netip.Addr) (uint16, bool) {
	const size = lastEphemeral - firstEphemeral + 1
	for range size {
		port := n.nextPort
		if n.nextPort == lastEphemeral {
			n.nextPort = firstEphemeral
		} else {
			n.nextPort++
		}
		if _, taken := n.conns[netip.AddrPortFrom(ip, port)]; !taken {
			return port, true
		}
	}
	return 0, false
}

// NewConn4 opens a conn at the next unused IPv4 address in 127.0.0.0/8,
// counting up from 127.0.0.2, port 6881. An address is unused if no open
// conn has that IP. After 127.255.255.254 the count starts again at
// 127.0.0.2, so addresses of closed conns are reused only then.
func (n *Network) NewConn4() (*Conn, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, &net.OpError{Op: "listen", Net: "udp", Err: net.ErrClosed}
	}
	for range last4 - first4 + 1 {
		v := n.next4
		if n.next4 == last4 {
			n.next4 = first4
		} else {
			n.next4++
		}
		ip := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
		if c, ok := n.autoLocked(ip); ok {
			return c, nil
		}
	}
	return nil, &net.OpError{Op: "listen", Net: "udp", Err: errors.New("simnet: 127.0.0.0/8 is exhausted")}
}

// NewConn6 opens a conn at the next unused IPv6 address of the form
// fd6c:6474:XXXX:XXXX::1, where XXXX:XXXX counts up from 0:1, port 6881.
// Each conn so gets its own /64 in the unique local range fd00::/8.
func (n *Network) NewConn6() (*Conn, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, &net.OpError{Op: "listen", Net: "udp", Err: net.ErrClosed}
	}
	for range uint32(math.MaxUint32) {
		v := n.next6
		n.next6++
		if n.next6 == 0 {
			n.next6 = 1
		}
		var b [16]byte
		copy(b[:4], prefix6[:])
		b[4], b[5], b[6], b[7] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
		b[15] = 1
		if c, ok := n.autoLocked(netip.AddrFrom16(b)); ok {
			return c, nil
		}
	}
	return nil, &net.OpError{Op: "listen", Net: "udp", Err: errors.New("simnet: fd6c:6474::/32 is exhausted")}
}

// autoLocked opens a conn at ip, port 6881, unless a conn already has ip.
// Conns made by NewConn4 and NewConn6 always use port 6881, and every other
// conn is counted in listenIPs, so two lookups tell whether ip is in use.
// n.mu must be held.
func (n *Network) autoLocked(ip netip.Addr) (*Conn, bool) {
	if n.listenIPs[ip] > 0 {
		return nil, false
	}
	addr := netip.AddrPortFrom(ip, defaultPort)
	if _, taken := n.conns[addr]; taken {
		return nil, false
	}
	return n.addLocked(addr), true
}

// addLocked registers a new conn at addr. n.mu must be held.
func (n *Network) addLocked(addr netip.AddrPort) *Conn {
	c := &Conn{net: n, addr: addr}
	n.conns[addr] = c
	return c
}

// remove unregisters c, which has just been closed.
func (n *Network) remove(c *Conn) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.conns[c.addr] == c {
		delete(n.conns, c.addr)
	}
	if c.listened {
		if n.listenIPs[c.addr.Addr()]--; n.listenIPs[c.addr.Addr()] <= 0 {
			delete(n.listenIPs, c.addr.Addr())
		}
	}
}

// SetLinkFilter installs f, which is called for every packet that passes
// the size limit, before loss and latency, with the sender's and the
// destination's address; returning false drops the packet and counts it in
// Stats.DroppedFiltered. It suits partitions and silent or unreachable
// nodes. f runs in the goroutine calling WriteTo, with no lock of the
// package held, possibly from many goroutines at once, so it must be safe
// for concurrent use and should be fast. A nil f removes the filter.
// SetLinkFilter is safe to call at any time, also while packets flow.
func (n *Network) SetLinkFilter(f func(from, to netip.AddrPort) bool) {
	if f == nil {
		n.filter.Store(nil)
		return
	}
	n.filter.Store(&f)
}

// SetHandler installs h, a catch-all for packets whose destination no
// open conn owns, so that many endpoints can be simulated without a Conn
// (and a goroutine) each. Without a handler such packets are dropped and
// counted in Stats.DroppedNoRoute; with one, they are counted in
// Stats.Handled and h is called on arrival, that is after the size limit,
// link filter, loss and delay of the packet, with the destination, the
// sender and the payload. pkt belongs to the network and is valid only
// during the call. If h returns ok, reply is sent back from to to from
// through the normal delivery path (size limit, link filter, loss, delay);
// the network takes ownership of reply, so h must not touch it afterwards.
// A reply that reaches no open conn is dropped (DroppedNoRoute) and never
// handed to h again, so handlers cannot ping-pong.
//
// h runs in the goroutine that delivers the packet (the writer's, or a
// timer's when there is delay), with no lock of the package held, possibly
// from many goroutines at once: it must be safe for concurrent use. It may
// write to conns of the network. Conns always take precedence: a packet to
// an address that has an open conn goes to the conn. After Close, h is no
// longer called. A nil h removes the handler. SetHandler is safe to call
// at any time.
func (n *Network) SetHandler(h Handler) {
	if h == nil {
		n.handler.Store(nil)
		return
	}
	n.handler.Store(&h)
}

// SetConditions replaces the latency, jitter and loss the network was
// created with (Config.Latency, Config.Jitter and Config.Loss) for the
// packets written from then on; packets already in flight keep the delay
// they were given. The three values change together: every packet sees
// either the old or the new ones. It returns an error, and changes
// nothing, if a duration is negative or loss is not in [0, 1].
// SetConditions is safe to call at any time, also while packets flow. It
// lets a test build a large network fast, without delay or loss, and then
// measure it under realistic conditions.
func (n *Network) SetConditions(latency, jitter time.Duration, loss float64) error {
	if err := checkConditions(latency, jitter, loss); err != nil {
		return err
	}
	n.cond.Store(&conditions{latency: latency, jitter: jitter, loss: loss})
	return nil
}

// Stats returns a snapshot of the network's packet counters. The counters
// are read one by one, so while packets flow the snapshot may be slightly
// inconsistent.
func (n *Network) Stats() Stats {
	return Stats{
		Sent:             n.sent.Load(),
		Delivered:        n.delivered.Load(),
		DroppedLoss:      n.droppedLoss.Load(),
		DroppedNoRoute:   n.droppedNoRoute.Load(),
		DroppedQueueFull: n.droppedQueueFull.Load(),
		DroppedTooBig:    n.droppedTooBig.Load(),
		DroppedFiltered:  n.droppedFiltered.Load(),
		DroppedLink:      n.droppedLink.Load(),
		Handled:          n.handled.Load(),
	}
}

// Close closes every conn of the network, and makes later Listen, NewConn4
// and NewConn6 calls fail. Packets still in flight are dropped when their
// delay ends and counted in Stats.DroppedNoRoute. Close is idempotent and
// always returns nil.
func (n *Network) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	conns := n.conns
	n.conns = make(map[netip.AddrPort]*Conn)
	n.listenIPs = make(map[netip.Addr]int)
	n.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	return nil
}

// send carries a packet written by the conn at from. It never blocks.
func (n *Network) send(from, to netip.AddrPort, b []byte) {
	if delay, ok := n.admit(from, to, len(b)); ok {
		n.schedule(to, packet{from: from, data: bytes.Clone(b)}, delay)
	}
}

// sendReply carries a reply returned by the handler, which the network now
// owns, from the handler's address from to to. It applies the same steps
// as send but does not copy b, and the reply is never handed to the
// handler again.
func (n *Network) sendReply(from, to netip.AddrPort, b []byte) {
	if delay, ok := n.admit(from, to, len(b)); ok {
		n.schedule(to, packet{from: from, data: b, reply: true}, delay)
	}
}

// admit counts a packet of size bytes as sent and applies the size limit,
// the link filter, the sender's link (SetLink) and random loss, counting
// a drop. If the packet passes it returns true and the delay to apply.
func (n *Network) admit(from, to netip.AddrPort, size int) (time.Duration, bool) {
	n.sent.Add(1)
	if size > n.maxPacket {
		n.droppedTooBig.Add(1)
		return 0, false
	}
	if f := n.filter.Load(); f != nil && !(*f)(from, to) {
		n.droppedFiltered.Add(1)
		return 0, false
	}
	queued, ok := n.linkUp(from)
	if !ok {
		return 0, false
	}
	cond := n.cond.Load()
	delay := queued + cond.latency
	if cond.loss > 0 || cond.jitter > 0 {
		n.rngMu.Lock()
		lost := cond.loss > 0 && n.rng.Float64() < cond.loss
		if !lost && cond.jitter > 0 {
			delay += time.Duration(n.rng.Int64N(int64(cond.jitter)))
		}
		n.rngMu.Unlock()
		if lost {
			n.droppedLoss.Add(1)
			return 0, false
		}
	}
	return delay, true
}

// schedule delivers p to the address to after delay, or at once if delay
// is 0.
func (n *Network) schedule(to netip.AddrPort, p packet, delay time.Duration) {
	if delay == 0 {
		n.deliver(to, p)
		return
	}
	time.AfterFunc(delay, func() { n.deliver(to, p) })
}

// deliver passes p through the link of the host at to, if it has one
// (SetLink), then hands it on (arrive).
func (n *Network) deliver(to netip.AddrPort, p packet) {
	queued, ok := n.linkDown(to)
	switch {
	case !ok:
	case queued == 0:
		n.arrive(to, p)
	default:
		time.AfterFunc(queued, func() { n.arrive(to, p) })
	}
}

// arrive puts p on the receive queue of the conn at to or, if there is
// none, hands it to the handler (unless p is itself a handler's reply).
func (n *Network) arrive(to netip.AddrPort, p packet) {
	n.mu.RLock()
	c := n.conns[to]
	closed := n.closed
	n.mu.RUnlock()
	if c == nil {
		if h := n.handler.Load(); h != nil && !p.reply && !closed {
			n.handled.Add(1)
			if reply, ok := (*h)(to, p.from, p.data); ok {
				n.sendReply(to, p.from, reply)
			}
			return
		}
		n.droppedNoRoute.Add(1)
		return
	}
	c.enqueue(p)
}

// udpAddrOrNil converts a valid address to a *net.UDPAddr, and returns nil
// (not a typed nil) for an invalid one.
func udpAddrOrNil(ap netip.AddrPort) net.Addr {
	if !ap.Addr().IsValid() {
		return nil
	}
	return net.UDPAddrFromAddrPort(ap)
}
