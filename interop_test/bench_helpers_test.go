package interop

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2"
	"golang.org/x/time/rate"

	"github.com/lightdht/lightdht"
	"github.com/lightdht/lightdht/krpc"
)

// newAnacrolixTB is newAnacrolix for benchmarks and callers that need to
// adjust the server configuration. configure, if not nil, may change any
// field of the configuration; afterwards the fields that keep the server
// off the Internet and independent of other servers are set as
// newAnacrolix sets them, whatever configure did: Conn, NoSecurity,
// StartingNodes (only the given addresses, which must be loopback or
// simnet ones) and SendLimiter (unlimited, of its own). The server is
// closed at cleanup.
func newAnacrolixTB(tb testing.TB, conn net.PacketConn, configure func(*dht.ServerConfig), starting ...*net.UDPAddr) *dht.Server {
	tb.Helper()
	for _, a := range starting {
		if !a.IP.IsLoopback() {
			tb.Fatalf("starting node %v is not a loopback address", a)
		}
	}
	cfg := &dht.ServerConfig{}
	if configure != nil {
		configure(cfg)
	}
	cfg.Conn = conn
	cfg.NoSecurity = true
	cfg.StartingNodes = func() ([]dht.Addr, error) {
		if len(starting) == 0 {
			return nil, errors.New("no starting nodes in this test")
		}
		addrs := make([]dht.Addr, len(starting))
		for i, a := range starting {
			addrs[i] = dht.NewAddr(a)
		}
		return addrs, nil
	}
	cfg.SendLimiter = rate.NewLimiter(rate.Inf, 0)
	s, err := dht.NewServer(cfg)
	if err != nil {
		tb.Fatalf("anacrolix dht.NewServer: %v", err)
	}
	tb.Cleanup(s.Close)
	return s
}

// newNodeTB is newNode for benchmarks: it starts a lightdht node on conn
// with the same configuration (limits that assume distinct hosts on the
// Internet are off, QueryTimeout 1s, no maintenance) and stops it at
// cleanup.
func newNodeTB(tb testing.TB, conn net.PacketConn, bootstrap ...netip.AddrPort) *lightdht.Node {
	tb.Helper()
	n, err := lightdht.New(lightdht.Config{
		Conn4:         conn,
		Bootstrap:     bootstrap,
		NoMaintenance: true,
		IPsPerBucket:  -1,
		QueryTimeout:  time.Second,
		SendRate:      -1,
		PerIPRate:     -1,
	})
	if err != nil {
		tb.Fatalf("lightdht.New: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- n.Serve(context.Background()) }()
	tb.Cleanup(func() {
		n.Close()
		if err := <-done; err != nil && !errors.Is(err, krpc.ErrClosed) {
			tb.Errorf("Serve: %v", err)
		}
	})
	return n
}
