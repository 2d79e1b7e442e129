package crawler_test

import (
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lightdht/lightdht/crawler"
	"github.com/lightdht/lightdht/internal/synth"
	"github.com/lightdht/lightdht/krpc"
	"github.com/lightdht/lightdht/observe"
)

// visitRecorder keeps the crawl's visits by address, and the addresses
// that replied.
type visitRecorder struct {
	mu      sync.Mutex
	visits  map[netip.AddrPort]observe.Visit
	replied map[netip.AddrPort]bool
	sampled map[netip.AddrPort]bool
}

func newVisitRecorder() *visitRecorder {
	return &visitRecorder{visits: map[netip.AddrPort]observe.Visit{}, replied: map[netip.AddrPort]bool{}, sampled: map[netip.AddrPort]bool{}}
}

func (r *visitRecorder) Observe(s observe.Sighting) {
	if s.Source == observe.SourceReply {
		r.mu.Lock()
		r.replied[s.Node.Addr] = true
		r.mu.Unlock()
	}
}

func (r *visitRecorder) RecordSample(ni krpc.NodeInfo, _ time.Time, _, _ int, _ []krpc.ID) {
	r.mu.Lock()
	r.sampled[ni.Addr] = true
	r.mu.Unlock()
}

func (r *visitRecorder) RecordVisit(v observe.Visit) {
	r.mu.Lock()
	r.visits[v.Node.Addr] = v
	r.mu.Unlock()
}

// crawlVisits crawls the network scfg describes with ccfg, keeping the
// visits.
func crawlVisits(t *testing.T, scfg synth.Config, ccfg crawler.Config) (crawler.Result, *visitRecorder, synth.Truth, synth.Stats) {
	t.Helper()
	rec := newVisitRecorder()
	res, truth, st := crawlSynthTo(t, scfg, ccfg, rec)
	return res, rec, truth, st
}

// TestPoisonersDiscounted: on a network where 5% of the answering nodes
// list 8 made-up contacts next to any target, every poisoner that was
// asked is discounted as implausible and no honest node is; each costs
// at most its probe and the probe's resend in packets to made-up
// contacts; no real node goes unqueried for it; and the census of
// answering nodes is as complete as on a clean network.
func TestPoisonersDiscounted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		res, rec, truth, st := crawlVisits(t,
			synth.Config{N: 5000, Seed: 21, PublicIPs: true, SilentShare: 0.1, PoisonShare: 0.05, Latency: 20 * time.Millisecond},
			crawler.Config{Rate: 1000})
		t.Logf("%d implausible replies, %d reporters discounted, %d contacts not queried; %d made-up contacts listed, %d packets to them",
			res.Implausible, res.DiscountedReporters, res.Discounted, st.FakeContacts, st.NoSuchNode)
		var poisonersAsked, poisonersDiscounted, answering, found int
		for _, n := range truth.Nodes {
			v, seen := rec.visits[n.Addr]
			if n.Poisons && seen && v.Outcome == observe.OutcomeReplied {
				poisonersAsked++
				if v.Discounted == observe.DiscountImplausible {
					poisonersDiscounted++
				}
			}
			if !n.Poisons && v.Discounted != observe.DiscountNone {
				t.Errorf("honest node %v discounted (%v)", n.Addr, v.Discounted)
			}
			if seen && v.Skipped == observe.SkipDiscounted {
				t.Errorf("real node %v not queried as discounted", n.Addr)
			}
			if n.Answering && !n.Poisons {
				answering++
				if rec.replied[n.Addr] {
					found++
				}
			}
		}
		if poisonersAsked == 0 || poisonersDiscounted != poisonersAsked {
			t.Errorf("%d of the %d poisoners that answered were discounted, want all", poisonersDiscounted, poisonersAsked)
		}
		if res.DiscountedReporters != poisonersDiscounted {
			t.Errorf("%d reporters discounted, want the %d poisoners", res.DiscountedReporters, poisonersDiscounted)
		}
		if st.NoSuchNode > uint64(2*poisonersDiscounted) {
			t.Errorf("%d packets to made-up contacts, want at most 2 per poisoner (%d)", st.NoSuchNode, 2*poisonersDiscounted)
		}
		skipped := 0
		for _, v := range rec.visits {
			if v.Skipped == observe.SkipDiscounted {
				skipped++
			}
		}
		if skipped != res.Discounted || skipped == 0 {
			t.Errorf("%d visits skipped as discounted, result says %d", skipped, res.Discounted)
		}
		if float64(found) < 0.995*float64(answering) {
			t.Errorf("found %d of %d honest answering nodes, want at least 99.5%%", found, answering)
		}
	})
}

// TestFindNodeFirst: where most contacts are silent, an infohash crawl
// asks contacts find_node before sample_infohashes; every answering node
// asked is recorded as answering (those that drop unknown methods
// included), and every BEP 51 node found is sampled. (On this network,
// 60% silent, the census finds 98.8% of the answering nodes for 4.48
// packets each; asking sample_infohashes first, 98.1% for 4.92.)
func TestFindNodeFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		res, rec, truth, _ := crawlVisits(t,
			synth.Config{N: 5000, Seed: 22, PublicIPs: true, SilentShare: 0.6, BEP51Share: 0.3, InfohashesPerNode: 5,
				DropUnknownShare: 0.1, Latency: 20 * time.Millisecond},
			crawler.Config{Rate: 1000, Infohashes: true})
		var answering, found, asked, judgedSilent, bep51, sampled, drops, dropsFound int
		for _, n := range truth.Nodes {
			if !n.Answering {
				continue
			}
			answering++
			if rec.replied[n.Addr] {
				found++
			}
			if v, ok := rec.visits[n.Addr]; ok && v.Queries > 0 {
				asked++
				if !rec.replied[n.Addr] {
					judgedSilent++
				}
			}
			if n.BEP51 && rec.replied[n.Addr] {
				bep51++
				if rec.sampled[n.Addr] {
					sampled++
				}
			}
			if n.DropsUnknown {
				drops++
				if rec.replied[n.Addr] {
					dropsFound++
				}
			}
		}
		t.Logf("%d of %d contacts asked find_node first; found %d of %d answering (%d asked), %d of %d dropping unknown methods; sampled %d of %d BEP 51 nodes found; %.2f packets per answering node",
			res.FindNodeFirst, res.Discovered, found, answering, asked, dropsFound, drops, sampled, bep51, float64(res.Packets)/float64(answering))
		if res.FindNodeFirst < res.Discovered/2 {
			t.Errorf("%d of %d contacts asked find_node first, want most", res.FindNodeFirst, res.Discovered)
		}
		// The network has no loss: an answering node that was asked and
		// is not recorded as answering was misjudged.
		if judgedSilent != 0 || asked < answering*9/10 {
			t.Errorf("%d of the %d answering nodes asked are not recorded as answering", judgedSilent, asked)
		}
		if drops == 0 || dropsFound == 0 {
			t.Errorf("found %d of %d nodes that drop unknown methods", dropsFound, drops)
		}
		if bep51 == 0 || sampled != bep51 {
			t.Errorf("sampled %d of the %d BEP 51 nodes found", sampled, bep51)
		}
	})
}
