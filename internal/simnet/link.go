package simnet

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"sync"
	"time"
)

// DefaultLinkQueue is the queue length of a Link whose Queue is 0.
const DefaultLinkQueue = 100

// Link is the bottleneck of one host's access link, as set with
// [Network.SetLink]: a capacity in packets per second in each direction,
// and in front of each direction a drop-tail queue. A packet that finds
// the link busy waits its turn, so the queueing delay grows as the queue
// fills; a packet that finds Queue packets already held (the one being
// sent included) is dropped and counted in Stats.DroppedLink. Packets
// count whatever their size: the DHT's packets are all small, and what
// limits a crawler's link (a home router, a NAT's table, a provider's
// policer) is mostly the packet rate.
type Link struct {
	// PacketsPerSecond is the capacity in each direction: each packet
	// occupies its direction for 1/PacketsPerSecond. 0 in a Link passed to
	// SetLink removes the host's link.
	PacketsPerSecond float64
	// Queue is the number of packets each direction holds, the one being
	// sent included; the longest queueing delay is so
	// Queue/PacketsPerSecond. 0 means DefaultLinkQueue (100).
	Queue int
}

// LinkStats counts the packets through one host's link since SetLink.
type LinkStats struct {
	Up, Down LinkDirStats // sent by the host; addressed to it
}

// LinkDirStats counts one direction of a link.
type LinkDirStats struct {
	Passed   uint64        // packets that went through the queue
	Dropped  uint64        // packets dropped at the full queue
	MaxDelay time.Duration // longest queueing delay, the packet's own sending time included
}

// linkDir is one direction of a link: a FIFO server whose state is the
// time at which it will have sent every packet it holds. Time is the
// time package's clock, so under testing/synctest the queue runs on the
// bubble's fake clock, and the same arrivals give the same delays.
type linkDir struct {
	busyUntil int64 // Unix nanoseconds at which the queue is empty
	stats     LinkDirStats
}

// hostLink is the state of one host's link.
type hostLink struct {
	service int64 // nanoseconds per packet
	queue   int64
	mu      sync.Mutex
	up      linkDir
	down    linkDir
}

// pass puts a packet on d at now and returns the delay until it has been
// sent, or false when the queue is full and the packet is dropped.
func (l *hostLink) pass(d *linkDir, now int64) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	start := max(now, d.busyUntil)
	// Packets held: the backlog in whole packets, rounded up, since a
	// packet partly sent still occupies its place.
	if held := (start - now + l.service - 1) / l.service; held >= l.queue {
		d.stats.Dropped++
		return 0, false
	}
	d.busyUntil = start + l.service
	d.stats.Passed++
	delay := time.Duration(d.busyUntil - now)
	d.stats.MaxDelay = max(d.stats.MaxDelay, delay)
	return delay, true
}

// links maps a host's IP to its link; replaced as a whole by SetLink.
type links = map[netip.Addr]*hostLink

// SetLink gives the host at ip a bottleneck link (see [Link]): every
// packet it sends, to a conn or to the handler's addresses, passes its up
// direction after the size limit and the link filter and before random
// loss and latency; every packet addressed to it passes its down
// direction on arrival, after latency, before the receive queue or the
// handler. The host may be a conn's IP or one the handler answers for. A
// Link with PacketsPerSecond 0 removes the host's link; setting a link
// again starts it with empty queues and zero counts. It returns an error,
// and changes nothing, if ip is invalid, PacketsPerSecond is negative, not
// finite or so high that a packet takes less than a nanosecond, or Queue
// is negative. SetLink is safe to call at any time; a packet on its way
// keeps the delay it was given.
func (n *Network) SetLink(ip netip.Addr, l Link) error {
	switch {
	case !ip.IsValid():
		return errors.New("simnet: SetLink needs a valid IP address")
	case math.IsNaN(l.PacketsPerSecond) || math.IsInf(l.PacketsPerSecond, 0) || l.PacketsPerSecond < 0 || l.PacketsPerSecond > 1e9:
		return fmt.Errorf("simnet: link capacity %v packets/s outside [0, 1e9]", l.PacketsPerSecond)
	case l.Queue < 0:
		return fmt.Errorf("simnet: negative link Queue %d", l.Queue)
	}
	ip = ip.Unmap().WithZone("")
	n.linkMu.Lock()
	defer n.linkMu.Unlock()
	old := n.links.Load()
	m := make(links, len(*old)+1)
	for k, v := range *old {
		m[k] = v
	}
	if l.PacketsPerSecond == 0 {
		delete(m, ip)
	} else {
		q := l.Queue
		if q == 0 {
			q = DefaultLinkQueue
		}
		m[ip] = &hostLink{service: int64(math.Round(1e9 / l.PacketsPerSecond)), queue: int64(q)}
	}
	n.links.Store(&m)
	return nil
}

// LinkStats returns the counts of the link of the host at ip, and false if
// it has none.
func (n *Network) LinkStats(ip netip.Addr) (LinkStats, bool) {
	l := n.link(ip.Unmap().WithZone(""))
	if l == nil {
		return LinkStats{}, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return LinkStats{Up: l.up.stats, Down: l.down.stats}, true
}

// link returns the link of the host at ip, or nil. It costs one atomic
// load on a network without links.
func (n *Network) link(ip netip.Addr) *hostLink {
	m := n.links.Load()
	if len(*m) == 0 {
		return nil
	}
	return (*m)[ip]
}

// linkUp passes a packet sent by the host at from through its link, if it
// has one, and returns the delay it adds, or false if the packet is
// dropped (and counted).
func (n *Network) linkUp(from netip.AddrPort) (time.Duration, bool) {
	l := n.link(from.Addr())
	if l == nil {
		return 0, true
	}
	d, ok := l.pass(&l.up, time.Now().UnixNano())
	if !ok {
		n.droppedLink.Add(1)
	}
	return d, ok
}

// linkDown is linkUp for a packet arriving for the host at to.
func (n *Network) linkDown(to netip.AddrPort) (time.Duration, bool) {
	l := n.link(to.Addr())
	if l == nil {
		return 0, true
	}
	d, ok := l.pass(&l.down, time.Now().UnixNano())
	if !ok {
		n.droppedLink.Add(1)
	}
	return d, ok
}
