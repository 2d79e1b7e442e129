package interop

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2"
	"golang.org/x/time/rate"
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
	if cfg.Exp == 0 {
		// NewDefaultServerConfig's BEP 44 item lifetime; left at zero,
		// every item put to the server has already expired.
		cfg.Exp = 2 * time.Hour
	}
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
