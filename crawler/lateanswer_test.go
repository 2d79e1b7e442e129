package crawler_test

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/lightdht/lightdht/crawler"
	"github.com/lightdht/lightdht/internal/synth"
)

// TestLateSampleNotRepeated: nodes that answer at about the timeout
// answer some samples too late to be heard; the find_node that follows
// is answered, but the sample is not sent again, since the node may have
// answered it and would see two samples within its interval.
func TestLateSampleNotRepeated(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, _, _, st := crawlSynth(t,
			synth.Config{N: 2000, Seed: 8, BEP51Share: 1, InfohashesPerNode: 5, Interval: 600, PublicIPs: true,
				Latency: 10 * time.Millisecond, Jitter: 20 * time.Millisecond, RTTMedian: 965 * time.Millisecond},
			crawler.Config{Rate: 2000, Timeout: time.Second, Infohashes: true})
		t.Logf("%d samples answered, %d within a node's interval", st.Sampled, st.Violations)
		if st.Violations != 0 {
			t.Errorf("%d samples within a node's interval", st.Violations)
		}
	})
}

// TestIdleWaitsForAnswers: a crawl that Idle ends still takes the answers
// to the queries in flight. Each reply takes 1.2 s and Idle is 1 s, so the
// crawl ends while its first queries are out; ending it then would record
// answering nodes as silent.
func TestIdleWaitsForAnswers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		res, rec, _, _ := crawlSynth(t,
			synth.Config{N: 500, Seed: 3, Latency: 600 * time.Millisecond},
			crawler.Config{Rate: 1000, Timeout: 3 * time.Second, Idle: time.Second})
		t.Logf("queried %d, replied %d, waiting %d", res.Queried, res.Replied, res.Waiting)
		if res.Queried == 0 || res.Replied != res.Queried {
			t.Errorf("%d of the %d nodes queried answered, want all", res.Replied, res.Queried)
		}
		if len(rec.replied) != res.Replied {
			t.Errorf("%d replies recorded, want %d", len(rec.replied), res.Replied)
		}
		if res.Waiting == 0 {
			t.Errorf("nothing was waiting: the crawl was not ended by Idle")
		}
	})
}
