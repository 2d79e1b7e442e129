package lightdht_test

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lightdht/lightdht"
	"github.com/lightdht/lightdht/internal/simnet"
	"github.com/lightdht/lightdht/krpc"
)

// queryLog records the queries that arrive at a set of sockets: for each
// receiver, sender and question (method and target), the distinct
// transaction IDs. A question asked again under a new transaction ID is a
// second query, not a resend.
type queryLog struct {
	mu  sync.Mutex
	txs map[queryKey]map[string]bool
}

type queryKey struct {
	to, from netip.AddrPort
	method   string
	target   krpc.ID // Target, or InfoHash for get_peers and announce_peer
}

func (l *queryLog) record(to, from netip.AddrPort, b []byte) {
	var m krpc.Msg
	if krpc.Unmarshal(b, &m) != nil || m.Y != "q" {
		return
	}
	target := m.A.Target
	if m.A.InfoHash != (krpc.ID{}) {
		target = m.A.InfoHash
	}
	k := queryKey{to, from, m.Q, target}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.txs == nil {
		l.txs = map[queryKey]map[string]bool{}
	}
	if l.txs[k] == nil {
		l.txs[k] = map[string]bool{}
	}
	l.txs[k][string(m.T)] = true
}

// loggingConn is a socket whose reads go into a queryLog. It embeds only
// the net.PacketConn interface, so the transport reads through ReadFrom.
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

// TestBootstrapJoinsServes: a node whose caller waits for Bootstrap right
// after starting Serve (which bootstraps by itself) bootstraps once: no
// node is asked the same question twice. Two bootstraps side by side sent
// every find_node of the join twice, which nodes that rate-limit drop.
func TestBootstrapJoinsServes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var log queryLog
		tn := newTestNet(t, 16, simnet.Config{Latency: 5 * time.Millisecond}, func(c *lightdht.Config) {
			c.Conn4 = &loggingConn{PacketConn: c.Conn4, log: &log}
		})
		conn, err := tn.sim.NewConn4()
		if err != nil {
			t.Fatal(err)
		}
		boot := tn.nodes[0].Addr()
		// Maintenance on: Serve starts its own bootstrap.
		n, err := lightdht.New(lightdht.LocalTestNet(lightdht.Config{Conn4: conn, Bootstrap: []netip.AddrPort{boot}, QueryTimeout: time.Second}))
		if err != nil {
			t.Fatal(err)
		}
		served := make(chan error, 1)
		go func() { served <- n.Serve(context.Background()) }()
		size, err := n.Bootstrap(context.Background())
		if err != nil || size < 8 {
			t.Fatalf("Bootstrap: %d nodes, %v", size, err)
		}
		synctest.Wait() // Serve's bootstrap, had it run apart, would be done by now too
		n.Close()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}

		me := conn.AddrPort()
		log.mu.Lock()
		defer log.mu.Unlock()
		ownAtBoot := 0
		for k, txs := range log.txs {
			if k.from != me {
				continue
			}
			if len(txs) > 1 {
				t.Errorf("%s asked %v for %s %v %d times", me, k.to, k.method, k.target, len(txs))
			}
			if k.to == boot && k.method == krpc.MethodFindNode && k.target == n.ID() {
				ownAtBoot = len(txs)
			}
		}
		if ownAtBoot != 1 {
			t.Errorf("the bootstrap node was asked for the new node's own ID %d times, want once", ownAtBoot)
		}
	})
}
