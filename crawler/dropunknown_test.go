package crawler_test

import (
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lightdht/lightdht/crawler"
	"github.com/lightdht/lightdht/internal/synth"
)

// TestSyntheticDropUnknown: on a 10,000-node network where 10% of nodes
// are silent and 10% of the answering ones drop sample_infohashes without
// error 204 (as aria2 1.36 does), an infohash crawl records every such
// node as answering: a sample that times out is followed by a find_node,
// which they answer. The crawl still finds at least 99.5% of answering
// nodes, harvests every BEP 51 node it finds, and sends at most 2.0
// packets per answering node.
func TestSyntheticDropUnknown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		res, rec, truth, st := crawlSynth(t,
			synth.Config{N: 10000, Seed: 13, SilentShare: 0.1, BEP51Share: 0.3, DropUnknownShare: 0.1,
				InfohashesPerNode: 15, Interval: 300, PublicIPs: true, Bogons: 20, Latency: 20 * time.Millisecond},
			crawler.Config{Rate: 2000, Timeout: time.Second, Infohashes: true, MaxInFlight: 512})
		answering, found := coverage(truth, rec)
		drops, dropsFound := 0, 0
		for i, n := range truth.Nodes {
			if n.DropsUnknown {
				drops++
				if rec.replied[n.ID] {
					dropsFound++
				} else {
					t.Errorf("node %v drops unknown methods and was not recorded as answering", n.Addr)
				}
			}
			if n.BEP51 && rec.replied[n.ID] {
				for _, ih := range truth.Infohashes(i) {
					if !rec.harvest[ih] {
						t.Errorf("BEP 51 node %v was found but not all its infohashes were harvested", n.Addr)
						break
					}
				}
			}
		}
		perNode := float64(res.Packets) / float64(answering)
		t.Logf("found %d/%d answering nodes, %d/%d that drop unknown methods (%d sample_infohashes dropped), %d packets = %.3f per answering node, %d resends",
			found, answering, dropsFound, drops, st.Dropped, res.Packets, perNode, res.Resends)
		if drops < 800 {
			t.Fatalf("only %d nodes drop unknown methods", drops)
		}
		if float64(found) < 0.995*float64(answering) {
			t.Errorf("found %d of %d answering nodes, want at least 99.5%%", found, answering)
		}
		if perNode > 2.0 {
			t.Errorf("%.3f packets per answering node, want at most 2.0", perNode)
		}
	})
}

// TestHistoryDropUnknownSilent: in the crawl history, the visit of a node
// that dropped sample_infohashes but answered find_node is a reply with
// BEP 51 "silent"; BEP 51 nodes are "yes", nodes that answered error 204
// are "no".
func TestHistoryDropUnknownSilent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHistory(t, synth.Config{N: 2000, Seed: 22, SilentShare: 0.1, BEP51Share: 0.3, DropUnknownShare: 0.2,
			InfohashesPerNode: 5, Interval: 300, PublicIPs: true, Latency: 10 * time.Millisecond})
		truth := h.net.Truth()
		run := h.run(crawler.Config{Infohashes: true}, time.Hour)
		type row struct{ outcome, bep51 string }
		got := map[netip.AddrPort]row{}
		rows, err := h.d.SQL().Query(`SELECT ip, port, outcome, coalesce(bep51, '') FROM visit_details WHERE crawl = ?`, run)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var ip string
			var port uint16
			var r row
			if err := rows.Scan(&ip, &port, &r.outcome, &r.bep51); err != nil {
				t.Fatal(err)
			}
			got[netip.AddrPortFrom(netip.MustParseAddr(ip), port)] = r
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		counts := map[string]int{}
		for _, n := range truth.Nodes {
			if !n.Answering {
				continue
			}
			want := "no"
			switch {
			case n.DropsUnknown:
				want = "silent"
			case n.BEP51:
				want = "yes"
			}
			counts[want]++
			if r := got[n.Addr]; r != (row{"replied", want}) {
				t.Errorf("node %v (BEP 51 %v, drops unknown %v): visit %+v, want replied, bep51 %s", n.Addr, n.BEP51, n.DropsUnknown, r, want)
			}
		}
		t.Logf("answering nodes by BEP 51 support: %v", counts)
		if counts["silent"] < 250 {
			t.Errorf("only %d nodes drop unknown methods", counts["silent"])
		}
	})
}
