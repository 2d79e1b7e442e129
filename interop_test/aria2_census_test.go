package interop

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/lightdht/lightdht/crawler"
	"github.com/lightdht/lightdht/krpc"
	"github.com/lightdht/lightdht/observe"
)

// visitCensus records the version of every node that replied (a
// versionCensus, whose mu guards visits as well) and every node's visit.
type visitCensus struct {
	versionCensus
	visits map[netip.AddrPort]observe.Visit
}

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
	var arias []netip.AddrPort
	for i := range 3 {
		a, _ := startAria2(t, fmt.Sprintf("127.38.0.%d", i+1), nodes[i].Addr(), krpc.RandomID())
		arias = append(arias, a)
	}
	// Every aria2 node has queried the network and been confirmed by a
	// ping: the lightdht nodes list it in replies now.
	waitConfirmed(t, nodes, obs, arias...)

	census := &visitCensus{versionCensus: versionCensus{ver: map[netip.AddrPort]string{}}, visits: map[netip.AddrPort]observe.Visit{}}
	res := crawlClients(t, "127.38.2.1", nodes[0].Addr(), crawler.Config{
		Infohashes: true, Recorder: census, Idle: 20 * time.Second, Timeout: 2 * time.Second,
		PerIPInterval: 50 * time.Millisecond})
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
