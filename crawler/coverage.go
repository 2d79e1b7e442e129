package crawler

import (
	"math/bits"
	"slices"

	"github.com/lightdht/lightdht/krpc"
	"github.com/lightdht/lightdht/table"
)

// Gap probes (see fillGaps).
const (
	gapExpect  = 4              // replied nodes a region must be expected to hold for its emptiness to count
	gapSibling = table.DefaultK // replied nodes in the sibling region that make an empty region suspect
	gapAsk     = 3              // replied nodes asked about each suspect region
)

// gapKey names a region of the ID space, its prefix (the bits past depth
// are zero) and depth, as asked about in one island.
type gapKey struct {
	prefix krpc.ID
	depth  uint8
	island int32 // the root of the island it was asked about in
}

// fillGaps asks about the regions of the ID space (subtrees of the ID
// trie) where the crawl has found no replied node although it should have
// found some. A region is suspect when it holds no replied node and either
//
//   - its sibling region (the other half of the subtree above) holds at
//     least gapSibling replied nodes, or that many nodes with a known ID
//     whatever their state: each of its replied nodes has at least K
//     nearer neighbours on its own side (silent ones are in its table
//     too), so none lists a node of the empty region among its nearest
//     neighbours, and such nodes are found only when a farther bucket
//     happens to be asked for. The empty region may hold nodes that
//     never answered, which would list the others; or
//   - nodes being spread evenly over the ID space, the region is expected
//     to hold at least gapExpect of them: most likely a cluster of nodes
//     that know one another and that no reply happened to list.
//
// The nodes that reliably hold a region's nodes are those of its sibling:
// the region is one whole bucket of theirs. So for each suspect region the
// gapAsk replied nodes closest to a random ID inside it are asked for the
// nodes nearest that ID. A region once asked about is not asked about
// again. In a zone crawl only regions of the zone count.
//
// Each group of nodes joined by listings (island) is judged on its own: a
// node of one network never lists a node of another, so where two
// networks are crawled together the nodes of one would hide the gaps of
// the other. fillGaps stays within the second pass's budget and reports
// whether it queued any query.
func (c *Crawler) fillGaps() bool {
	budget := c.passBudget()
	if budget < gapAsk {
		return false
	}
	if c.gapTarget == nil {
		c.gapTarget = map[int32]krpc.ID{}
		c.gapProbed = map[gapKey]struct{}{}
	}
	z := c.cfg.Zone
	known := c.allIDOrder()
	rootOf := make([]int32, len(known)) // the island root of each of known
	groups := map[int32][]int32{}       // island root -> its replied nodes, in ID order
	var roots []int32
	for j, i := range known {
		r := c.island(i)
		rootOf[j] = r
		if !c.nodes.at(i).replied {
			continue
		}
		if _, ok := groups[r]; !ok {
			roots = append(roots, r)
		}
		groups[r] = append(groups[r], i)
	}
	queued := 0
	for _, r := range roots {
		all := groups[r]
		zone := all
		if z.Bits > 0 {
			zone = slices.DeleteFunc(slices.Clone(all), func(i int32) bool { return !z.contains(c.nodes.at(i).id) })
		}
		if len(zone) <= gapSibling {
			continue // too few to tell a gap from chance
		}
		// The island's nodes with a known ID, whatever their state, in
		// the zone: the replied ones and those beside them.
		var near []int32
		for j, i := range known {
			if rootOf[j] == r && z.contains(c.nodes.at(i).id) {
				near = append(near, i)
			}
		}
		g := gapScan{c: c, all: all, island: r, budget: budget - queued,
			expectDepth: z.Bits + bits.Len(uint(len(zone)/gapExpect)) - 1}
		g.walk(zone, near, z.Bits)
		queued += g.queued
	}
	return queued > 0
}

// gapScan is one fillGaps search for suspect regions. It lives for one
// call of fillGaps, on the event loop.
type gapScan struct {
	c           *Crawler
	all         []int32 // the replied nodes of the island, in ID order
	island      int32   // the island's root
	expectDepth int     // regions down to this depth are expected to hold gapExpect nodes
	budget      int     // queries the scan may queue
	queued      int     // queries it has queued
}

// walk visits the subtree at depth d that holds replied nodes s (sorted,
// at least one) and known nodes k (sorted, s among them: every node of
// the island with a known ID, whatever its state), looking for suspect
// empty halves: those without a replied node. It goes down into a half
// that holds gapSibling replied nodes or known ones, or that is shallow
// enough to be expected to hold gapExpect.
func (g *gapScan) walk(s, k []int32, d int) {
	if d >= krpc.IDLen*8-1 {
		return
	}
	bitIs := func(i int32, one int) int { return g.c.nodes.at(i).id.Bit(d) - one }
	split, _ := slices.BinarySearchFunc(s, 1, bitIs)
	ksplit, _ := slices.BinarySearchFunc(k, 1, bitIs)
	lo, hi := s[:split], s[split:]
	klo, khi := k[:ksplit], k[ksplit:]
	for h, half := range [2][]int32{lo, hi} {
		other := [2][]int32{hi, lo}[h]
		khalf, kother := [2][]int32{klo, khi}[h], [2][]int32{khi, klo}[h]
		switch {
		case len(half) > 0:
			if len(half) >= gapSibling || d+1 < g.expectDepth || len(khalf) >= gapSibling {
				g.walk(half, khalf, d+1)
			}
		case len(other) >= gapSibling || d+1 <= g.expectDepth || len(kother) >= gapSibling:
			g.probe(g.c.nodes.at(other[0]).id, d)
		}
	}
}

// probe asks about the region at depth d+1 that is the sibling of the one
// holding id, unless it was asked about before or the budget is spent:
// the gapAsk replied nodes closest to a random target inside it, that are
// not already queued, are queued to be asked for the target.
func (g *gapScan) probe(id krpc.ID, d int) {
	c := g.c
	t := krpc.RandomIDAtDepth(id, d)
	key := regionOf(t, d+1)
	key.island = g.island
	if _, done := c.gapProbed[key]; done || g.queued+gapAsk > g.budget {
		return
	}
	c.gapProbed[key] = struct{}{}
	for _, i := range c.closestReplied(g.all, t, gapAsk) {
		n := c.nodes.at(i)
		if _, busy := c.gapTarget[i]; busy || n.state != stReplied {
			continue // already queued for something else
		}
		c.gapTarget[i] = t
		n.state = stQueued
		n.queries = 0
		c.q.push(i)
		g.queued++
	}
}

// regionOf returns the key of the region at depth that holds id.
func regionOf(id krpc.ID, depth int) gapKey {
	key := gapKey{depth: uint8(depth)}
	for i := range (depth + 7) / 8 {
		key.prefix[i] = id[i]
	}
	if r := depth % 8; r != 0 {
		key.prefix[depth/8] &^= 0xff >> r
	}
	return key
}

// secondPassBudget bounds the second pass: queries stop once they reach
// this many per node that replied (see passBudget for what counts).
const secondPassBudget = 1.97

// silentAllowance is how many queries to nodes that never answered, per
// node that replied, count in full against secondPassBudget (see
// passBudget).
const silentAllowance = 0.25

// passBudget returns how many more queries the crawl may send before it
// reaches secondPassBudget per node that replied. Queries to nodes that
// never answered count in full up to silentAllowance per node that
// replied, as on a network where a tenth or so of the contacts are
// silent, and not at all from twice that on (in part in between). On the
// live DHT about half the contacts listed never answer; counted in full,
// their queries would exhaust the budget in the first pass and leave
// nothing for the checks that find the answering nodes it missed (0.8%
// of them on a synthetic network with half the contacts silent). What
// they cost is bounded by the resend policy instead.
//
// On such a network an infohash crawl's second question to each node (a
// sample, or find_node after one), which it asks by design, does not
// count either: counted, it had spent the budget by the end of the first
// pass, and the crawl never checked. With half the contacts silent it
// found 99.43% to 99.63% of the reachable nodes so, 99.75% to 99.86%
// with its checks in 15 runs of 16 (docs/crawler.md). Where few contacts are silent the
// checks find next to nothing, and the crawl keeps the plain budget.
func (c *Crawler) passBudget() int {
	failed := 0
	for i := range c.nodes.len() {
		if n := c.nodes.at(i); n.state == stFailed {
			failed += int(n.queries)
		}
	}
	allowance := int(silentAllowance * float64(c.res.Replied))
	spent := c.res.Queries - min(failed, max(0, 2*(failed-allowance)))
	if c.cfg.Infohashes && failed >= 2*allowance {
		spent -= c.res.Replied
	}
	return int(secondPassBudget*float64(c.res.Replied)) - spent
}

// When the second pass stops (see secondPass and nextCheck). It asks at
// least checkPatience of the nodes it lined up in a row without a new
// node answering, and at least minPatience of them: enough to see a
// yield of one new node in a hundred checks, with odds of e^-3 of
// missing it. Where its checks and those of earlier crawls from the
// socket (Config.Learned) and of crawls beside it (Config.Share) number
// minPatience or more and found fewer than one node per minPatience, the
// least is learntPatience instead, a zone's share of it in a zone of a
// shared crawl (checkLeast); where the checks of those
// earlier crawls and crawls beside it alone number minPatience or more
// and found none, it is 0 (leastPatience). It then stops if it
// has found none, if that run has grown to gapFactor times the mean run
// that led to a new node before, or if at the yield so far the nodes left
// would find fewer than worthShare of the answering nodes found. Once it
// has asked checkWindow checks more than its patience, it also stops,
// with no such run, if at the recent yield they would (checksFaded).
const (
	checkPatience  = 0.1
	minPatience    = 300
	learntPatience = 20
	gapFactor      = 5
	worthShare     = 0.001
)

// secondPass starts, once, the checks: it lines up the replied nodes that
// have not yet listed their nearest neighbours, to be asked for them as
// far as the budget allows, those in the least covered neighbourhoods
// first, and reports whether it lined up any. nextCheck queues them one
// at a time when nothing else is waiting, so that the nodes their replies
// reveal are asked first.
//
// The checks find the nodes that no table happened to hand out. Where
// tables are complete (a clean network) they find almost none, and a
// crawl that leaves half its nodes to check, as a clean one does, would
// spend a third of its queries on them; on a network as dirty as the
// live one they find a new node every hundred queries or so, at an even
// pace through the pass. So the pass stops when its finds have stopped
// or become too rare to matter (the constants above). A run of five
// times the mean is exceeded by a steady yield with odds of e^-5, and a
// thousandth of the census is a fifth of the 0.5% a census may miss.
// The end is measured in queries: unlike Config.Idle, it does not depend
// on the rate.
func (c *Crawler) secondPass() bool {
	if c.passTwo {
		return false
	}
	c.passTwo = true
	budget := c.passBudget()
	if budget <= 0 {
		return false
	}
	var cands []int32
	for i := range c.nodes.len() {
		n := c.nodes.at(i)
		if n.state == stReplied && n.listed && !n.nbrs && !n.id.IsZero() {
			cands = append(cands, i)
		}
	}
	cands = c.leastCovered(cands, min(budget, len(cands)))
	for _, i := range cands {
		n := c.nodes.at(i)
		n.state = stQueued
		n.queries = 0
		n.nearest = true
	}
	c.checks = cands
	c.checkRun = int(checkPatience * float64(len(cands)))
	c.patience = c.leastPatience()
	return len(cands) > 0
}

// checkLeast returns the least run of checks without a new node after
// which the second pass may stop: minPatience, or learntPatience once the
// checks of this crawl, of earlier ones (Config.Learned) and of those
// beside it (Config.Share) number minPatience or more and found fewer
// than one node per minPatience. The checks of a shared crawl's zones
// are asked of one network, so that what they found is learned once for
// the crawl, as a lone crawl learns it, not once per zone.
func (c *Crawler) checkLeast() int {
	l := c.checksBefore().Add(Outcomes{Sent: c.res.Checks, Answered: c.checkFinds})
	if l.Sent >= minPatience && l.Answered*minPatience < l.Sent {
		return c.zoneShare(learntPatience) // the checks find next to nothing
	}
	return minPatience
}

// zoneShare returns n checks scaled down to the zone's share of the ID
// space, at least 1, where the crawl is a zone of a shared crawl
// (Config.Share); else n. Once the checks are known to find next to
// nothing, a crawl of the whole network asks learntPatience of them,
// and so should the zones of a shared crawl together: each of the 12
// zones of the 5,000-node shared test claimed after the first four
// asked its own 20, 240 queries, 4.3% of a lone crawl's, where a lone
// crawl asks 20 in all.
func (c *Crawler) zoneShare(n int) int {
	if c.cfg.Share == nil || c.cfg.Zone.Bits == 0 {
		return n
	}
	return max(1, n>>min(c.cfg.Zone.Bits, 31))
}

// leastPatience returns the second pass's patience: that of checkLeast,
// and at least a tenth of the nodes lined up (checkRun), unless the
// checks of earlier crawls (Config.Learned) and of the crawls beside
// this one (Config.Share) number minPatience or more and found no node
// at all. Then the run without a find that would end the pass has
// already been asked, as in a crawl that asked those checks itself
// and, having found nothing, stopped: the patience is 0 and the crawl
// asks none. The zones of a shared crawl claimed after its first ones
// each used to ask their 20 to 36 checks again, 240 to 430 queries in
// all on the 5,000-node shared test, where a lone crawl asks 300 to
// 413 in all.
func (c *Crawler) leastPatience() int {
	if before := c.checksBefore(); before.Sent >= minPatience && before.Answered == 0 {
		return 0
	}
	return max(c.checkLeast(), c.checkRun)
}

// checksBefore returns the checks of earlier crawls (Config.Learned) and
// of the crawls beside this one (Config.Share), as last heard.
func (c *Crawler) checksBefore() Outcomes { return c.cfg.Learned.Checks.Add(c.others.Checks) }

// nextCheck queues the second pass's next node and reports whether it
// did. Once a run of checks without a new node answering has grown past
// the pass's patience and the checks no longer pay, it leaves the rest:
// they go back to replied, counted in Result.ChecksLeft.
func (c *Crawler) nextCheck() bool {
	if len(c.checks) == 0 {
		return false
	}
	c.patience = c.leastPatience()
	if c.stale >= c.patience && !c.checksPay() || c.checksFaded() || c.poolDone() {
		for _, i := range c.checks {
			n := c.nodes.at(i)
			n.state = stReplied
			n.nearest = false
		}
		c.res.ChecksLeft += len(c.checks)
		c.checks = nil
		return false
	}
	c.q.push(c.checks[0])
	c.checks = c.checks[1:]
	c.stale++
	c.poolStale++
	c.res.Checks++
	c.recentAsk = c.recentAsk*(1-1.0/checkWindow) + 1
	c.recentFind *= 1 - 1.0/checkWindow
	return true
}

// checksPay reports whether the second pass's run of checks without a
// new node (c.stale) is still short against the runs that led to one
// before, and the checks left would, at the yield so far, find at least
// worthShare of the answering nodes found.
func (c *Crawler) checksPay() bool { return c.pays(c.checkFinds, c.res.Checks, c.stale) }

// pays is checksPay for f new nodes found in asked checks, the last
// stale of them without one.
func (c *Crawler) pays(f, asked, stale int) bool {
	if f == 0 || stale >= gapFactor*(asked-stale)/f {
		return false
	}
	return float64(f)*float64(len(c.checks)) >= worthShare*float64(c.res.Replied)*float64(asked)
}

// checkWindow is about how many of the latest checks give the recent
// yield by which checksFaded judges the checks left.
const checkWindow = 1000

// checksFaded reports whether, past the pass's patience and a window of
// checkWindow checks more, the checks left would at the recent yield find
// fewer than worthShare of the answering nodes found.
//
// The checks go to the least covered neighbourhoods first, so their yield
// falls as they go; on a network as dirty as the live one it never falls
// to nothing, and a run of checks without a new node as long as the
// patience (a tenth of those lined up) almost never comes. On the
// 100,000-node live-like network with everything on, the first 2,000
// checks found 6% to 7% new nodes and those past 6,000 about 0.3%: the
// pass asked all 23,000 it had lined up, 0.47 packets per answering node,
// for the 40 or so nodes of its last 15,000.
func (c *Crawler) checksFaded() bool {
	if c.res.Checks < c.patience+checkWindow {
		return false
	}
	yield := c.recentFind / max(c.recentAsk, 1)
	return yield*float64(len(c.checks)) < worthShare*float64(c.res.Replied)
}

// poolDone reports whether the checks of this crawl and of the crawls
// beside it (Config.Share), taken as one second pass, have run
// minPatience checks without a new node and no longer pay, by the rule
// of checksPay: a lone crawl of the whole network would stop there.
// Each of the first zones of a shared crawl, crawled at once, otherwise
// waited for a run of its own: where one of their checks found a node,
// they asked 601 to 974 checks in all on the 5,000-node shared test,
// where a lone crawl asks 300 to 443.
func (c *Crawler) poolDone() bool {
	if c.cfg.Share == nil || c.poolStale < minPatience {
		return false
	}
	return !c.pays(c.checkFinds+c.others.Checks.Answered, c.res.Checks+c.others.Checks.Sent, c.poolStale)
}

// leastCovered returns the k nodes of cands whose neighbourhoods have been
// least covered by nearest-neighbour replies. A node's neighbourhood is
// the largest subtree of the ID trie around it that holds at most K of the
// nodes found. If any node of it other than itself listed its nearest
// neighbours, that list held the whole neighbourhood and any node of it
// the crawl has not found (its table holds fewer than K nodes nearer).
// So a candidate's score is the number of such listings, and the lowest
// scores come first; a missed node sits in a neighbourhood whose score is
// 0. Ties go to the candidate whose nearest found neighbour shares the
// fewest leading ID bits with it, as a missed node leaves a gap beside
// its neighbours.
func (c *Crawler) leastCovered(cands []int32, k int) []int32 {
	const K = table.DefaultK
	byID := c.allIDOrder()
	// rank holds the score in the high byte and the closeness (the prefix
	// shared with the nearest found node, at most 160) in the low one.
	rank := make([]uint16, int(c.nodes.len()))
	var cpls [2 * K]int
	for j, i := range byID {
		id := c.nodes.at(i).id
		// In ID order the prefix shared with id shrinks with distance, so
		// the K-1 nodes sharing the most bits with it lie within K of it
		// on either side.
		lo, hi := max(0, j-K), min(len(byID), j+K+1)
		near := cpls[:0]
		for _, o := range byID[lo:hi] {
			if o != i {
				near = append(near, id.CommonPrefixLen(c.nodes.at(o).id))
			}
		}
		slices.SortFunc(near, func(a, b int) int { return b - a })
		// The neighbourhood: the nodes sharing more bits with id than the
		// K-th nearest does (all of them when fewer than K are found).
		depth := 0
		if len(near) >= K {
			depth = near[K-1] + 1
		}
		closeness := 0
		if len(near) > 0 {
			closeness = near[0]
		}
		score := 0
		for _, o := range byID[lo:hi] {
			if o != i && c.nodes.at(o).nbrs && id.CommonPrefixLen(c.nodes.at(o).id) >= depth {
				score++
			}
		}
		rank[i] = uint16(min(score, 255))<<8 | uint16(closeness)
	}
	slices.SortStableFunc(cands, func(a, b int32) int { return int(rank[a]) - int(rank[b]) })
	return cands[:k]
}
