package interop

import (
	"context"
	"fmt"
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

// visitCensus records the version of every node that replied and every
// node's visit.
type visitCensus struct {
	mu     sync.Mutex
	ver    map[netip.AddrPort]string
	visits map[netip.AddrPort]observe.Visit
}

func (c *visitCensus) Observe(s observe.Sighting) {
	if s.Source == observe.SourceReply {
		c.mu.Lock()
		c.ver[s.Node.Addr] = s.Version
		c.mu.Unlock()
	}
}

func (*visitCensus) RecordSample(krpc.NodeInfo, time.Time, int, int, []krpc.ID) {}

func (c *visitCensus) RecordVisit(v observe.Visit) {
	c.mu.Lock()
	c.visits[v.Node.Addr] = v
	c.mu.Unlock()
}

// TestAria2InfohashCensus: an infohash crawl (crawl --infohashes) of a
// loopback network of lightdht nodes and three aria2 nodes records every
// aria2 node as answering. aria2 1.36 drops sample_infohashes without
// error 204; the crawler follows the timed-out sample with a find_node,
// which aria2 answers, and records its BEP 51 support as silent. The
// lightdht nodes answer the sample (BEP 51 yes).
func TestAria2InfohashCensus(t *testing.T) {
	if testing.Short() {
		t.Skip("starts aria2 processes")
	}
	nodes, obs := clientNodes(t, 38)
	ctx := context.Background()
	var arias []netip.AddrPort
	for i := range 3 {
		a, _ := startAria2(t, fmt.Sprintf("127.38.0.%d", i+1), nodes[i].Addr(), krpc.RandomID())
		arias = append(arias, a)
	}
	// Every aria2 node has queried the network and been confirmed by a
	// ping: the lightdht nodes list it in replies now.
	waitConfirmed(t, nodes, obs, arias...)

	census := &visitCensus{ver: map[netip.AddrPort]string{}, visits: map[netip.AddrPort]observe.Visit{}}
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 38, 2, 1)})
	if err != nil {
		t.Fatal(err)
	}
	cr, err := crawler.New(crawler.Config{Conn: c, Bootstrap: []netip.AddrPort{nodes[0].Addr()}, TestNet: true,
		Infohashes: true, Recorder: census, Idle: 20 * time.Second, Timeout: 2 * time.Second,
		PerIPInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, hangGuard)
	defer cancel()
	res, err := cr.Run(cctx)
	if err != nil {
		t.Fatalf("crawl: %v", err)
	}
	census.mu.Lock()
	defer census.mu.Unlock()
	t.Logf("crawl: %d discovered, %d replied, %d queries, %d resends, %d samples", res.Discovered, res.Replied, res.Queries, res.Resends, res.Samples)
	for _, a := range arias {
		if v, ok := census.ver[a]; !ok || !strings.HasPrefix(v, "A2") {
			t.Errorf("aria2 at %v: replied %v, version %q; want recorded as answering, A2", a, ok, v)
		}
		if v := census.visits[a]; v.Outcome != observe.OutcomeReplied || v.BEP51 != observe.BEP51Silent {
			t.Errorf("aria2 at %v: visit outcome %v, BEP 51 %v; want replied, silent", a, v.Outcome, v.BEP51)
		}
	}
	for _, n := range nodes {
		if v := census.visits[n.Addr()]; v.Outcome != observe.OutcomeReplied || v.BEP51 != observe.BEP51Yes {
			t.Errorf("lightdht node %v: visit outcome %v, BEP 51 %v; want replied, yes", n.Addr(), v.Outcome, v.BEP51)
		}
	}
}
