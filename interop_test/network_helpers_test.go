package interop

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2"
	akrpc "github.com/anacrolix/dht/v2/krpc"

	"github.com/lightdht/lightdht"
	"github.com/lightdht/lightdht/internal/simnet"
	"github.com/lightdht/lightdht/krpc"
	"github.com/lightdht/lightdht/table"
)

// testConn is a socket of either kind of test network, with its address.
type testConn interface {
	net.PacketConn
	AddrPort() netip.AddrPort
}

// network hands out sockets, each on an IP address of its own, as on the
// Internet (BEP 42, per-IP limits and tokens depend on the IP).
type network interface {
	conn(t *testing.T) testConn
}

// forEachNetwork runs f as a subtest on the in-memory network and on real
// UDP sockets bound to distinct loopback addresses (Linux routes the whole
// of 127.0.0.0/8 to the loopback interface).
func forEachNetwork(t *testing.T, f func(t *testing.T, sn network)) {
	t.Run("simnet", func(t *testing.T) {
		n, err := simnet.New(simnet.Config{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		f(t, simNetwork{n})
	})
	t.Run("loopback", func(t *testing.T) {
		f(t, &loopbackNetwork{})
	})
}

// simNetwork hands out simnet conns; no latency or loss.
type simNetwork struct{ *simnet.Network }

func (n simNetwork) conn(t *testing.T) testConn {
	t.Helper()
	c, err := n.NewConn4()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// loopbackNetwork hands out real UDP sockets on 127.1.0.1, 127.1.0.2, …
type loopbackNetwork struct {
	mu   sync.Mutex
	next int
}

func (n *loopbackNetwork) conn(t *testing.T) testConn {
	t.Helper()
	n.mu.Lock()
	n.next++
	i := n.next
	n.mu.Unlock()
	ip := net.IPv4(127, 1, byte(i/250), byte(i%250+1))
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: ip})
	if err != nil {
		t.Fatalf("listen on %v: %v", ip, err)
	}
	t.Cleanup(func() { c.Close() }) // the node closes it too; a second Close is harmless
	return udpConn{c}
}

// udpConn is a real UDP socket with the AddrPort method simnet conns have.
type udpConn struct{ *net.UDPConn }

func (c udpConn) AddrPort() netip.AddrPort {
	ap := c.LocalAddr().(*net.UDPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// queryWait is how long a query in a test waits for its reply (for a
// lightdht node, its last attempt), and hangGuard bounds a test's longer
// waits. Both only stop a hung run: every node of a test network, on
// the lossless in-memory network or on loopback, answers every query, so
// no test waits either out unless something is broken. A loaded machine
// makes replies come later; it must not make them count as lost.
const (
	queryWait = time.Minute
	hangGuard = 5 * time.Minute
)

// newNode starts a lightdht node on conn and stops it at cleanup. Limits
// that assume distinct hosts on the Internet are off; queries wait
// queryWait.
func newNode(t testing.TB, conn net.PacketConn, bootstrap ...netip.AddrPort) *lightdht.Node {
	t.Helper()
	return newNodeWith(t, conn, func(c *lightdht.Config) { c.Bootstrap = bootstrap })
}

// newNodeWith is newNode with tweak applied to the configuration.
func newNodeWith(t testing.TB, conn net.PacketConn, tweak func(*lightdht.Config)) *lightdht.Node {
	t.Helper()
	cfg := lightdht.LocalTestNet(lightdht.Config{Conn4: conn, NoMaintenance: true, QueryTimeout: queryWait})
	tweak(&cfg)
	n, err := lightdht.New(cfg)
	if err != nil {
		t.Fatalf("lightdht.New: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- n.Serve(context.Background()) }()
	t.Cleanup(func() {
		n.Close()
		if err := <-done; err != nil && !errors.Is(err, krpc.ErrClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return n
}

func udpAddr(ap netip.AddrPort) *net.UDPAddr { return net.UDPAddrFromAddrPort(ap) }

// anacrolixInfo is the anacrolix form of a node's ID and address.
func anacrolixInfo(id krpc.ID, ap netip.AddrPort) akrpc.NodeInfo {
	var na akrpc.NodeAddr
	na.FromAddrPort(ap)
	return akrpc.NodeInfo{ID: akrpc.ID(id), Addr: na}
}

// closestID returns the ID in ids nearest to target by XOR distance.
func closestID(target krpc.ID, ids []krpc.ID) krpc.ID {
	return slices.MinFunc(ids, func(a, b krpc.ID) int {
		return a.Xor(target).Cmp(b.Xor(target))
	})
}

// anacrolixPeers runs an anacrolix get_peers traversal for ih (announcing
// port if it is not zero) to its end and returns every peer it received.
func anacrolixPeers(t *testing.T, s *dht.Server, ih krpc.ID, port int) []netip.AddrPort {
	t.Helper()
	var opts []dht.AnnounceOpt
	if port != 0 {
		opts = append(opts, dht.AnnouncePeer(dht.AnnouncePeerOpts{Port: port}))
	}
	a, err := s.AnnounceTraversal(ih, opts...)
	if err != nil {
		t.Fatalf("anacrolix AnnounceTraversal: %v", err)
	}
	defer a.Close()
	var peers []netip.AddrPort
	timeout := time.After(hangGuard)
	for {
		select {
		case pv, ok := <-a.Peers:
			if !ok {
				return peers
			}
			for _, p := range pv.Peers {
				ap := p.ToNodeAddrPort().AddrPort
				peers = append(peers, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
			}
		case <-timeout:
			t.Fatalf("anacrolix traversal for %v still running after %v", ih, hangGuard)
		}
	}
}

func statsString(queries, replies, timeouts int) string {
	return fmt.Sprintf("%d queries, %d replies, %d timeouts", queries, replies, timeouts)
}

// clientNodes starts the lightdht side of a test against another client
// (libtorrent, aria2): 8 nodes on 127.b.1.1 to 127.b.1.8, each but the
// first joined through the first, twice over so that the early nodes
// learn of the later ones. Their queries wait 5s per attempt, and the
// queries they receive are recorded in the returned querySightings.
func clientNodes(t *testing.T, b byte) ([]*lightdht.Node, *querySightings) {
	t.Helper()
	obs := &querySightings{}
	var nodes []*lightdht.Node
	for i := range 8 {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, b, 1, byte(i+1))})
		if err != nil {
			t.Fatal(err)
		}
		var boot []netip.AddrPort
		if i > 0 {
			boot = []netip.AddrPort{nodes[0].Addr()}
		}
		nodes = append(nodes, newNodeWith(t, c, func(cfg *lightdht.Config) {
			cfg.Bootstrap, cfg.Observer, cfg.QueryTimeout = boot, obs, 5*time.Second
		}))
	}
	for range 2 {
		for _, n := range nodes[1:] {
			n.Bootstrap(context.Background())
		}
	}
	return nodes, obs
}

// waitConfirmed waits until each of clients has queried one of nodes and
// some node has confirmed it (a reply to the node's own query), so that
// the lightdht nodes list it in their replies.
func waitConfirmed(t *testing.T, nodes []*lightdht.Node, obs *querySightings, clients ...netip.AddrPort) {
	t.Helper()
	for _, a := range clients {
		eventually(t, "no query from "+a.String(), func() bool {
			return obs.find(func(s lightdht.Sighting) bool { return s.Node.Addr == a })
		})
	}
	for _, a := range clients {
		eventually(t, "no lightdht node confirmed "+a.String(), func() bool {
			seen := false
			for _, n := range nodes {
				n.Table(false).Each(func(e table.Entry) bool {
					seen = seen || (e.Addr == a && !e.LastReply.IsZero())
					return !seen
				})
			}
			return seen
		})
	}
}
