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
// which they answer. (A node the crawl never reaches, which no reply
// listed, is a matter of coverage: the crawl still finds at least 99.5%
// of answering nodes, and such nodes are counted apart.) Every BEP 51
// node found is harvested, and at most 2.05 packets are sent per
// answering node. (It was 2.0 while sampleFirst judged at the share of
// silent contacts among those resolved, and the crawl spent 1.982 to
// 1.990; judged at the share's upper bound, which ended the live-like
// crawls that kept samples first for minutes, it spends 1.993 to 2.015
// here, six runs each.)
func TestSyntheticDropUnknown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		res, rec, truth, st := crawlSynth(t,
			synth.Config{N: 10000, Seed: 13, SilentShare: 0.1, BEP51Share: 0.3, DropUnknownShare: 0.1,
				InfohashesPerNode: 15, Interval: 300, PublicIPs: true, Bogons: 20, Latency: 20 * time.Millisecond},
			crawler.Config{Rate: 2000, Timeout: time.Second, Infohashes: true, MaxInFlight: 512})
		answering, found := coverage(truth, rec)
		drops, dropsFound, unreached := 0, 0, 0
		for i, n := range truth.Nodes {
			if n.DropsUnknown {
				drops++
				switch {
				case rec.replied[n.ID]:
					dropsFound++
				case rec.timedOut[n.ID]:
					t.Errorf("node %v drops unknown methods, was queried and was not recorded as answering", n.Addr)
				default:
					unreached++
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
		t.Logf("found %d/%d answering nodes, %d/%d that drop unknown methods (%d never reached; %d sample_infohashes dropped), %d packets = %.3f per answering node, %d resends",
			found, answering, dropsFound, drops, unreached, st.Dropped, res.Packets, perNode, res.Resends)
		if drops < 800 {
			t.Fatalf("only %d nodes drop unknown methods", drops)
		}
		if float64(found) < 0.995*float64(answering) {
			t.Errorf("found %d of %d answering nodes, want at least 99.5%%", found, answering)
		}
		if perNode > 2.05 {
			t.Errorf("%.3f packets per answering node, want at most 2.05", perNode)
		}
	})
}

// TestHistoryDropUnknownSilent: in the crawl history, the visit of a node
// that dropped sample_infohashes but answered find_node is a reply with
// BEP 51 "silent"; BEP 51 nodes are "yes", nodes that answered error 204
// are "no". At most 1% of answering nodes go without a visit (never
// listed to the crawl).
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
			r, ok := got[n.Addr]
			if !ok {
				counts["unreached"]++ // no reply listed it: coverage
				continue
			}
			if r != (row{"replied", want}) {
				t.Errorf("node %v (BEP 51 %v, drops unknown %v): visit %+v, want replied, bep51 %s", n.Addr, n.BEP51, n.DropsUnknown, r, want)
			}
		}
		t.Logf("answering nodes by BEP 51 support: %v", counts)
		if counts["silent"] < 250 {
			t.Errorf("only %d nodes drop unknown methods", counts["silent"])
		}
		if answering := counts["yes"] + counts["no"] + counts["silent"]; counts["unreached"] > answering/100 {
			t.Errorf("%d of %d answering nodes have no visit, want at most 1%%", counts["unreached"], answering)
		}
	})
}

// TestSyntheticLossInfohashes: on a network that loses 5% of packets, a
// BEP 51 node whose sample_infohashes was lost answers the find_node that
// follows it, and is asked for the sample once more (resample), so the
// crawl still harvests at least 97.5% of the infohashes. (A node is left
// unharvested when its sample and then its find_node or its second sample
// are lost, about 1.9% of BEP 51 nodes at 5% loss; resending the sample
// itself, as before nodes that drop unknown methods were followed up,
// left about 1%: seeds 14 to 16 harvested 98.0 to 98.3%, against 98.9
// to 99.3% then. Without the resample it was 89.7%.)
func TestSyntheticLossInfohashes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		res, rec, truth, _ := crawlSynth(t,
			synth.Config{N: 10000, Seed: 14, SilentShare: 0.1, BEP51Share: 0.3, InfohashesPerNode: 15, Interval: 300,
				PublicIPs: true, Latency: 20 * time.Millisecond, Loss: 0.05},
			crawler.Config{Rate: 2000, Timeout: time.Second, MaxInFlight: 512, Infohashes: true})
		answering, found := coverage(truth, rec)
		held, harvested := 0, 0
		for i, n := range truth.Nodes {
			if n.BEP51 {
				for _, ih := range truth.Infohashes(i) {
					held++
					if rec.harvest[ih] {
						harvested++
					}
				}
			}
		}
		t.Logf("found %d of %d answering nodes, harvested %d of %d infohashes, %.3f packets per answering node",
			found, answering, harvested, held, float64(res.Packets)/float64(answering))
		if float64(harvested) < 0.975*float64(held) {
			t.Errorf("harvested %d of %d infohashes at 5%% loss, want at least 97.5%%", harvested, held)
		}
		if float64(found) < 0.985*float64(answering) {
			t.Errorf("found %d of %d answering nodes at 5%% loss, want at least 98.5%%", found, answering)
		}
	})
}
