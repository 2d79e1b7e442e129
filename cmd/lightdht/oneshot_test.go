package main

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"

	"github.com/lightdht/lightdht"
	"github.com/lightdht/lightdht/krpc"
)

// queryLog records the queries that arrive at the sockets of an
// in-process test network: for each sender, receiver and question
// (method and target), the distinct transaction IDs. A question asked
// again under a new transaction ID is a second query, not a resend.
type queryLog struct {
	mu  sync.Mutex
	txs map[queryKey]map[string]bool
}

type queryKey struct {
	from, to netip.AddrPort
	method   string
	target   krpc.ID // Target, or InfoHash for get_peers and announce_peer
}

func (l *queryLog) record(to, from netip.AddrPort, b []byte) {
	var m krpc.Msg
	if krpc.Unmarshal(b, &m) != nil || m.Y != krpc.KindQuery {
		return
	}
	target := m.A.Target
	if m.A.InfoHash != (krpc.ID{}) {
		target = m.A.InfoHash
	}
	k := queryKey{from, to, m.Q, target}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.txs[k] == nil {
		l.txs[k] = map[string]bool{}
	}
	l.txs[k][string(m.T)] = true
}

// take returns what was recorded and starts afresh.
func (l *queryLog) take() map[queryKey]map[string]bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	txs := l.txs
	l.txs = map[queryKey]map[string]bool{}
	return txs
}

// loggingConn is a socket whose reads go into a queryLog. It embeds only
// the net.PacketConn interface, so that the transport reads through
// ReadFrom.
type loggingConn struct {
	net.PacketConn
	log *queryLog
}

func (c *loggingConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, from, err := c.PacketConn.ReadFrom(b)
	if err == nil {
		c.log.record(c.LocalAddr().(*net.UDPAddr).AddrPort(), from.(*net.UDPAddr).AddrPort(), b[:n])
	}
	return n, from, err
}

// loggedNet starts size nodes on ip with ports the kernel picks, joined
// through the first, whose sockets record every query in the returned
// log. They stop when the test ends.
func loggedNet(t *testing.T, size int, ip string) ([]*lightdht.Node, *queryLog) {
	t.Helper()
	log := &queryLog{txs: map[queryKey]map[string]bool{}}
	var nodes []*lightdht.Node
	var wg sync.WaitGroup
	t.Cleanup(func() {
		for _, n := range nodes {
			n.Close()
		}
		wg.Wait()
	})
	var boot []netip.AddrPort
	for range size {
		conn, err := net.ListenPacket("udp4", net.JoinHostPort(ip, "0"))
		if err != nil {
			t.Fatal(err)
		}
		n, err := lightdht.New(lightdht.LocalTestNet(lightdht.Config{Conn4: &loggingConn{conn, log}, Bootstrap: boot}))
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
		wg.Add(1)
		go func() { defer wg.Done(); n.Serve(context.Background()) }()
		if boot == nil {
			boot = []netip.AddrPort{n.Addr()}
		}
	}
	for _, n := range nodes[1:] {
		if _, err := n.Bootstrap(context.Background()); err != nil {
			t.Fatalf("bootstrap: %v", err)
		}
	}
	return nodes, log
}

// TestOneBootstrapPerCommand: a one-shot command asks no node the same
// question twice. Its temporary node used to bootstrap twice side by
// side (Serve's own and the command's), which doubled the load on nodes
// that rate-limit.
func TestOneBootstrapPerCommand(t *testing.T) {
	t.Parallel()
	nodes, log := loggedNet(t, 12, "127.40.0.1")
	boot := nodes[0].Addr().String()
	ours := map[netip.AddrPort]bool{}
	for _, n := range nodes {
		ours[n.Addr()] = true
	}
	const ih = "00112233445566778899aabbccddeeff00112233"
	for _, args := range [][]string{
		{"lookup", nodes[3].ID().String()},
		{"peers", ih},
		{"announce", ih, "--port", "6881"},
		{"put", "one bootstrap"},
		{"ping", nodes[2].Addr().String()},
	} {
		log.take()
		if args[0] != "ping" {
			args = append(args, "--bootstrap", boot)
		}
		ok(t, nil, args...)
		got := log.take()
		asked := 0
		for k, txs := range got {
			if ours[k.from] {
				continue // the test network's own traffic
			}
			asked += len(txs)
			if len(txs) > 1 {
				t.Errorf("lightdht %s asked %v %s %v %d times", args[0], k.to, k.method, k.target, len(txs))
			}
		}
		if asked == 0 {
			t.Errorf("lightdht %s: no query recorded", args[0])
		}
	}
}
