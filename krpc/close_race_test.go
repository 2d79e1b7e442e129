package krpc_test

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lightdht/lightdht/internal/simnet"
	"github.com/lightdht/lightdht/krpc"
)

// TestQueryAsyncRacesClose issues queries with cancellable contexts while
// Close ends them from another goroutine. The call's context hook is set
// up by QueryAsync and read by whoever finishes the call; the race
// detector checks that the two are ordered. Real goroutines, not a
// synctest bubble: the point is two of them running at once.
func TestQueryAsyncRacesClose(t *testing.T) {
	n := newNet(t, simnet.Config{})
	_, silentAddr := startTransport(t, n, krpc.Config{})
	for range 100 {
		client := unservedClient(t, n)
		ctx, cancel := context.WithCancel(context.Background())
		const queries = 20
		var calls sync.WaitGroup
		calls.Add(queries)
		issued := make(chan struct{})
		go func() {
			for i := range queries {
				if i == queries/2 {
					close(issued)
				}
				client.QueryAsync(ctx, silentAddr, ping(krpc.RandomID()), func(krpc.Response, error) { calls.Done() })
			}
		}()
		<-issued // Close while the second half is being issued
		if err := client.Close(); err != nil {
			t.Fatal(err)
		}
		calls.Wait() // every callback runs, once
		cancel()
	}
}

// TestCloseWaitsForCancelCallbacks: a query whose context is cancelled
// ends through its callback; Close, called while that callback runs, must
// not return before it has (Close's contract: it returns once every
// callback the transport started has returned).
func TestCloseWaitsForCancelCallbacks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t, simnet.Config{})
		_, silentAddr := startTransport(t, n, krpc.Config{})
		client := unservedClient(t, n)
		ctx, cancel := context.WithCancel(context.Background())
		started, release := make(chan struct{}), make(chan struct{})
		finished := false
		client.QueryAsync(ctx, silentAddr, ping(krpc.RandomID()), func(krpc.Response, error) {
			close(started)
			<-release
			finished = true
		})
		synctest.Wait()
		cancel()
		<-started // the callback runs on the context's goroutine
		closed := make(chan struct{})
		go func() {
			client.Close()
			close(closed)
		}()
		synctest.Wait() // Close has returned, or is blocked waiting
		select {
		case <-closed:
			t.Errorf("Close returned while a query's callback was still running")
		default:
		}
		close(release)
		<-closed
		if !finished {
			t.Errorf("Close returned before the callback finished")
		}
	})
}

// unservedClient is a transport on n that waits an hour for replies and
// whose Serve is never run: its queries end only by cancellation or Close,
// which the test calls.
func unservedClient(t *testing.T, n *simnet.Network) *krpc.Transport {
	t.Helper()
	c, err := n.NewConn4()
	if err != nil {
		t.Fatal(err)
	}
	client, err := krpc.New(krpc.Config{Conn: c, Timeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return client
}
