package db

import (
	"context"
	"testing"

	"github.com/lightdht/lightdht/observe"
)

// TestPipelinedBatches writes many batches, each with full multi-row
// chunks and a remainder, and every node in two different batches: the
// totals must be exact, and a Flush or StartRun must see every item
// enqueued before it committed.
func TestPipelinedBatches(t *testing.T) {
	const nodes = 3*chunkRows + 7
	d, _ := openT(t, Options{BatchSize: chunkRows + 5})
	for round := range 2 {
		for i := range nodes {
			d.Observe(observe.Sighting{Node: ni(i, "198.51.100.1:1"), Time: at(int64(round*nodes + i)),
				Source: observe.SourceReply})
		}
		if round == 0 {
			if _, err := d.StartRun(RunInfo{}); err != nil {
				t.Fatal(err)
			}
			if got := count(t, d.SQL(), "SELECT count(*) FROM nodes"); got != nodes {
				t.Fatalf("after StartRun: %d nodes, want %d", got, nodes)
			}
		}
	}
	if err := d.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := count(t, d.SQL(), "SELECT sum(times_seen) FROM nodes"); got != 2*nodes {
		t.Errorf("sum(times_seen) = %d, want %d", got, 2*nodes)
	}
	if got := count(t, d.SQL(), "SELECT count(*) FROM nodes WHERE replies = 2 AND queries_sent = 2 AND last_seen - first_seen = ?", nodes); got != nodes {
		t.Errorf("%d nodes with both sightings folded, want %d", got, nodes)
	}
	if st := d.Stats(); st.Written != 2*nodes || st.Errors != 0 || st.Lost != 0 {
		t.Errorf("stats %+v", st)
	}
}
