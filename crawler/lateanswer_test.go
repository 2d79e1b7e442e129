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

// TestIdleTailStartsChecks: a host with 60 IDs on one IP takes one
// query every PerIPInterval (2 s), so the first pass ends with a queue of
// its nodes that drains for two minutes after the last new node, and Idle
// (20 s) runs out in it. The gap probes and the checks must run all the
// same: with half the contacts silent they find the nodes no table
// happened to list, and a crawl that skipped them would miss those nodes
// whenever its last host's queue happened to be long.
func TestIdleTailStartsChecks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		scfg := synth.Config{N: 4000, Seed: 12, PublicIPs: true, SilentShare: 0.5, Latency: 20 * time.Millisecond,
			SybilHosts: 1, SybilsPerHost: 60}
		res, rec, truth, _ := crawlSynth(t, scfg, crawler.Config{Idle: 20 * time.Second})
		answering, found := coverage(truth, rec)
		t.Logf("found %d of %d answering nodes in %v; %d queries, %d checks (%d found, %d left), %d still queued",
			found, answering, res.Duration.Round(time.Second), res.Queries, res.Checks, res.Learned.Checks.Answered, res.ChecksLeft, res.Waiting)
		if res.Checks == 0 {
			t.Errorf("no check was asked: Idle ended the crawl in its first pass's tail")
		} else if res.Learned.Checks.Answered == 0 {
			t.Errorf("%d checks found no new node; on this network they find about a dozen", res.Checks)
		}
	})
}
