package crawler

import (
	"net/netip"
	"testing"
	"time"

	"github.com/lightdht/lightdht/krpc"
	"github.com/lightdht/lightdht/observe"
)

// TestImplausible: three contacts sharing 40 bits with the target make a
// reply implausible; two do not, nor do contacts at 39 bits, nor the
// reporter itself.
func TestImplausible(t *testing.T) {
	target := krpc.RandomID()
	at := func(bits int) krpc.NodeInfo {
		return krpc.NodeInfo{ID: krpc.RandomIDAtDepth(target, bits)}
	}
	reporter := at(150).ID
	for _, tc := range []struct {
		name  string
		nodes []krpc.NodeInfo
		want  bool
	}{
		{"three at 40 bits", []krpc.NodeInfo{at(40), at(41), at(100), at(3)}, true},
		{"two at 40 bits", []krpc.NodeInfo{at(40), at(60), at(39), at(2)}, false},
		{"eight at 39 bits", []krpc.NodeInfo{at(39), at(39), at(39), at(39), at(39), at(39), at(39), at(39)}, false},
		{"the reporter is not counted", []krpc.NodeInfo{{ID: reporter}, at(45), at(50)}, false},
	} {
		if got := implausible(tc.nodes, target, reporter); got != tc.want {
			t.Errorf("%s: implausible = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestDeadContacts: at a measured silent share of half, a reporter is
// discounted once chance would give its answers less than once in a
// million: 20 contacts and none answering, not 19; 40 with 3 answering,
// not 40 with 8; nothing before the silent share is known.
func TestDeadContacts(t *testing.T) {
	c := &Crawler{}
	if c.deadContacts(0, 50) {
		t.Error("discounted before the silent share was measured")
	}
	c.san = sanitizer{replied: 500, failed: 500}
	for _, tc := range []struct {
		answered, failed int
		want             bool
	}{
		{0, 19, false}, {0, 20, true}, {3, 37, true}, {8, 32, false}, {10, 10, false},
	} {
		if got := c.deadContacts(tc.answered, tc.failed); got != tc.want {
			t.Errorf("%d answered, %d failed: discounted = %v, want %v", tc.answered, tc.failed, got, tc.want)
		}
	}
	// Seen in a crawl of a network with a tenth of its nodes silent: an
	// honest reporter with 3 of its 7 contacts answering, while 4,515
	// contacts had answered, 56 had failed and 500 more were still being
	// waited for (most of them silent). At the resolved share (1.2%
	// silent) chance explains it less than once in a million; at the
	// bound (11%), often.
	c.san = sanitizer{replied: 4515, failed: 56}
	if !c.deadContacts(3, 4) {
		t.Error("3 of 7 answering at a resolved silent share of 1.2%: not discounted, want discounted (the case this guards)")
	}
	c.san.queried = 4515 + 56 + 500
	if c.deadContacts(3, 4) {
		t.Error("3 of 7 answering with 500 contacts unresolved: discounted, want not")
	}
}

// TestProbeClears: a reply listing four contacts implausibly close to
// its target has its first new contact queried as a probe and the rest
// parked; when the probe answers (a real cluster of IDs), the reporter is
// cleared, the parked contacts are queued, nothing stays discounted, and
// a later implausible reply from it parks nothing. When the probe times
// out instead, the reporter is discounted and the rest stay parked.
func TestProbeClears(t *testing.T) {
	for _, answers := range []bool{true, false} {
		c := &Crawler{cfg: Config{TestNet: true, Now: time.Now}}
		addr := func(i int) netip.AddrPort {
			return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), 6881)
		}
		reporter, _ := c.discover(krpc.NodeInfo{ID: krpc.RandomID(), Addr: addr(1)}, true)
		c.nodes.at(reporter).state = stReplied
		reply := func(first int) []int32 {
			target := krpc.RandomID()
			var nodes []krpc.NodeInfo
			for i := range 4 {
				nodes = append(nodes, krpc.NodeInfo{ID: krpc.RandomIDAtDepth(target, 45+i), Addr: addr(first + i)})
			}
			c.listed(result{idx: reporter, target: target, resp: krpc.Response{Msg: &krpc.Msg{Y: krpc.KindReply, R: krpc.Return{Nodes: nodes}}}},
				krpc.NodeInfo{ID: c.nodes.at(reporter).id, Addr: addr(1)}, time.Now())
			var idx []int32
			for _, ni := range nodes {
				idx = append(idx, c.index.find(keyOf(ni.Addr), &c.nodes))
			}
			return idx
		}
		contacts := reply(2)
		if c.res.Implausible != 1 {
			t.Fatalf("%d implausible replies, want 1", c.res.Implausible)
		}
		probe := c.nodes.at(contacts[0])
		if !probe.probe || probe.state != stQueued || c.skipDiscounted(contacts[0]) {
			t.Fatalf("the first contact: probe %v, state %v; want a probe, queued and sent", probe.probe, probe.state)
		}
		for _, i := range contacts[1:] {
			if n := c.nodes.at(i); n.state != stSkipped || n.skip != observe.SkipDiscounted {
				t.Fatalf("contact %d: state %v skip %v, want parked", i, n.state, n.skip)
			}
		}
		if c.res.Discounted != 3 {
			t.Errorf("%d contacts discounted while the probe is out, want 3", c.res.Discounted)
		}
		c.resolved(probe, answers)
		r := c.nodes.at(reporter)
		if !answers {
			if r.discount != observe.DiscountImplausible || c.res.DiscountedReporters != 1 || c.res.Discounted != 3 {
				t.Errorf("probe timed out: reporter discount %v, %d reporters and %d contacts discounted; want implausible, 1, 3",
					r.discount, c.res.DiscountedReporters, c.res.Discounted)
			}
			continue
		}
		if !r.cleared || r.discount != observe.DiscountNone || c.res.DiscountedReporters != 0 || c.res.Discounted != 0 {
			t.Errorf("probe answered: reporter cleared %v, discount %v, %d reporters and %d contacts discounted; want cleared, none, 0, 0",
				r.cleared, r.discount, c.res.DiscountedReporters, c.res.Discounted)
		}
		for _, i := range contacts[1:] {
			if n := c.nodes.at(i); n.state != stQueued || c.skipDiscounted(i) {
				t.Errorf("contact %d after the probe answered: state %v, want queued and sent", i, n.state)
			}
		}
		for _, i := range reply(10) {
			if n := c.nodes.at(i); n.state != stQueued || n.probe {
				t.Errorf("contact %d of the cleared reporter's next implausible reply: state %v, probe %v; want queued, no probe", i, n.state, n.probe)
			}
		}
	}
}

// TestSampleFirstAtBound: sampleFirst judges at the silent share's upper
// bound. The first case is the state of a live-like infohash crawl at its
// first trusted decision, 2.66 s in: 200 contacts had answered, none had
// failed yet (a silent one resolves only after its timeouts) and 515 had
// been queried; 61 of 199 samples had been answered with one. At the
// resolved share (0%) samples went first, and in about one crawl in eight
// went on doing so for two minutes while that share lagged; at the bound
// (61%) find_node goes first. The second is a clean network's crawl well
// under way (a tenth silent, 30% BEP 51, no follow-up answered),
// where samples first are the cheaper order and stay so.
func TestSampleFirstAtBound(t *testing.T) {
	c := &Crawler{}
	if !c.sampleFirst() {
		t.Error("before anything is known: find_node first, want samples first")
	}
	c.san = sanitizer{replied: 200, failed: 0, queried: 515, sampleYes: 61, sampleOther: 138}
	c.followed = payRule{done: 1, answered: 1, worth: followWorth}
	if c.sampleFirst() {
		t.Error("live-like, 2.66 s in, 315 contacts unresolved: samples first, want find_node first")
	}
	c.san = sanitizer{replied: 4000, failed: 400, queried: 4900, sampleYes: 1200, sampleOther: 2800}
	c.followed = payRule{done: 200, answered: 0, worth: followWorth}
	if !c.sampleFirst() {
		t.Error("clean network under way: find_node first, want samples first")
	}
}
