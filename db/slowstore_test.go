package db

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lightdht/lightdht"
	"github.com/lightdht/lightdht/internal/simnet"
	"github.com/lightdht/lightdht/krpc"
	"github.com/lightdht/lightdht/observe"
)

// stall holds the writer's connection until the returned release is
// called: a disk that has stopped keeping up. The queue fills behind it.
func stall(t *testing.T, d *DB) (release func()) {
	t.Helper()
	stalled, freed := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- d.request(context.Background(), func(*writer) error {
			close(stalled)
			<-freed
			return nil
		})
	}()
	<-stalled
	release = sync.OnceFunc(func() {
		close(freed)
		if err := <-done; err != nil {
			t.Errorf("stalling request: %v", err)
		}
	})
	t.Cleanup(release) // a test that fails while stalled still closes the DB
	return release
}

// TestNonBlockingSheds: with the writer stalled, the NonBlocking observer
// returns at once for every sighting, keeps what fits in the queue and
// the batch being collected, and counts the rest as shed; once the disk
// catches up, exactly the kept sightings are written. On either store:
// shedding is the writer's, above the backend.
func TestNonBlockingSheds(t *testing.T) { eachStore(t, nonBlockingSheds) }

func nonBlockingSheds(t *testing.T, dsn string) {
	const queue, batch, total = 64, 100, 2000
	d := openDSN(t, dsn, Options{QueueSize: queue, BatchSize: batch, FlushInterval: time.Hour})
	release := stall(t, d)
	obs := d.NonBlocking()
	for i := range total {
		obs.Observe(observe.Sighting{Node: ni(i, "198.51.100.7:1"), Time: at(int64(i)), Source: observe.SourceQuery})
	}
	st := d.Stats()
	if st.Shed+st.Enqueued != total || st.Shed < total-queue-batch-1 {
		t.Errorf("%d shed and %d enqueued of %d; want them to add up, and at most %d kept", st.Shed, st.Enqueued, total, queue+batch+1)
	}
	release()
	flush(t, d)
	st2 := d.Stats()
	if got := count(t, d.SQL(), "SELECT count(*) FROM nodes"); got != int64(st.Enqueued) || st2.Written != st.Enqueued || st2.Shed != st.Shed {
		t.Errorf("%d nodes, %d written, %d shed after the stall; want %d, %d and %d", got, st2.Written, st2.Shed, st.Enqueued, st.Enqueued, st.Shed)
	}
}

// TestNodeAnswersWhileStoreStalled: a node whose observer is a stalled
// database, through NonBlocking, goes on answering every query; each
// query's sighting is either kept or counted as shed. In a synctest
// bubble, a ping times out only if the node stops answering: the clock
// moves only when every goroutine waits.
func TestNodeAnswersWhileStoreStalled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const queue, batch, pings = 64, 100, 1000
		d, _ := openT(t, Options{QueueSize: queue, BatchSize: batch, FlushInterval: time.Hour})
		sim, err := simnet.New(simnet.Config{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sim.Close() })
		nc, _ := sim.NewConn4()
		node, err := lightdht.New(lightdht.LocalTestNet(lightdht.Config{Conn4: nc, NoMaintenance: true, Observer: d.NonBlocking()}))
		if err != nil {
			t.Fatal(err)
		}
		go node.Serve(context.Background())
		t.Cleanup(func() { node.Close() })
		cc, _ := sim.NewConn4()
		client, err := krpc.New(krpc.Config{Conn: cc, Timeout: 10 * time.Second, Retries: krpc.NoRetries})
		if err != nil {
			t.Fatal(err)
		}
		go client.Serve(context.Background())
		t.Cleanup(func() { client.Close() })

		release := stall(t, d)
		id := krpc.RandomID()
		for i := range pings {
			if _, err := client.Query(context.Background(), nc.AddrPort(), &krpc.Msg{Q: krpc.MethodPing, A: krpc.Args{ID: id}}); err != nil {
				t.Fatalf("ping %d with the store stalled: %v", i, err)
			}
		}
		st := d.Stats()
		if st.Shed+st.Enqueued != pings || st.Shed < pings-queue-batch-1 {
			t.Errorf("%d shed and %d enqueued of %d sightings; want them to add up, and at most %d kept", st.Shed, st.Enqueued, pings, queue+batch+1)
		}
		release()
		flush(t, d)
		if got := count(t, d.SQL(), "SELECT queries_received FROM nodes"); got != int64(st.Enqueued) {
			t.Errorf("the querier's row counts %d queries, want the %d sightings kept", got, st.Enqueued)
		}
	})
}
