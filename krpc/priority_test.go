package krpc_test

import (
	"context"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lightdht/lightdht/internal/simnet"
	"github.com/lightdht/lightdht/krpc"
)

// TestKnownSourcesReplyFirst: with admission on, replies to sources
// without a record stop at half the send bucket; the other half is for
// the queries Admit marks AdmittedKnown.
func TestKnownSourcesReplyFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t, simnet.Config{})
		stranger, known := newClient(t, n), newClient(t, n)
		admit := func(src netip.AddrPort) krpc.Admission {
			if src == known.addr {
				return krpc.AdmittedKnown
			}
			return krpc.Admitted
		}
		_, server := startTransport(t, n, krpc.Config{Handler: pinger(krpc.RandomID()), Admit: admit,
			SendRate: 1e-3, SendBurst: 10}) // a bucket of 10 that does not refill within the test
		ask := func(c client, k int) (answered int) {
			done := make(chan bool, k)
			for range k {
				c.tr.QueryAsync(context.Background(), server, ping(krpc.RandomID()), func(_ krpc.Response, err error) { done <- err == nil })
			}
			for range k {
				if <-done {
					answered++
				}
			}
			return answered
		}
		if got := ask(stranger, 8); got != 5 {
			t.Errorf("stranger: %d of 8 answered from a full bucket of 10, want 5 (half stays for known sources)", got)
		}
		if got := ask(known, 8); got != 5 {
			t.Errorf("known source: %d of 8 answered from the 5 tokens left, want 5", got)
		}
	})
}

type client struct {
	tr   *krpc.Transport
	addr netip.AddrPort
}

// newClient is a transport on n that gives up on a query after a second.
func newClient(t *testing.T, n *simnet.Network) client {
	t.Helper()
	tr, addr := startTransport(t, n, krpc.Config{Timeout: time.Second, Retries: krpc.NoRetries})
	return client{tr, addr}
}
