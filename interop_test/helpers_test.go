package interop

import (
	"net"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2"
)

// newAnacrolix starts an anacrolix/dht server on conn and closes it at
// cleanup. It never reaches a public router: its starting nodes are the
// given addresses, which must be loopback or simnet ones. Its queries
// wait queryWait (anacrolix sends each once).
func newAnacrolix(t *testing.T, conn net.PacketConn, starting ...*net.UDPAddr) *dht.Server {
	t.Helper()
	return newAnacrolixTB(t, conn, func(cfg *dht.ServerConfig) {
		cfg.QueryResendDelay = func() time.Duration { return queryWait }
	}, starting...)
}
