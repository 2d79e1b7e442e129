package interop

import (
	"net"
	"testing"

	"github.com/anacrolix/dht/v2"
)

// newAnacrolix starts an anacrolix/dht server on conn and closes it at
// cleanup. It never reaches a public router: its starting nodes are the
// given addresses, which must be loopback or simnet ones.
func newAnacrolix(t *testing.T, conn net.PacketConn, starting ...*net.UDPAddr) *dht.Server {
	t.Helper()
	return newAnacrolixTB(t, conn, nil, starting...)
}
