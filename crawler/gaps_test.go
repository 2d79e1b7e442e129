package crawler

import (
	"net/netip"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lightdht/lightdht/internal/simnet"
	"github.com/lightdht/lightdht/krpc"
)

// gapID returns a random ID whose first len(prefix) bits are prefix
// ("0" and "1" characters).
func gapID(prefix string) krpc.ID {
	id := krpc.RandomID()
	for i, b := range prefix {
		mask := byte(0x80) >> (i % 8)
		id[i/8] &^= mask
		if b == '1' {
			id[i/8] |= mask
		}
	}
	return id
}

// hasPrefix reports whether id starts with the bits of prefix.
func hasPrefix(id krpc.ID, prefix string) bool {
	for i, b := range prefix {
		if id.Bit(i) != int(b-'0') {
			return false
		}
	}
	return true
}

// bits3 returns the 3-bit binary string of i.
func bits3(i int) string {
	return string([]byte{'0' + byte(i>>2&1), '0' + byte(i>>1&1), '0' + byte(i&1)})
}

// gapCrawler returns a crawler on a new in-memory network, and the
// network, whose crawl has found one replied node for each of the given ID
// prefixes, at 127.3.x.y:6881, with as many queries sent as nodes, all
// of one island.
func gapCrawler(t *testing.T, prefixes []string) (*Crawler, *simnet.Network) {
	t.Helper()
	sim, err := simnet.New(simnet.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	conn, err := sim.NewConn4()
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{Conn: conn, Bootstrap: []netip.AddrPort{netip.MustParseAddrPort("127.3.0.1:6881")}, TestNet: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.tr.Close() })
	for i, p := range prefixes {
		a := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 3, byte(i / 250), byte(i%250 + 1)}), 6881)
		c.nodes.add(node{id: gapID(p), key: keyOf(a), state: stReplied, replied: true, listed: true, queried: true})
		c.index.add(keyOf(a), int32(i))
		c.join(0, int32(i)) // one network: listings joined them
	}
	c.res.Discovered, c.res.Replied, c.res.Queries = len(prefixes), len(prefixes), len(prefixes)
	return c, sim
}

// TestFillGapsEmptyRegion: 56 replied nodes spread evenly over 8 regions
// of 3 bits, except that region 101 is empty although it is expected to
// hold 7. fillGaps asks 3 nodes of its sibling 100 about it, with a target
// inside it; the query that goes out carries that target; the region is
// not asked about twice. In a synctest bubble: the read deadline passes
// only if the queries never come.
func TestFillGapsEmptyRegion(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var prefixes []string
		for r := range 8 {
			if r == 0b101 {
				continue
			}
			for j := range 8 { // 8 per region, split evenly below it
				prefixes = append(prefixes, bits3(r)+bits3(j))
			}
		}
		c, sim := gapCrawler(t, prefixes)
		if !c.fillGaps() {
			t.Fatal("fillGaps queued nothing")
		}
		if len(c.gapTarget) != gapAsk || len(c.q.ready) != gapAsk {
			t.Fatalf("%d gap targets, %d ready, want %d", len(c.gapTarget), len(c.q.ready), gapAsk)
		}
		for i, target := range c.gapTarget {
			if !hasPrefix(target, "101") {
				t.Errorf("target %v is not in region 101", target)
			}
			if n := c.nodes.at(i); !hasPrefix(n.id, "100") || n.state != stQueued {
				t.Errorf("asker %v (state %d) is not a queued node of the sibling region 100", n.id, n.state)
			}
		}

		// The queries sent carry the region's target.
		var conns []*simnet.Conn
		for i := range c.gapTarget {
			l, err := sim.Listen(c.nodes.at(i).key.addrPort())
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			conns = append(conns, l)
		}
		c.dispatch(c.enumeration())
		for _, l := range conns {
			l.SetReadDeadline(time.Now().Add(10 * time.Second))
			buf := make([]byte, 1500)
			n, _, err := l.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatalf("no query reached asker %v: %v", l.AddrPort(), err)
			}
			var q krpc.Msg
			if err := krpc.Unmarshal(buf[:n], &q); err != nil {
				t.Fatal(err)
			}
			idx := c.index.find(keyOf(l.AddrPort()), &c.nodes)
			if q.Q != krpc.MethodFindNode || q.A.Target != c.gapTarget[idx] {
				t.Errorf("asker got %s for %v, want find_node for %v", q.Q, q.A.Target, c.gapTarget[idx])
			}
		}

		// Once asked about, the region is not asked about again.
		for i := range c.nodes.len() {
			c.nodes.at(i).state = stReplied
		}
		clear(c.gapTarget)
		c.q.ready = nil
		if c.fillGaps() {
			t.Errorf("fillGaps asked about region 101 again: %d queued", len(c.q.ready))
		}
	})
}

// TestFillGapsSibling: with 32 replied nodes, regions down to depth 3 are
// expected to hold 4. Deeper, an empty region is suspect only beside at
// least K replied nodes: region 0000, beside the 12 nodes of 0001, is
// asked about; region 0110, beside the 4 nodes of 0111, is not. Nothing
// is asked about when the query budget is spent.
func TestFillGapsSibling(t *testing.T) {
	var prefixes []string
	for j := range 12 {
		prefixes = append(prefixes, "0001"+bits3(j % 2)[2:]) // split 6 / 6 below
	}
	for range 4 {
		prefixes = append(prefixes, "0111")
	}
	for _, r := range []string{"001", "010", "100", "101", "110", "111"} {
		for range 3 {
			prefixes = append(prefixes, r)
		}
	}
	prefixes = prefixes[:32] // the last region keeps 1
	c, _ := gapCrawler(t, prefixes)
	if !c.fillGaps() {
		t.Fatal("fillGaps queued nothing")
	}
	if len(c.gapTarget) != gapAsk {
		t.Errorf("%d nodes asked, want %d", len(c.gapTarget), gapAsk)
	}
	for i, target := range c.gapTarget {
		if !hasPrefix(target, "0000") || !hasPrefix(c.nodes.at(i).id, "0001") {
			t.Errorf("node %v asked about %v, want nodes of 0001 asked about 0000", c.nodes.at(i).id, target)
		}
	}

	c, _ = gapCrawler(t, prefixes)
	c.res.Queries = int(secondPassBudget * float64(c.res.Replied))
	if c.fillGaps() {
		t.Errorf("fillGaps queued %d queries with the budget spent", len(c.q.ready))
	}
}

// TestFillGapsSiblingSilent: the 4 replied nodes of 0111 do not make
// region 0110 suspect (TestFillGapsSibling), nor do they with 3 nodes
// beside them that never answered; with 4, K in all, they do: those are
// in the replied nodes' tables
// too, so each of them has K nearer neighbours on its own side and lists
// no node of 0110 among its nearest. With half the contacts silent, as
// on the live DHT, the regions found that way held 155 of the 224
// reachable nodes a 100,000-node live-like crawl missed.
func TestFillGapsSiblingSilent(t *testing.T) {
	var prefixes []string
	for j := range 12 {
		prefixes = append(prefixes, "0001"+bits3(j % 2)[2:])
	}
	for range 4 {
		prefixes = append(prefixes, "0111")
	}
	for _, r := range []string{"001", "010", "100", "101", "110", "111"} {
		for range 3 {
			prefixes = append(prefixes, r)
		}
	}
	prefixes = prefixes[:32]
	for _, silent := range []int{3, 4} {
		c, _ := gapCrawler(t, prefixes)
		for j := range silent {
			i := int32(c.nodes.len())
			a := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 5, 0, byte(j + 1)}), 6881)
			c.nodes.add(node{id: gapID("0111"), key: keyOf(a), state: stFailed, listed: true, queried: true, queries: 2})
			c.index.add(keyOf(a), i)
			c.join(0, i)
			c.res.Discovered++
		}
		if !c.fillGaps() {
			t.Fatal("fillGaps queued nothing")
		}
		asked := map[string]int{}
		for _, target := range c.gapTarget {
			for _, r := range []string{"0000", "0110"} {
				if hasPrefix(target, r) {
					asked[r]++
				}
			}
		}
		if want := (silent - 3) * gapAsk; asked["0000"] != gapAsk || asked["0110"] != want {
			t.Errorf("with %d silent nodes in 0111: %v asked about each region, want %d about 0000 and %d about 0110", silent, asked, gapAsk, want)
		}
	}
}

// TestLeastCovered: three neighbourhoods of 8 replied nodes (the ID
// prefixes 000, 001 and 010, spread evenly below). In 000 one node has
// listed its nearest neighbours, in 010 two have, in 001 none. The second
// pass asks the nodes of 001 first, then the rest of 000, then 010.
func TestLeastCovered(t *testing.T) {
	var prefixes []string
	for _, g := range []string{"000", "001", "010"} {
		for j := range 8 {
			prefixes = append(prefixes, g+bits3(j))
		}
	}
	c, _ := gapCrawler(t, prefixes)
	c.nodes.at(0).nbrs = true                             // one in 000
	c.nodes.at(16).nbrs, c.nodes.at(17).nbrs = true, true // two in 010
	var cands []int32
	for i := range c.nodes.len() {
		if !c.nodes.at(i).nbrs {
			cands = append(cands, i)
		}
	}
	got := c.leastCovered(slices.Clone(cands), 15)
	for j, i := range got {
		want := "001"
		if j >= 8 {
			want = "000"
		}
		if id := c.nodes.at(i).id; !hasPrefix(id, want) {
			t.Errorf("candidate %d of the second pass is in %s, want %s", j, bits3(int(id[0]>>5)), want)
		}
	}
}

// TestFillGapsPerIsland: two networks crawled together. The 10 replied
// nodes of one all lie in half 0 (5 under 00, 5 under 01), so its nodes of
// half 1, if any, are listed as no one's nearest neighbours; the 8 of the
// other lie in both halves and fill half 1 with nodes that cannot list
// the first network's. Judged as one, half 1 is not empty; judged by
// island, it is, beside 10 nodes: 3 nodes of the first network are asked
// about it, and none of the second.
func TestFillGapsPerIsland(t *testing.T) {
	var prefixes []string
	for j := range 10 {
		prefixes = append(prefixes, []string{"00", "01"}[j%2])
	}
	for j := range 8 {
		prefixes = append(prefixes, []string{"0", "1"}[j%2])
	}
	c, _ := gapCrawler(t, prefixes)
	for i := range c.nodes.len() {
		c.nodes.at(i).link = 0
	}
	for i := 1; i < len(prefixes); i++ {
		c.join(int32(min(i, 10)/10*10), int32(i)) // 0-9 to node 0, 10-17 to node 10
	}
	if c.island(9) != c.island(0) || c.island(17) != c.island(10) || c.island(0) == c.island(10) {
		t.Fatalf("islands: %d %d %d %d", c.island(0), c.island(9), c.island(10), c.island(17))
	}
	if !c.fillGaps() {
		t.Fatal("fillGaps queued nothing")
	}
	if len(c.gapTarget) != gapAsk {
		t.Errorf("%d nodes asked, want %d", len(c.gapTarget), gapAsk)
	}
	for i, target := range c.gapTarget {
		if i >= 10 || !hasPrefix(target, "1") {
			t.Errorf("node %d (%v) asked about %v, want nodes 0-9 asked about half 1", i, c.nodes.at(i).id, target)
		}
	}
}

// TestChecksPatience: the second pass lines up its nodes and nextCheck
// queues them one at a time; once a run of them without a new node
// answering is as long as the pass's patience (a tenth of the nodes
// lined up, at least minPatience, or learntPatience once minPatience
// checks have found fewer than one node per minPatience, or none where
// earlier crawls' minPatience checks or more found no node) and gapFactor
// times the mean run that led to a new node before, the rest are left,
// back in the replied state and counted in ChecksLeft.
func TestChecksPatience(t *testing.T) {
	prefixes := make([]string, 3000)
	for i := range prefixes {
		prefixes[i] = bits3(i % 8)
	}
	idle := Learned{Checks: Outcomes{Sent: 600, Answered: 1}}     // earlier crawls' checks found next to nothing
	fruitful := Learned{Checks: Outcomes{Sent: 600, Answered: 6}} // one in a hundred
	barren := Learned{Checks: Outcomes{Sent: 600}}                // earlier crawls' checks found nothing at all
	for _, tc := range []struct {
		name     string
		answerAt []int // checks queued when a new node answers
		census   int   // answering nodes found before the pass; 0: the 3,000
		learned  Learned
		want     func(patience int) int
	}{
		// The run reaches minPatience before the least falls.
		{"no new node", nil, 0, Learned{}, func(p int) int { return max(p, minPatience) }},
		{"no new node, checks found idle before", nil, 0, idle, func(p int) int { return p }},
		{"no new node, checks found fruitful before", nil, 0, fruitful, func(p int) int { return p }},
		// The run that would end the pass was asked before it: no check.
		{"checks found nothing before", nil, 0, barren, func(p int) int { return 0 }},
		// Past minPatience checks the crawl's own have found fewer than
		// one per minPatience: the least falls to learntPatience, and a
		// tenth of those lined up is all the run must reach.
		{"one new node early", []int{3}, 0, Learned{}, func(p int) int { return max(3+p, minPatience+1) }},
		// In a census of 300 the 2,700 left, at 1 in 200, are worth it.
		{"one new node late", []int{200}, 300, Learned{}, func(p int) int { return 200 + max(p, gapFactor*200) }},
		// 1 in 200 of the 2,700 left would be 14 nodes: not worth it in
		// a census of a million.
		{"one new node late in a large census", []int{200}, 1_000_000, Learned{}, func(p int) int { return 200 + p }},
		{"new nodes at a steady pace", []int{100, 200, 300, 400, 500, 600}, 0, Learned{}, func(p int) int { return 600 + max(p, gapFactor*100) }},
		// One in ten of the first 600 checks finds a node, one in 200
		// after: no run ever reaches the patience, and the checks left
		// would, at the yield of all checks so far, find fewer than
		// 0.1% of the census; but only the recent yield tells it, once
		// a window of checks past the patience is asked.
		{"new nodes that become rare", fading(), 100_000, Learned{}, func(p int) int { return p + checkWindow }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := gapCrawler(t, prefixes)
			c.cfg.Learned = tc.learned
			budget := c.passBudget()
			if !c.secondPass() {
				t.Fatal("secondPass lined up nothing")
			}
			lined := len(c.checks)
			if tc.census > 0 {
				c.res.Replied = tc.census
			}
			if want := min(len(prefixes), budget); lined != want {
				t.Fatalf("%d checks lined up, want %d", lined, want)
			}
			least := minPatience
			if tc.learned == idle {
				least = learntPatience
			}
			want := max(least, lined/10)
			if tc.learned == barren {
				want = 0
			}
			if c.patience != want {
				t.Fatalf("patience %d, want %d", c.patience, want)
			}
			if len(c.q.ready) != 0 {
				t.Fatalf("%d checks queued at once; nextCheck should queue them", len(c.q.ready))
			}
			answers, found := tc.answerAt, 0
			for c.nextCheck() {
				if len(c.q.ready) != 1 {
					t.Fatalf("%d queued after nextCheck, want 1", len(c.q.ready))
				}
				i := c.q.ready[0]
				c.q.ready = c.q.ready[:0]
				if n := c.nodes.at(i); n.state != stQueued || !n.nearest {
					t.Fatalf("a queued check is in state %d, nearest %v", n.state, n.nearest)
				}
				if len(answers) > 0 && c.res.Checks == answers[0] {
					newNodeAnswers(t, c, len(answers))
					answers = answers[1:]
					found++
				}
			}
			want = min(lined, tc.want(c.patience))
			if c.res.Checks != want || c.res.ChecksLeft != lined-want {
				t.Fatalf("%d checks, %d left; want %d and %d", c.res.Checks, c.res.ChecksLeft, want, lined-want)
			}
			if l := c.learned().Checks; l.Sent != want || l.Answered != found {
				t.Fatalf("learned %+v, want %d checks and %d found", l, want, found)
			}
			left := 0
			for i := range c.nodes.len() {
				if n := c.nodes.at(i); n.state == stReplied && !n.nearest && !n.nbrs && n.listed {
					left++
				}
			}
			if left < c.res.ChecksLeft {
				t.Fatalf("%d nodes back in the replied state, want the %d left", left, c.res.ChecksLeft)
			}
			if len(c.checks) != 0 {
				t.Fatalf("%d checks still lined up", len(c.checks))
			}
		})
	}
}

// fading returns the checks at which a new node answers for the case
// "new nodes that become rare" of TestChecksPatience: every tenth of the
// first 600, then every 200th.
func fading() []int {
	var at []int
	for i := 10; i <= 600; i += 10 {
		at = append(at, i)
	}
	for i := 800; i <= 3000; i += 200 {
		at = append(at, i)
	}
	return at
}

// newNodeAnswers adds a node the crawl has not heard from and hands the
// event loop its first reply.
func newNodeAnswers(t *testing.T, c *Crawler, i int) {
	t.Helper()
	a := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 4, 0, byte(i)}), 6881)
	idx, isNew := c.discover(krpc.NodeInfo{ID: gapID("111"), Addr: a}, false)
	if !isNew {
		t.Fatal("the new node is not new")
	}
	c.q.ready = c.q.ready[:0] // discover queued it: it is sent now
	c.nodes.at(idx).state = stInFlight
	c.inflight++
	before := c.res.Replied
	c.handle(result{idx: idx, method: krpc.MethodFindNode, resp: krpc.Response{
		Msg: &krpc.Msg{Y: krpc.KindReply, R: krpc.Return{ID: c.nodes.at(idx).id}}}})
	if c.res.Replied != before+1 {
		t.Fatal("the new node's reply was not counted")
	}
}

// TestLearnedResends: a crawl starts its resend rule from Config.Learned,
// scaled down to resendLearn outcomes, so that one that knows its
// resends go unanswered resends one timeout in resendHeldProbe from the
// start (one in resendProbe where timeouts are not held); and
// Result.Learned holds only its own outcomes.
func TestLearnedResends(t *testing.T) {
	c, _ := gapCrawler(t, []string{"0"})
	if !c.resent.paying() || !c.resent.held {
		t.Fatal("a crawl that has learned nothing does not resend, or does not hold its timeouts")
	}
	prior := Learned{Resends: Outcomes{Sent: 5000, Answered: 50}}
	for _, held := range []bool{true, false} {
		c, _ = gapCrawler(t, []string{"0"})
		c.cfg.Learned = prior
		c.resent, c.priors = learnedRule(prior.Resends).holding(held), prior.scaled()
		if got := c.resent.outcomes(); got != (Outcomes{Sent: resendLearn, Answered: 1}) {
			t.Fatalf("5,000 learned outcomes start the rule at %+v, want %d sent and 1 answered", got, resendLearn)
		}
		if c.resent.paying() {
			t.Fatal("a crawl that learned 1% of resends answered resends every timeout")
		}
		probe := resendProbe
		if held {
			probe = resendHeldProbe
		}
		sent := 0
		for range 10 * probe {
			if c.resent.pays() {
				sent++
			}
		}
		if sent != 10 {
			t.Fatalf("held %v: %d of %d timeouts resent, want one in %d", held, sent, 10*probe, probe)
		}
	}
	c.resent.done, c.resent.answered = c.resent.done+3, c.resent.answered+2
	if got := c.learned().Resends; got != (Outcomes{Sent: 3, Answered: 2}) {
		t.Fatalf("learned %+v, want the crawl's own 3 sent and 2 answered", got)
	}
}

// TestHeldResends: the first resendLearn timeouts are resent while their
// outcomes are unknown and the rest held back; once the resends are seen
// to go unanswered nothing held is resent, and when they begin to be
// answered (loss has begun) the recent outcomes say so within a window,
// however many unanswered ones came before, and the held timeouts are
// resent, the latest first, resendRedeem for each outcome of a resend.
func TestHeldResends(t *testing.T) {
	c, _ := gapCrawler(t, nil)
	var next int32
	// query puts a new node in flight and returns its index.
	query := func() int32 {
		a := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 4, byte(next / 250), byte(next%250 + 1)}), 6881)
		i := c.nodes.add(node{key: keyOf(a), state: stInFlight, queried: true, queries: 1, introducer: noIntroducer})
		c.index.add(keyOf(a), i)
		c.inflight++
		next++
		return i
	}
	timeout := func(i int32, resend bool) {
		c.handle(result{idx: i, method: krpc.MethodFindNode, resend: resend, err: krpc.ErrTimeout})
	}
	answer := func(i int32) {
		c.handle(result{idx: i, method: krpc.MethodFindNode, resend: true,
			resp: krpc.Response{Msg: &krpc.Msg{Y: krpc.KindReply, R: krpc.Return{ID: krpc.RandomID()}}}})
	}
	// resent takes the resends queued so far off the queue and puts them
	// in flight, as dispatch would.
	resent := func() []int32 {
		var out []int32
		for _, i := range c.q.ready {
			if n := c.nodes.at(i); n.state == stQueued && n.retry {
				n.state, n.retry, n.queries = stInFlight, false, n.queries+1
				c.inflight++
				out = append(out, i)
			}
		}
		c.q.ready = c.q.ready[:0]
		return out
	}
	for range 3 * resendLearn {
		timeout(query(), false)
	}
	first := resent()
	probes := 2 * resendLearn / resendHeldProbe
	if len(first) != resendLearn+probes || len(c.held) != 2*resendLearn-probes {
		t.Fatalf("%d of %d timeouts resent and %d held, want %d resent and the rest held",
			len(first), 3*resendLearn, len(c.held), resendLearn+probes)
	}
	for _, i := range first {
		timeout(i, true)
	}
	if got := resent(); len(got) != 0 || c.resent.paying() {
		t.Fatalf("%d held timeouts resent after %d unanswered resends, want none", len(got), len(first))
	}
	// A long lossless stretch: one timeout in resendHeldProbe is resent,
	// and goes unanswered.
	for range 50 * resendHeldProbe {
		timeout(query(), false)
		for _, i := range resent() {
			timeout(i, true)
		}
	}
	held := len(c.held)
	latest := c.held[held-1]
	// Loss begins: the probes' resends are answered. A window holds
	// about resendWindow answers at the line, so about resendWindow of
	// them turn the rule whatever came before.
	answered := 0
	for !c.resent.paying() {
		i := query()
		timeout(i, false)
		for _, j := range resent() {
			answer(j)
			answered++
		}
		if answered > 3*resendWindow {
			t.Fatalf("%d probes answered after %d unanswered and resends do not pay", answered, c.resent.done-answered)
		}
	}
	got := resent()
	if len(got) != resendRedeem || got[0] < got[1] || got[1] < latest {
		t.Fatalf("resends paid again and held timeouts %v were resent, want the latest %d, the latest first", got, resendRedeem)
	}
	for len(got) > 0 {
		j := got[0]
		answer(j)
		got = append(got[1:], resent()...)
	}
	if len(c.held) != 0 || c.res.Redeemed < held {
		t.Fatalf("%d of %d held timeouts resent while resends paid, %d still held", c.res.Redeemed, held, len(c.held))
	}
}

// TestShareLearned: what Config.Share returns, the outcomes of the crawls
// beside this one, is taken in as learned before: the resend rule stops
// paying once theirs and its own show resends unanswered, the second
// pass's least patience falls to learntPatience (in a zone, its share of
// it) once the checks of all number minPatience without a find, Share is
// handed the crawl's own outcomes only, and Result.Learned keeps only
// those.
func TestShareLearned(t *testing.T) {
	c, _ := gapCrawler(t, []string{"0"})
	var others Learned
	var handed []Learned
	c.cfg.Share = func(own Learned) Learned {
		handed = append(handed, own)
		return others
	}
	c.share()
	if !c.resent.paying() || c.checkLeast() != minPatience {
		t.Fatal("a crawl whose neighbours have learned nothing does not resend every timeout, or cut its checks short")
	}
	c.resent.done, c.resent.answered = 30, 0
	others = Learned{Resends: Outcomes{Sent: 90, Answered: 1}, Checks: Outcomes{Sent: 250}}
	c.share()
	if got := c.resent.outcomes(); got != (Outcomes{Sent: 120, Answered: 1}) {
		t.Fatalf("rule at %+v, want the 30 own and the 90 others' outcomes", got)
	}
	if c.resent.paying() {
		t.Fatal("1 of 120 resends answered, 90 of them beside this crawl: every timeout is still resent")
	}
	if got := c.checkLeast(); got != minPatience {
		t.Fatalf("least patience %d with 250 checks asked in all, want %d", got, minPatience)
	}
	c.res.Checks = 50
	if got := c.checkLeast(); got != learntPatience {
		t.Fatalf("least patience %d with 300 checks asked in all and none found, want %d", got, learntPatience)
	}
	// In one of 16 zones, the zones ask learntPatience in all.
	c.cfg.Zone = Zone{Bits: 4}
	if got := c.checkLeast(); got != learntPatience/16 {
		t.Fatalf("least patience %d in a zone of 16, want %d", got, learntPatience/16)
	}
	c.cfg.Zone = Zone{}
	// The others' outcomes grow past resendLearn: they are scaled down,
	// as Config.Learned is, and the crawl's own stay as they are.
	others.Resends = Outcomes{Sent: 1000, Answered: 500}
	c.share()
	if got := c.resent.outcomes(); got != (Outcomes{Sent: 30 + resendLearn, Answered: resendLearn / 2}) {
		t.Fatalf("rule at %+v, want the 30 own and %d scaled others'", got, resendLearn)
	}
	if !c.resent.paying() {
		t.Fatal("half the resends answered beside this crawl: not every timeout is resent")
	}
	want := Learned{Resends: Outcomes{Sent: 30}, Checks: Outcomes{Sent: 50}}
	if got := c.learned(); got != want {
		t.Fatalf("learned %+v, want the crawl's own %+v", got, want)
	}
	if got := handed[len(handed)-1]; got != want {
		t.Fatalf("Share was handed %+v, want the crawl's own outcomes", got)
	}
}

// TestPooledChecksStop: the checks of a crawl and of the crawls beside it
// (Config.Share) are one second pass: once their run without a new node
// reaches minPatience and they no longer pay by the rule of checksPay
// (here the run is more than gapFactor times the one that led to the
// only find), the crawl leaves its checks, although its own run is far
// shorter than its own patience. A node found beside it starts the
// pooled run again.
func TestPooledChecksStop(t *testing.T) {
	prefixes := make([]string, 3000)
	for i := range prefixes {
		prefixes[i] = bits3(i % 8)
	}
	c, _ := gapCrawler(t, prefixes)
	var others Learned
	c.cfg.Share = func(Learned) Learned { return others }
	if !c.secondPass() {
		t.Fatal("secondPass lined up nothing")
	}
	lined := len(c.checks)
	ask := func(n int) {
		for range n {
			if !c.nextCheck() {
				t.Fatalf("the checks stopped after %d of them, %d run beside; pooled run %d", c.res.Checks, others.Checks.Sent, c.poolStale)
			}
			c.q.ready = c.q.ready[:0]
			c.share()
		}
	}
	ask(5)
	// Beside it, the tenth check finds a node: the pooled run starts again.
	others = Learned{Checks: Outcomes{Sent: 10, Answered: 1}}
	c.share()
	if c.poolStale != 0 {
		t.Fatalf("pooled run %d after a node was found beside the crawl, want 0", c.poolStale)
	}
	// 29 checks of its own and 270 beside it without a find: a pooled
	// run of 299, one short of minPatience.
	ask(29)
	others.Checks.Sent += 270
	c.share()
	if c.poolStale != minPatience-1 {
		t.Fatalf("pooled run %d, want %d", c.poolStale, minPatience-1)
	}
	ask(1)
	if c.patience <= c.stale {
		t.Fatalf("own patience %d, own run %d: the test needs the own rule not to stop", c.patience, c.stale)
	}
	if c.nextCheck() {
		t.Fatalf("a pooled run of %d checks without a find after one found in the first 15: the crawl still checks", c.poolStale)
	}
	if c.res.Checks != 35 || c.res.ChecksLeft != lined-35 {
		t.Fatalf("%d checks asked and %d left, want 35 and %d", c.res.Checks, c.res.ChecksLeft, lined-35)
	}
}
