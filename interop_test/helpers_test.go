package interop

import (
	"errors"
	"net"
	"testing"

	"github.com/anacrolix/dht/v2"
	"golang.org/x/time/rate"
)

// newAnacrolix starts an anacrolix/dht server on conn and closes it at
// cleanup. It never reaches a public router: its starting nodes are the
// given addresses, which must be loopback or simnet ones.
func newAnacrolix(t *testing.T, conn net.PacketConn, starting ...*net.UDPAddr) *dht.Server {
	t.Helper()
	for _, a := range starting {
		if !a.IP.IsLoopback() {
			t.Fatalf("starting node %v is not a loopback address", a)
		}
	}
	cfg := &dht.ServerConfig{
		Conn:       conn,
		NoSecurity: true,
		StartingNodes: func() ([]dht.Addr, error) {
			if len(starting) == 0 {
				return nil, errors.New("no starting nodes in this test")
			}
			addrs := make([]dht.Addr, len(starting))
			for i, a := range starting {
				addrs[i] = dht.NewAddr(a)
			}
			return addrs, nil
		},
		SendLimiter: rate.NewLimiter(rate.Inf, 0),
	}
	s, err := dht.NewServer(cfg)
	if err != nil {
		t.Fatalf("anacrolix dht.NewServer: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}
