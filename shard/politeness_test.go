package shard_test

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lightdht/lightdht/crawler"
	"github.com/lightdht/lightdht/internal/pgtest"
	"github.com/lightdht/lightdht/internal/synth"
	"github.com/lightdht/lightdht/shard"
)

// perIPGaps watches the packets the crawler's socket sends on the
// in-memory network and counts those to an IP that heard from the socket
// less than gap before.
type perIPGaps struct {
	nodes map[netip.Addr]bool // the network's IPs: their packets are replies
	gap   time.Duration

	mu       sync.Mutex
	last     map[[2]netip.Addr]time.Time // (source IP, destination IP) to the last packet
	sent     int
	tooSoon  int
	shortest time.Duration
}

func (g *perIPGaps) filter(from, to netip.AddrPort) bool {
	if g.nodes[from.Addr()] {
		return true
	}
	now := time.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	k := [2]netip.Addr{from.Addr(), to.Addr()}
	if l, ok := g.last[k]; ok {
		d := now.Sub(l)
		if d < g.gap {
			g.tooSoon++
		}
		if g.shortest == 0 || d < g.shortest {
			g.shortest = d
		}
	}
	g.last[k] = now
	g.sent++
	return true
}

// TestZonesKeepPerIPInterval: a process crawling its zones one after
// another, two at once (Parallel) or overlapping (Overlap), on a network
// where many IPs carry several nodes (NATs and sybil hosts, so that the
// zones share IPs), never queries an IP twice within PerIPInterval: the
// zone crawls keep the interval together, as one querier. Each zone's
// crawl used to keep its own, and the process sent 3% to 16% of its
// packets too soon.
func TestZonesKeepPerIPInterval(t *testing.T) {
	for _, tc := range []struct {
		name      string
		configure func(*shard.Config)
	}{
		{"a zone at a time", nil},
		{"parallel", func(c *shard.Config) { c.Parallel = 2 }},
		{"overlap", func(c *shard.Config) { c.Overlap = true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := pgtest.Database(t)
			synctest.Test(t, func(t *testing.T) {
				cfg := netConfig(5)
				cfg.SharedIPShare, cfg.SharedIPGroup = 0.5, 4
				cfg.SybilHosts, cfg.SybilsPerHost = 50, 10
				net, err := synth.New(cfg)
				if err != nil {
					t.Fatal(err)
				}
				defer net.Close()
				g := &perIPGaps{nodes: map[netip.Addr]bool{}, gap: crawler.DefaultPerIPInterval, last: map[[2]netip.Addr]time.Time{}}
				for _, n := range net.Truth().Nodes {
					g.nodes[n.Addr.Addr()] = true
				}
				net.Sim().SetLinkFilter(g.filter)
				m := join(t, url, "spacing", net, 500, tc.configure)
				sum, err := m.crawl.Run(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				g.mu.Lock()
				defer g.mu.Unlock()
				t.Logf("%d zones crawled, %d packets sent, %d within %v of the last to the same IP (shortest gap %v)",
					sum.Crawled, g.sent, g.tooSoon, g.gap, g.shortest)
				if sum.Crawled != 1<<netBits {
					t.Errorf("crawled %d zones, want %d", sum.Crawled, 1<<netBits)
				}
				if g.tooSoon > 0 {
					t.Errorf("%d of %d queries reached an IP within %v of the last (shortest gap %v)", g.tooSoon, g.sent, g.gap, g.shortest)
				}
			})
		})
	}
}

// TestZonesSampleOnce: in a shared infohash crawl each BEP 51 node is
// sampled once, by the crawl of its own zone, and none twice within its
// interval: the crawls sample no node on the way to their zones nor the
// bootstrap nodes of other zones. They used to, and a crawl of 16 zones
// of this network broke 54 nodes' intervals.
func TestZonesSampleOnce(t *testing.T) {
	for _, tc := range []struct {
		name     string
		parallel int
	}{{"a zone at a time", 1}, {"parallel", 2}} {
		t.Run(tc.name, func(t *testing.T) {
			url := pgtest.Database(t)
			synctest.Test(t, func(t *testing.T) {
				cfg := netConfig(9)
				cfg.BEP51Share, cfg.Interval = 0.3, 3600 // an interval longer than the crawl
				net, err := synth.New(cfg)
				if err != nil {
					t.Fatal(err)
				}
				defer net.Close()
				m := join(t, url, "samples", net, 500, func(c *shard.Config) {
					c.Crawler.Infohashes, c.Parallel = true, tc.parallel
				})
				if _, err := m.crawl.Run(context.Background()); err != nil {
					t.Fatal(err)
				}
				bep51 := 0
				for _, n := range net.Truth().Nodes {
					if n.BEP51 && n.Answering {
						bep51++
					}
				}
				st := net.Stats()
				t.Logf("%d BEP 51 nodes, %d samples answered, %d within a node's interval", bep51, st.Sampled, st.Violations)
				if st.Violations != 0 {
					t.Errorf("%d samples within a node's interval", st.Violations)
				}
				if float64(st.Sampled) < 0.99*float64(bep51) {
					t.Errorf("%d samples answered of %d BEP 51 nodes, want at least 99%%", st.Sampled, bep51)
				}
			})
		})
	}
}
