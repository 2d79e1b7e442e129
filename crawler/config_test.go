package crawler_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lightdht/lightdht/crawler"
	"github.com/lightdht/lightdht/internal/simnet"
	"github.com/lightdht/lightdht/krpc"
	"github.com/lightdht/lightdht/observe"
)

// TestConfigErrors: New rejects each bad Config with a *ConfigError that
// names the field at fault and reads as before; a bootstrap address that
// only a test network uses is also ErrNeedsTestNet, and nothing else is.
func TestConfigErrors(t *testing.T) {
	sim, _ := simnet.New(simnet.Config{})
	defer sim.Close()
	conn, _ := sim.NewConn4()
	public := []netip.AddrPort{netip.MustParseAddrPort("11.0.0.1:6881")}
	cases := []struct {
		name        string
		cfg         crawler.Config
		wantIn      string
		wantField   string
		wantTestNet bool
	}{
		{"no conn", crawler.Config{Bootstrap: []netip.AddrPort{netip.MustParseAddrPort("11.0.0.1:1")}}, "Conn is required", "Conn", false},
		{"no bootstrap", crawler.Config{Conn: conn}, "no bootstrap", "Bootstrap", false},
		{"loopback bootstrap", crawler.Config{Conn: conn, Bootstrap: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:6881")}},
			"is not a public address (a local test network needs TestNet)", "Bootstrap", true},
		{"private bootstrap", crawler.Config{Conn: conn, Bootstrap: []netip.AddrPort{netip.MustParseAddrPort("10.1.2.3:6881")}},
			"not a public address", "Bootstrap", true},
		{"invalid bootstrap", crawler.Config{Conn: conn, Bootstrap: []netip.AddrPort{netip.MustParseAddrPort("11.0.0.1:0")}},
			"invalid bootstrap address", "Bootstrap", false},
		{"negative rate", crawler.Config{Conn: conn, Bootstrap: public, Rate: -1}, "negative", "Rate", false},
		{"negative idle", crawler.Config{Conn: conn, Bootstrap: public, Idle: -time.Second}, "negative", "Idle", false},
		{"zone too deep", crawler.Config{Conn: conn, Bootstrap: public, Zone: crawler.Zone{Bits: 40}}, "zone", "Zone", false},
		{"in flight", crawler.Config{Conn: conn, Bootstrap: public, MaxInFlight: 1 << 20}, "MaxInFlight", "MaxInFlight", false},
		{"seeds without a zone", crawler.Config{Conn: conn, Bootstrap: public,
			Seeds: []krpc.NodeInfo{{ID: krpc.RandomID(), Addr: netip.MustParseAddrPort("11.0.0.2:6881")}}}, "zone crawl", "Seeds", false},
		{"private seed", crawler.Config{Conn: conn, Bootstrap: public, Zone: crawler.Zone{Bits: 4},
			Seeds: []krpc.NodeInfo{{ID: krpc.RandomID(), Addr: netip.MustParseAddrPort("10.1.2.3:6881")}}}, "not a public address", "Seeds", false},
		{"learned more answers than sent", crawler.Config{Conn: conn, Bootstrap: public,
			Learned: crawler.Learned{Resends: crawler.Outcomes{Sent: 3, Answered: 4}}}, "Resends: 4 answered of 3 sent", "Learned", false},
		{"learned negative", crawler.Config{Conn: conn, Bootstrap: public,
			Learned: crawler.Learned{Checks: crawler.Outcomes{Sent: 3, Answered: -1}}}, "Checks", "Learned", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := crawler.New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.wantIn) {
				t.Errorf("New(%+v) = %v, want an error mentioning %q", tc.cfg, err, tc.wantIn)
			}
			var ce *crawler.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("New error %v (%T) is not a *crawler.ConfigError", err, err)
			}
			if ce.Field != tc.wantField {
				t.Errorf("ConfigError.Field = %q, want %q", ce.Field, tc.wantField)
			}
			if got := errors.Is(err, crawler.ErrNeedsTestNet); got != tc.wantTestNet {
				t.Errorf("errors.Is(%v, ErrNeedsTestNet) = %v, want %v", err, got, tc.wantTestNet)
			}
		})
	}
}

// timeRecorder keeps the earliest and latest time a crawl reports.
type timeRecorder struct {
	mu       sync.Mutex
	n        int
	min, max time.Time
}

func (r *timeRecorder) see(t time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n == 0 || t.Before(r.min) {
		r.min = t
	}
	if r.n == 0 || t.After(r.max) {
		r.max = t
	}
	r.n++
}

func (r *timeRecorder) Observe(s observe.Sighting) { r.see(s.Time) }
func (r *timeRecorder) RecordSample(_ krpc.NodeInfo, t time.Time, _, _ int, _ []krpc.ID) {
	r.see(t)
}

// TestInjectedClock: a crawl whose Config.Now runs a year ahead of the
// real clock still crawls the whole network, stamps every sighting and
// sample with its own clock, and measures its duration with it.
func TestInjectedClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ahead = 365 * 24 * time.Hour
		sim := newSim(t, simnet.Config{Latency: 2 * time.Millisecond})
		dn := newDHTNet(t, sim, loopbackAddrs(20), nil)
		conn, _ := sim.NewConn4()
		rec := &timeRecorder{}
		start := time.Now()
		c, err := crawler.New(crawler.Config{Conn: conn, Bootstrap: dn.addrs[:1], TestNet: true, Rate: 1000, Timeout: time.Second,
			Infohashes: true, Recorder: rec, Now: func() time.Time { return time.Now().Add(ahead) }})
		if err != nil {
			t.Fatal(err)
		}
		res, err := c.Run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		end := time.Now()
		if res.Replied != 20 {
			t.Errorf("replied %d, want all 20", res.Replied)
		}
		if rec.n == 0 || rec.min.Before(start.Add(ahead)) || rec.max.After(end.Add(ahead)) {
			t.Errorf("%d times recorded from %v to %v, want them all within the crawl on the injected clock, %v to %v",
				rec.n, rec.min, rec.max, start.Add(ahead), end.Add(ahead))
		}
		if res.Duration <= 0 || res.Duration > end.Sub(start) {
			t.Errorf("Duration %v, want it positive and at most the crawl's %v", res.Duration, end.Sub(start))
		}
	})
}
