package crawler_test

import (
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lightdht/lightdht/crawler"
	"github.com/lightdht/lightdht/internal/simnet"
	"github.com/lightdht/lightdht/internal/synth"
)

// linkRun is what one crawl behind a bottleneck shows.
type linkRun struct {
	sent        float64 // settled rate, queries/s the crawler sent
	passed      float64 // settled rate, queries/s through the link (the link's capacity at most)
	atCeiling   bool    // the sender's rate was Config.Rate in every settled report
	answering   int     // answering nodes in the network
	found       int     // answering nodes recorded as answering
	falseSilent int     // answering nodes recorded as timed out, never as answering
	dropped     uint64  // packets dropped at the link, both ways
	duration    time.Duration
}

// crawlLink crawls a 10,000-node synthetic network (10% silent, 20 ms
// each way) from behind a link of capacity packets/s each way with the
// default queue of 100 (0: no link) with Config.Rate ceiling, adaptive or
// fixed. The settled rate is the mean over the progress reports (one a
// second) from 5 s into the crawl of the seconds that began and ended
// with at least 1,000 queries waiting, that is while the crawler had
// more to send than it sent: the
// slow start is over by then, and the crawl's tail, where it has little
// left to ask, is left out.
func crawlLink(t *testing.T, capacity, ceiling float64, fixed bool) linkRun {
	t.Helper()
	var run linkRun
	synctest.Test(t, func(t *testing.T) {
		net, conn := synthConn(t, synth.Config{N: 10000, Seed: 31, SilentShare: 0.1, PublicIPs: true, Latency: 20 * time.Millisecond})
		host := conn.AddrPort().Addr()
		if capacity > 0 {
			if err := net.Sim().SetLink(host, simnet.Link{PacketsPerSecond: capacity}); err != nil {
				t.Fatal(err)
			}
		}
		var (
			reports []crawler.Progress
			passed  []uint64 // queries through the link by each report
		)
		rec := newRecorder()
		c, err := crawler.New(crawler.Config{Conn: conn, Bootstrap: net.Bootstrap(), Recorder: rec,
			Rate: ceiling, Timeout: time.Second, Adaptive: !fixed,
			Progress: func(p crawler.Progress) {
				ls, _ := net.Sim().LinkStats(host)
				reports, passed = append(reports, p), append(passed, ls.Up.Passed)
			}})
		if err != nil {
			t.Fatal(err)
		}
		res, err := c.Run(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range net.Truth().Nodes {
			if !n.Answering {
				continue
			}
			run.answering++
			switch {
			case rec.replied[n.ID]:
				run.found++
			case rec.timedOut[n.ID]:
				run.falseSilent++
			}
		}
		settled := 0
		run.atCeiling = true
		for i, p := range reports[:len(reports)-1] { // the last covers the whole crawl
			if i > 0 && p.Elapsed >= 5*time.Second && p.Queued >= 1000 && reports[i-1].Queued >= 1000 {
				run.sent += p.QPS
				run.passed += float64(passed[i] - passed[i-1])
				run.atCeiling = run.atCeiling && p.Rate == ceiling
				settled++
			}
		}
		if settled == 0 {
			t.Fatal("no progress report while the crawler had work waiting")
		}
		run.sent /= float64(settled)
		run.passed /= float64(settled)
		run.duration = res.Duration
		if ls, ok := net.Sim().LinkStats(host); ok {
			run.dropped = ls.Up.Dropped + ls.Down.Dropped
		}
		sender := "adaptive"
		if fixed {
			sender = "fixed-rate"
		}
		link := "no link"
		if capacity > 0 {
			link = fmt.Sprintf("link %.0f/s", capacity)
		}
		t.Logf("%s sender, %s, ceiling %.0f/s: settled over %d s at %.1f queries/s sent, %.1f/s into the link; %d of %d answering nodes recorded as answering, %d (%.2f%%) recorded as timed out; %d queries, %d packets dropped at the link, crawl %v",
			sender, link, ceiling, settled, run.sent, run.passed, run.found, run.answering,
			run.falseSilent, 100*float64(run.falseSilent)/float64(run.answering), res.Queries, run.dropped, res.Duration.Round(time.Millisecond))
	})
	return run
}

// TestAdaptiveBottleneck: behind a link of C = 250 packets/s each way,
// with Rate at 10 x C, the adaptive sender settles at 85% of C or more
// and no more than 1% of the answering nodes end up recorded as timed
// out. The fixed-rate sender, on the same network and link, floods the
// link's queue and records many answering nodes as timed out: the false
// silent nodes the adaptive sender exists to avoid.
func TestAdaptiveBottleneck(t *testing.T) {
	const capacity = 250
	a := crawlLink(t, capacity, 10*capacity, false)
	if a.sent < 0.85*capacity {
		t.Errorf("adaptive sender settled at %.1f queries/s, want at least 85%% of the link's %d/s", a.sent, capacity)
	}
	if a.sent > 1.05*capacity {
		t.Errorf("adaptive sender settled at %.1f queries/s, above the link's %d/s", a.sent, capacity)
	}
	if float64(a.found) < 0.995*float64(a.answering) {
		t.Errorf("adaptive sender found %d of %d answering nodes, want at least 99.5%%", a.found, a.answering)
	}
	if float64(a.falseSilent) > 0.01*float64(a.answering) {
		t.Errorf("adaptive sender: %d of %d answering nodes recorded as timed out, want at most 1%%", a.falseSilent, a.answering)
	}
	f := crawlLink(t, capacity, 10*capacity, true)
	if float64(f.falseSilent) < 0.05*float64(f.answering) {
		t.Errorf("fixed-rate sender at 10 x the link: only %d of %d answering nodes recorded as timed out; the link should have made many look silent", f.falseSilent, f.answering)
	}
}

// TestAdaptiveNoBottleneck: without a bottleneck the adaptive sender
// reaches its ceiling and stays there while it has work, and records no
// answering node as timed out. (The ceiling is one that MaxInFlight does
// not cap on this network: at 2,500/s the 512 queries in flight, a tenth
// of them waiting out the timeout of a silent node, bound either
// sender.)
func TestAdaptiveNoBottleneck(t *testing.T) {
	const ceiling = 1000
	a := crawlLink(t, 0, ceiling, false) // false: not the fixed-rate sender
	if !a.atCeiling {
		t.Errorf("the adaptive sender's rate fell below the %d/s ceiling without a bottleneck", ceiling)
	}
	if a.sent < 0.95*ceiling {
		t.Errorf("adaptive sender settled at %.1f queries/s, want the %d/s ceiling", a.sent, ceiling)
	}
	if a.falseSilent > 0 || a.found != a.answering {
		t.Errorf("%d of %d answering nodes found, %d recorded as timed out; want all found", a.found, a.answering, a.falseSilent)
	}
}
