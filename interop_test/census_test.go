package interop

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lightdht/lightdht/crawler"
	"github.com/lightdht/lightdht/krpc"
	"github.com/lightdht/lightdht/observe"
)

// versionCensus records the client version of every node that replied.
type versionCensus struct {
	mu  sync.Mutex
	ver map[netip.AddrPort]string
}

func (c *versionCensus) Observe(s observe.Sighting) {
	if s.Source == observe.SourceReply {
		c.mu.Lock()
		c.ver[s.Node.Addr] = s.Version
		c.mu.Unlock()
	}
}

func (*versionCensus) RecordSample(krpc.NodeInfo, time.Time, int, int, []krpc.ID) {}

// crawlClients crawls a test network (crawler.Config.TestNet) through
// entry from a socket on ip, with cfg's other settings, and returns the
// result of the crawl, which must end by itself within hangGuard.
func crawlClients(t *testing.T, ip string, entry netip.AddrPort, cfg crawler.Config) crawler.Result {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Conn, cfg.Bootstrap, cfg.TestNet = c, []netip.AddrPort{entry}, true
	cr, err := crawler.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	res, err := cr.Run(ctx)
	if err != nil {
		t.Fatalf("crawl: %v", err)
	}
	return res
}

// TestMixedClientsCensus: a crawl of a loopback network of lightdht nodes,
// a libtorrent node and aria2 finds and counts all three clients.
func TestMixedClientsCensus(t *testing.T) {
	if testing.Short() {
		t.Skip("starts libtorrent and aria2 processes")
	}
	nodes, obs := clientNodes(t, 37)
	lt := startLibtorrent(t, "127.37.0.1")
	lt.do(t, map[string]any{"op": "add_node", "addr": nodes[0].Addr().String()}, nil)
	aria, _ := startAria2(t, "127.37.0.2", nodes[0].Addr(), krpc.RandomID())
	// Both have queried the network, and the lightdht nodes have
	// confirmed them with a ping: they are listed in replies now.
	waitConfirmed(t, nodes, obs, lt.addr, aria)

	census := &versionCensus{ver: map[netip.AddrPort]string{}}
	res := crawlClients(t, "127.37.2.1", nodes[0].Addr(), crawler.Config{
		Recorder: census, Idle: time.Minute, PerIPInterval: 50 * time.Millisecond})
	census.mu.Lock()
	defer census.mu.Unlock()
	counts := map[string]int{}
	for _, v := range census.ver {
		if len(v) >= 2 {
			counts[v[:2]]++
		}
	}
	t.Logf("crawl: %d replied; clients by version: %v", res.Replied, counts)
	if counts["LD"] != len(nodes) || counts["LT"] != 1 || counts["A2"] != 1 {
		t.Errorf("census %v, want %d LD, 1 LT and 1 A2; versions by address: %q; crawl %+v", counts, len(nodes), census.ver, res)
	}
	for _, c := range []struct {
		name, prefix string
		addr         netip.AddrPort
	}{{"libtorrent", "LT", lt.addr}, {"aria2", "A2", aria}} {
		switch v, ok := census.ver[c.addr]; {
		case !ok:
			t.Errorf("%s at %v never replied to the crawl", c.name, c.addr)
		case !strings.HasPrefix(v, c.prefix):
			t.Errorf("%s at %v replied with version %q", c.name, c.addr, v)
		}
	}
}
