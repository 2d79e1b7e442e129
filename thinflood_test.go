package lightdht_test

import (
	"context"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lightdht/lightdht"
	"github.com/lightdht/lightdht/internal/simnet"
	"github.com/lightdht/lightdht/krpc"
)

// thinFlood describes a flood from many sources, each within the per-IP
// limit, so that only the shared send cap stands in its way.
type thinFlood struct {
	sources   int           // flooding addresses, a /24 each
	perSource float64       // valid queries per second from each
	duration  time.Duration // of the flood
	known     int           // nodes the node has queried and heard back from
	strangers int           // well-behaved newcomers the node has never heard from
}

// thinResult counts the answered queries of each kind of querier during
// the flood.
type thinResult struct {
	knownSent, knownAnswered       uint64
	strangerSent, strangerAnswered uint64
	floodSent, floodAnswered       uint64
	stats                          lightdht.Stats
}

func pct(a, b uint64) float64 { return 100 * float64(a) / float64(max(1, b)) }

// runThinFlood runs cfg against a node with the default configuration, in
// a synctest bubble: time is the bubble's, so the outcome does not depend
// on how fast the machine is, only on the node's limits.
func runThinFlood(t *testing.T, cfg thinFlood) thinResult {
	t.Helper()
	var res thinResult
	synctest.Test(t, func(t *testing.T) {
		sn, err := simnet.New(simnet.Config{Seed: 3, QueueLen: 1 << 16})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sn.Close() })
		nodeAddr := netip.MustParseAddrPort("127.250.0.1:6881")
		nc, err := sn.Listen(nodeAddr)
		if err != nil {
			t.Fatal(err)
		}
		node, err := lightdht.New(lightdht.Config{Conn4: nc, NoMaintenance: true})
		if err != nil {
			t.Fatal(err)
		}
		go node.Serve(context.Background())
		t.Cleanup(func() { node.Close() })

		// A querier: a KRPC endpoint that answers pings, so that the
		// node can hear back from it.
		querier := func(a netip.AddrPort) *krpc.Transport {
			c, err := sn.Listen(a)
			if err != nil {
				t.Fatal(err)
			}
			id := krpc.RandomID()
			tr, err := krpc.New(krpc.Config{Conn: c, Retries: krpc.NoRetries, Timeout: 2 * time.Second,
				Handler: krpc.HandlerFunc(func(reply, q *krpc.Msg, _ netip.AddrPort) bool { reply.R.ID = id; return true })})
			if err != nil {
				t.Fatal(err)
			}
			go tr.Serve(context.Background())
			t.Cleanup(func() { tr.Close() })
			return tr
		}
		addr := func(b2, b3 int) netip.AddrPort {
			return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, byte(b2), byte(b3), 1}), 6881)
		}
		var known, strangers, flood []*krpc.Transport
		for i := range cfg.known {
			a := addr(200, i)
			known = append(known, querier(a))
			// The node asks it something and hears back: it has a record.
			if _, _, err := node.Ping(context.Background(), a); err != nil {
				t.Fatalf("ping of known node %v: %v", a, err)
			}
		}
		for i := range cfg.strangers {
			strangers = append(strangers, querier(addr(201, i)))
		}
		for i := range cfg.sources {
			flood = append(flood, querier(addr(1+i/256, i%256)))
		}

		// Each querier sends at its rate for the flood's duration; the
		// flood sources start a second early so that their per-IP buckets
		// have settled (a new source counts as heavy at first).
		var wg sync.WaitGroup
		now := time.Now()
		start, stop := now.Add(time.Second), now.Add(2*time.Second+cfg.duration)
		measureFrom := start.Add(time.Second)
		send := func(tr *krpc.Transport, every time.Duration, start, stop time.Time, sent, answered *atomic.Uint64) {
			defer wg.Done()
			id := krpc.RandomID()
			methods := []string{krpc.MethodPing, krpc.MethodFindNode, krpc.MethodGetPeers}
			time.Sleep(time.Until(start))
			for n := 0; time.Now().Before(stop); n++ {
				counted := !time.Now().Before(measureFrom) // the measured span
				if counted {
					sent.Add(1)
				}
				q := &krpc.Msg{Q: methods[n%3], A: krpc.Args{ID: id, Target: krpc.RandomID(), InfoHash: krpc.RandomID()}}
				wg.Add(1)
				tr.QueryAsync(context.Background(), nodeAddr, q, func(_ krpc.Response, err error) {
					defer wg.Done()
					if counted && err == nil {
						answered.Add(1)
					}
				})
				time.Sleep(every)
			}
		}
		var ks, ka, ss, sa, fs, fa atomic.Uint64
		floodEvery := time.Duration(float64(time.Second) / cfg.perSource)
		for i, tr := range flood {
			wg.Add(1)
			// Spread the sources' sends over the interval.
			go send(tr, floodEvery, now.Add(time.Duration(i)*floodEvery/time.Duration(len(flood))), stop, &fs, &fa)
		}
		// The others are spread over their interval too: queriers that
		// all ask at one instant would meet an empty bucket together.
		for i, tr := range known {
			wg.Add(1)
			go send(tr, legitEvery, start.Add(time.Duration(i)*legitEvery/time.Duration(len(known))), stop, &ks, &ka)
		}
		for i, tr := range strangers {
			wg.Add(1)
			go send(tr, legitEvery, start.Add(time.Duration(i)*legitEvery/time.Duration(len(strangers))), stop, &ss, &sa)
		}
		wg.Wait()
		res = thinResult{knownSent: ks.Load(), knownAnswered: ka.Load(), strangerSent: ss.Load(), strangerAnswered: sa.Load(),
			floodSent: fs.Load(), floodAnswered: fa.Load(), stats: node.Stats()}
	})
	return res
}

// TestThinFlood: 300 sources, each sending 8 queries a second (within the
// per-IP limit of 10), ask for 2,400 replies a second of a node whose send
// cap is 1,000. The nodes it has heard back from still get at least 99% of
// their queries answered; what the others get is logged.
func TestThinFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("a flood of several simulated seconds")
	}
	cfg := thinFlood{sources: 300, perSource: 8, duration: 3 * time.Second, known: 20, strangers: 10}
	if raceEnabled {
		cfg.sources, cfg.duration = 200, 2*time.Second
	}
	// The soak, by hand: LIGHTDHT_THIN_SOURCES, LIGHTDHT_THIN_RATE (per
	// source) and LIGHTDHT_THIN_SECONDS (simulated) override the above.
	if os.Getenv("LIGHTDHT_THIN_SOURCES") != "" || os.Getenv("LIGHTDHT_THIN_SECONDS") != "" || os.Getenv("LIGHTDHT_THIN_RATE") != "" {
		cfg.sources = int(envFloat(t, "LIGHTDHT_THIN_SOURCES", float64(cfg.sources)))
		cfg.perSource = envFloat(t, "LIGHTDHT_THIN_RATE", cfg.perSource)
		cfg.duration = time.Duration(envFloat(t, "LIGHTDHT_THIN_SECONDS", cfg.duration.Seconds()) * float64(time.Second))
	}
	r := runThinFlood(t, cfg)
	t.Logf("thin flood: %d sources at %.0f queries/s each for %v (simulated)", cfg.sources, cfg.perSource, cfg.duration)
	t.Logf("known nodes: %d of %d answered (%.2f%%)", r.knownAnswered, r.knownSent, pct(r.knownAnswered, r.knownSent))
	t.Logf("newcomers: %d of %d answered (%.2f%%)", r.strangerAnswered, r.strangerSent, pct(r.strangerAnswered, r.strangerSent))
	t.Logf("flood sources: %d of %d answered (%.2f%%); send-capped %d", r.floodAnswered, r.floodSent,
		pct(r.floodAnswered, r.floodSent), r.stats.Transport4.DroppedRateLimited)
	if r.knownSent == 0 || r.floodSent == 0 {
		t.Fatalf("nothing measured: %+v", r)
	}
	if p := pct(r.knownAnswered, r.knownSent); p < 99 {
		t.Errorf("known nodes: %.2f%% of their queries answered, want at least 99%%", p)
	}
	// The flood must have been one: more asked than the send cap allows.
	if r.floodSent < uint64(float64(lightdht.DefaultSendRate)*cfg.duration.Seconds()) || r.stats.Transport4.DroppedRateLimited == 0 {
		t.Errorf("the flood did not reach the send cap: %d queries, %d replies capped", r.floodSent, r.stats.Transport4.DroppedRateLimited)
	}
}
