package crawler

import (
	"math"

	"github.com/lightdht/lightdht/krpc"
	"github.com/lightdht/lightdht/observe"
)

// Sanitizing: contacts cost packets in proportion to the evidence that
// they are real. On the live DHT about half of the contacts listed never
// answer, and some nodes list made-up contacts next to any target
// (routing-table poisoning). Three rules, all recorded in the result and
// in the visits (observe.Visit.Discounted, observe.SkipDiscounted):
//
//   - Implausible replies. A network of 2^32 nodes, far more than the DHT
//     has, holds a node sharing implausibleBits leading bits with a given
//     target with probability 2^-8; three such nodes, about one chance in
//     ten million. A reply that lists three or more contacts that close
//     to the query's target (the reporter itself left out) is made up. Its
//     first new contact is queried as a probe and the others wait; if the
//     probe answers, the reporter was honest after all (a real cluster of
//     IDs) and they are queried; if not, the reporter is discounted
//     (observe.DiscountImplausible).
//   - Dead contacts. Each contact remembers the node that first listed it
//     (its introducer). A reporter whose introduced contacts answered so
//     rarely that, at the most the crawl's outcomes allow the share of
//     silent contacts to be (silentBound), chance would give so few
//     answers less than once in deadOdds is discounted
//     (observe.DiscountDeadContacts).
//   - Corroboration. A contact introduced by a discounted reporter is not
//     queried (observe.SkipDiscounted) unless another node lists it too.
//
// And in an infohash crawl, the question a contact is asked first
// depends on what the crawl has seen (sampleFirst). sample_infohashes
// first costs one packet for a BEP 51 node, two for another answering
// node (its error 204 or its silence, then find_node), and for a silent
// one the sample plus the find_node that follows its timeout, as long as
// those follow-ups pay (resendPays with Crawler.followed: nodes that
// drop unknown methods answer them). find_node first costs two for every
// answering node and one for a silent one. Per node, sample-first is cheaper by the BEP 51
// share of contacts less the silent share times the share of timed-out
// samples followed up; the cheaper order for the shares measured is
// used.

// Sanitizing constants.
const (
	// implausibleBits: a contact sharing this many leading bits with a
	// query's target is implausibly close (see above).
	implausibleBits = 40
	// implausibleCount: this many such contacts in one reply make it
	// made up.
	implausibleCount = 3
	// deadOdds: a reporter is discounted for dead contacts when chance
	// would explain its contacts' answers less than once in this many.
	deadOdds = 1e6
	// sanitizeLearn: contacts resolved before the crawl's silent share
	// is trusted, for dead contacts and for sampleFirst.
	sanitizeLearn = 200
	// sampleLearn: sample_infohashes outcomes known before sampleFirst
	// trusts the BEP 51 share.
	sampleLearn = 50
)

// noIntroducer is the introducer of a node no reply listed first: a
// bootstrap address, or a querier heard.
const noIntroducer = -1

// sanitizer is the crawl's evidence about its contacts. Owned by the
// event loop.
type sanitizer struct {
	replied, failed int // nodes resolved: answered, never answered
	queried         int // nodes queried, resolved or not
	// sample_infohashes outcomes of nodes asked: a sample (BEP 51), an
	// error 204, or ignored.
	sampleYes, sampleOther int
}

// silentBound returns an upper bound of the share of contacts that never
// answer, counting those queried and not yet resolved as silent, and
// whether enough are resolved to trust it. An answering contact resolves
// within its round trip, a silent one only once its timeouts have run,
// so the share among those resolved so far runs low while the crawl is
// under way: at a tenth of the contacts silent it measured
// one to two percent in the middle of a crawl, and at that share
// reporters whose contacts were silent at the network's rate were
// discounted as listing dead contacts. The rule that discounts uses the
// bound, so that chance is judged at the most the network can be silent,
// and so does sampleFirst.
func (s *sanitizer) silentBound() (float64, bool) {
	n := s.replied + s.failed
	if n < sanitizeLearn {
		return 0, false
	}
	pending := max(0, s.queried-n)
	return float64(s.failed+pending) / float64(n+pending), true
}

// sampleFirst reports whether a node that has not answered yet is asked
// sample_infohashes first (see above). Until the shares are known it is.
//
// The silent share it judges at is the upper bound (silentBound), not
// the share among the contacts resolved so far: a silent contact asked
// for a sample resolves only after the sample's timeout, its follow-up's
// and that one's resend, so while samples go first the resolved share
// reads lower the longer they do, and a crawl that began with them kept
// them. On the live-like network that happened in about one infohash
// crawl in eight: the share read 0.23, then 0.13 and 0.09 against a
// real 0.53, and the crawl sent some 10,000 follow-ups more than the
// others (3.22 packets per answering node against 3.06).
func (c *Crawler) sampleFirst() bool {
	s := &c.san
	silent, ok := s.silentBound()
	if !ok || s.sampleYes+s.sampleOther < sampleLearn {
		return true
	}
	bep51 := (1 - silent) * float64(s.sampleYes) / float64(s.sampleYes+s.sampleOther)
	followUp := 1.0 // the share of timed-out samples followed by a find_node
	if !c.followed.paying() {
		followUp = 1.0 / resendProbe
	}
	return bep51 >= silent*followUp
}

// implausible reports whether a reply from reporter to a query for
// target lists implausibleCount or more contacts implausibly close to
// target.
func implausible(nodes []krpc.NodeInfo, target, reporter krpc.ID) bool {
	close := 0
	for _, ni := range nodes {
		if ni.ID != reporter && ni.ID.CommonPrefixLen(target) >= implausibleBits {
			close++
		}
	}
	return close >= implausibleCount
}

// discounted reports whether node n is a contact not to query: its
// introducer is discounted and no other node has listed it.
func (c *Crawler) discounted(n *node) bool {
	return n.introducer != noIntroducer && !n.corroborated && c.nodes.at(n.introducer).discount != observe.DiscountNone
}

// skipDiscounted reports whether node idx, next in the enumeration's
// queue, is dropped instead of queried: it waits for a probe (park), its
// entry is stale (a parked node queued again has two), or it is
// discounted, which it marks. dispatch calls it before the node's query
// takes a place in the limits.
func (c *Crawler) skipDiscounted(idx int32) bool {
	n := c.nodes.at(idx)
	switch {
	case n.state != stQueued:
		return true
	case n.queried || !c.discounted(n):
		return false
	}
	c.park(idx)
	return true
}

// corroborate takes in that node idx, already known, was listed by
// reporter: if it was introduced by another node, it is corroborated, and
// if it waits as discounted it is queued after all.
func (c *Crawler) corroborate(idx, reporter int32) {
	n := c.nodes.at(idx)
	if n.introducer == reporter || n.introducer == noIntroducer || n.corroborated {
		return
	}
	if c.nodes.at(reporter).discount != observe.DiscountNone {
		return // one discounted node does not vouch for another's contact
	}
	n.corroborated = true
	c.unpark(idx)
}

// flagImplausible takes in an implausible reply from reporter that
// introduced the nodes fresh: the first is queried as a probe, the
// others wait for its outcome (park). A reporter whose probe already
// answered is trusted, and one already discounted gets no new probe.
func (c *Crawler) flagImplausible(reporter int32, fresh []int32) {
	c.res.Implausible++
	r := c.nodes.at(reporter)
	if r.cleared || len(fresh) == 0 {
		return
	}
	probe := r.discount == observe.DiscountNone && !r.probing
	if probe {
		r.probing = true
		c.nodes.at(fresh[0]).probe = true
		fresh = fresh[1:]
	}
	for _, idx := range fresh {
		c.park(idx)
	}
}

// park takes a contact out of the queue to wait, as discounted, for its
// introducer's probe, or for good (skipDiscounted); corroborate or a
// probe that answers queues it again (unpark).
func (c *Crawler) park(idx int32) {
	n := c.nodes.at(idx)
	if n.state == stQueued && !n.queried {
		n.state, n.skip = stSkipped, observe.SkipDiscounted
		c.res.Discounted++
	}
}

// unpark queues node idx if it waits as discounted (park).
func (c *Crawler) unpark(idx int32) {
	n := c.nodes.at(idx)
	if n.state == stSkipped && n.skip == observe.SkipDiscounted {
		n.state, n.skip = stQueued, observe.SkipNone
		c.res.Discounted--
		c.q.push(idx)
	}
}

// probed takes in the outcome of a probe of an implausible reply: an
// answer clears its introducer and queues the contacts that waited for
// it; no answer discounts the introducer.
func (c *Crawler) probed(n *node, answered bool) {
	n.probe = false
	r := c.nodes.at(n.introducer)
	r.probing = false
	if !answered {
		c.discount(n.introducer, observe.DiscountImplausible)
		return
	}
	r.cleared = true
	if r.discount != observe.DiscountNone {
		return // discounted meanwhile for dead contacts
	}
	// A walk of every node, once per reporter cleared: rare, as honest
	// replies are almost never implausible.
	for i := range c.nodes.len() {
		if c.nodes.at(i).introducer == n.introducer {
			c.unpark(i)
		}
	}
}

// discount discounts reporter for reason, once.
func (c *Crawler) discount(reporter int32, reason observe.Discount) {
	r := c.nodes.at(reporter)
	if r.discount != observe.DiscountNone || r.cleared && reason == observe.DiscountImplausible {
		return
	}
	r.discount = reason
	c.res.DiscountedReporters++
}

// resolved takes in that node n's query is over: it answered, or it
// never will (failed). It counts toward the crawl's silent share and
// toward its introducer's record, which may discount the introducer; a
// probe's outcome decides its reporter's.
func (c *Crawler) resolved(n *node, answered bool) {
	if answered {
		c.san.replied++
	} else {
		c.san.failed++
	}
	if n.introducer == noIntroducer {
		return
	}
	if n.probe {
		c.probed(n, answered)
	}
	r := c.nodes.at(n.introducer)
	if answered {
		r.introAnswered = min(r.introAnswered+1, math.MaxUint16)
		return
	}
	r.introFailed = min(r.introFailed+1, math.MaxUint16)
	if r.discount == observe.DiscountNone && c.deadContacts(int(r.introAnswered), int(r.introFailed)) {
		c.discount(n.introducer, observe.DiscountDeadContacts)
	}
}

// unresolved takes back the failure resolved recorded for node n, whose
// timed-out query is resent after all (redeem): whatever it answers is
// then counted afresh. A discount the failure helped cause stands, as it
// was made on the evidence of the time.
func (c *Crawler) unresolved(n *node) {
	c.san.failed = max(0, c.san.failed-1)
	if n.introducer != noIntroducer {
		r := c.nodes.at(n.introducer)
		if r.introFailed > 0 && r.introFailed < math.MaxUint16 {
			r.introFailed--
		}
	}
}

// deadContacts reports whether a reporter whose introduced contacts gave
// answered answers and failed failures is discounted: whether, with each
// contact answering at the lowest rate the crawl's outcomes allow
// (silentBound), so few answers would come less than once in deadOdds.
func (c *Crawler) deadContacts(answered, failed int) bool {
	silent, ok := c.san.silentBound()
	if !ok || silent >= 1 {
		return false
	}
	n := answered + failed
	p := 1 - silent
	if float64(answered) >= p*float64(n)/2 {
		return false // not far below the crawl's rate: no test needed
	}
	// log P(X <= answered) for X ~ Binomial(n, p), summed in log space.
	logTail := math.Inf(-1)
	for k := 0; k <= answered; k++ {
		lc := lchoose(n, k) + float64(k)*math.Log(p) + float64(n-k)*math.Log1p(-p)
		logTail = logAdd(logTail, lc)
	}
	return logTail < -math.Log(deadOdds)
}

// lchoose returns log C(n, k).
func lchoose(n, k int) float64 {
	a, _ := math.Lgamma(float64(n + 1))
	b, _ := math.Lgamma(float64(k + 1))
	d, _ := math.Lgamma(float64(n - k + 1))
	return a - b - d
}

// logAdd returns log(e^a + e^b).
func logAdd(a, b float64) float64 {
	if math.IsInf(a, -1) {
		return b
	}
	if b > a {
		a, b = b, a
	}
	return a + math.Log1p(math.Exp(b-a))
}
