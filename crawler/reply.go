package crawler

import (
	"errors"
	"math"
	"time"

	"github.com/lightdht/lightdht/bep42"
	"github.com/lightdht/lightdht/krpc"
	"github.com/lightdht/lightdht/observe"
	"github.com/lightdht/lightdht/table"
)

// handle processes one query's outcome on the event loop: a get_peers of
// the peers phase, no reply, or a node's reply (a KRPC error included).
func (c *Crawler) handle(r result) {
	now := c.cfg.Now()
	c.pace.outcome(r, now)
	if len(c.held) > 0 && c.resendRule(r) == &c.resent {
		defer c.redeem() // the resend rule has one more outcome
	}
	if c.revisit != nil {
		c.handleRevisit(r)
		return
	}
	if r.method == krpc.MethodGetPeers {
		c.handlePeers(r)
		return
	}
	c.inflight--
	if r.resp.Msg == nil {
		c.noReply(r, now)
		return
	}
	delete(c.gapTarget, r.idx)
	me := c.answered(r, now)
	m := r.resp.Msg
	resample := false
	if n := c.nodes.at(r.idx); n.bep51 == bep51Unanswered && r.method != krpc.MethodSampleInfohashes {
		// It ignored sample_infohashes but answers find_node: a client
		// that drops unknown methods (aria2), or a sample lost on the way.
		// A node that takes more than half the timeout to answer may have
		// answered the sample too, too late: asked again, it would see
		// two samples within its interval, so it is not asked again.
		n.bep51 = bep51Silent
		c.san.sampleOther++
		if c.resamplePays(r.resp.RTT) {
			if c.cfg.Continuous {
				// Its next round asks for the sample once more: one
				// lost packet must not end the node's BEP 51 record for
				// the rest of a crawl that may run for days.
				n.bep51 = bep51Resample
			} else {
				resample = true
			}
		}
	} else if n.bep51 == bep51Resample && r.method == krpc.MethodSampleInfohashes {
		c.resampled.outcome(true) // the first sample was lost, not ignored
	}
	if m.Y == krpc.KindError {
		// A node that does not know sample_infohashes: ask it for nodes
		// the BEP 5 way.
		if r.method == krpc.MethodSampleInfohashes && m.E != nil && m.E.Code == krpc.CodeMethodUnknown {
			n := c.nodes.at(r.idx)
			n.bep51 = bep51No
			c.san.sampleOther++
			if !n.listed || c.cfg.Continuous {
				n.state = stQueued
				c.q.push(r.idx)
			}
		}
		return
	}
	c.listed(r, me, now)
	n := c.nodes.at(r.idx)
	if resample {
		// Ask for the sample once more, in case the first was lost.
		n.bep51 = bep51Resample
		n.state = stQueued
		c.q.push(r.idx)
	}
	if c.cfg.Infohashes && r.method == krpc.MethodFindNode && n.bep51 == bep51Unknown && !c.cfg.Continuous {
		// A bootstrap node, asked find_node while its ID was unknown:
		// now it can be asked for a sample.
		n.state = stQueued
		c.q.push(r.idx)
	}
	if r.method == krpc.MethodSampleInfohashes {
		c.sampled(n, me, m, now)
	}
	if c.cfg.Continuous {
		c.nextRound(r.idx, now)
	}
}

// nextRound ends the round of node idx of a continuous crawl, which
// answered in it, and queues the node for the next round at the revisit.
func (c *Crawler) nextRound(idx int32, now time.Time) {
	n := c.nodes.at(idx)
	c.emitVisit(n)
	at := now.Add(c.cfg.Revisit).UnixNano()
	if n.next > at {
		at = n.next // never sample before the node's BEP 51 interval
	}
	n.state = stQueued
	n.queries = 0
	c.q.delay(idx, at)
}

// noReply handles a query that got no reply: a timeout is recorded and
// resent as far as Config.Retries and resendPays allow; any other error
// means the transport closed, as the crawl ends.
func (c *Crawler) noReply(r result, now time.Time) {
	n := c.nodes.at(r.idx)
	if !c.timeout(r, now) {
		return
	}
	if n.state == stInFlight {
		n.state = stFailed
		if !n.replied {
			c.resolved(n, false)
		}
		if c.cfg.Continuous {
			c.emitVisit(n) // the round is over: the node is not asked again
		}
	}
	delete(c.gapTarget, r.idx)
}

// timeout takes in a query of the enumeration or a revisit that got no
// reply, and reports whether the node's query is still unresolved: it
// returns false when the transport closed (the crawl is ending: the node
// has failed) and when a resend is queued, as far as Config.Retries and
// resendPays allow; otherwise the timeout is recorded and the caller
// decides what the node's failure means.
//
// A sample_infohashes of the enumeration to a node whose BEP 51 support
// is unknown is not resent as such: its resend is a find_node (send),
// which a node that drops unknown methods without error 204 answers,
// and which a node that has gone costs no more than a resent sample
// would. This follow-up is sent even with Config.Retries at none, since
// it asks another question, but only while follow-ups pay, under the rule
// of resendPays applied to their own outcomes (Crawler.followed): while
// such nodes are found every sample that times out is followed up. (They
// are kept apart from resends, whose outcomes on a network of silent
// contacts would stop the follow-ups that find the nodes dropping the
// method.)
func (c *Crawler) timeout(r result, now time.Time) bool {
	n := c.nodes.at(r.idx)
	if !errors.Is(r.err, krpc.ErrTimeout) {
		n.state = stFailed // closed or cancelled: the crawl is ending
		return false
	}
	if p := c.resendRule(r); p != nil {
		p.outcome(false)
	}
	n.timedOut(now)
	ni := krpc.NodeInfo{ID: n.id, Addr: n.key.addrPort()}
	c.record(observe.Sighting{Node: ni, Time: now, Source: observe.SourceTimeout, Method: r.method})
	if c.resp != nil && !n.id.IsZero() {
		c.resp.table.Failed(ni)
	}
	if c.revisit == nil && !c.cfg.Continuous && r.method == krpc.MethodSampleInfohashes && n.bep51 == bep51Unknown && n.replied {
		// It has answered another query in this crawl (find_node, asked
		// first): it drops the method, or the sample was lost. It is
		// asked for the sample once more on the terms of resample in
		// handle; no find_node follows, as it has answered one.
		c.san.sampleOther++
		if c.resamplePays(time.Duration(n.round.rttUs) * time.Microsecond) {
			n.bep51, n.state = bep51Resample, stQueued
			c.q.push(r.idx)
		} else {
			n.bep51, n.state = bep51Silent, stReplied
		}
		return false
	}
	if c.revisit == nil && r.method == krpc.MethodSampleInfohashes && n.bep51 == bep51Resample {
		// The second sample was ignored too (resample): the node drops
		// the method. It has answered find_node; its query is resolved.
		// In a continuous crawl the round has no answer yet: the node
		// is asked find_node, as it will be from now on.
		c.resampled.outcome(false)
		n.bep51, n.state = bep51Silent, stReplied
		if c.cfg.Continuous {
			n.state = stQueued
			c.q.push(r.idx)
		}
		return false
	}
	followUp := c.revisit == nil && r.method == krpc.MethodSampleInfohashes && n.bep51 == bep51Unknown
	if followUp {
		n.bep51 = bep51Unanswered
	}
	if n.state != stInFlight {
		return true
	}
	switch {
	case followUp:
		return !c.resendPays(r.idx, &c.followed)
	case int(n.queries) > c.cfg.Retries:
		return true
	case c.resendPays(r.idx, &c.resent):
		return false
	case c.resent.held:
		c.held = append(c.held, r.idx) // its resend may be sent later (redeem)
	}
	return true
}

// answered marks the node of a reply (or KRPC error) as replied, learns
// its ID, records the sighting, and returns the node.
func (c *Crawler) answered(r result, now time.Time) krpc.NodeInfo {
	n := c.nodes.at(r.idx)
	m := r.resp.Msg
	if id := m.SenderID(); !id.IsZero() {
		if n.id != id {
			n.id = id
			c.idChanges++
		}
		if c.cfg.Zone.contains(id) {
			n.inZone = true
			if !n.replied {
				c.zoneFound++
			}
		}
		if z := c.cfg.Zone; z.Bits > 0 {
			c.bestCPL = max(c.bestCPL, id.CommonPrefixLen(z.Prefix))
		}
	}
	if p := c.resendRule(r); p != nil {
		p.outcome(true)
	}
	if !n.replied {
		if c.passTwo {
			c.checkFinds++ // the checks still find nodes (nextCheck)
			c.recentFind++
		}
		c.stale = 0
		c.poolStale = 0
		c.res.Replied++
		c.resolved(n, true)
	}
	n.replied = true
	n.state = stReplied
	c.heardFrom(n, m, r.resp.RTT, now)
	me := krpc.NodeInfo{ID: n.id, Addr: n.key.addrPort()}
	c.record(observe.Sighting{Node: me, Time: now, Source: observe.SourceReply, Method: r.method,
		Version: string(m.V), RTT: r.resp.RTT, ReadOnly: m.RO, SecureID: secure(me)})
	if c.resp != nil && !n.id.IsZero() {
		c.resp.table.Update(me, table.Replied)
	}
	return me
}

// listed records and discovers the nodes that a reply from me lists, of
// me's address family (BEP 32).
func (c *Crawler) listed(r result, me krpc.NodeInfo, now time.Time) {
	n := c.nodes.at(r.idx)
	n.listed = true
	if r.nearest {
		n.nbrs = true
	}
	m := r.resp.Msg
	nodes := m.R.Nodes
	if me.Addr.Addr().Is6() {
		nodes = m.R.Nodes6
	}
	imp := implausible(nodes, r.target, me.ID)
	c.warmed += c.index.warm(nodes, &c.nodes)
	var fresh []int32 // for an implausible reply: its contacts new and queued
	for _, ni := range nodes {
		c.record(observe.Sighting{Node: ni, Time: now, Source: observe.SourceReported, Method: r.method, Reporter: me, SecureID: secure(ni)})
		idx, isNew := c.discover(ni, false)
		if idx >= 0 {
			c.join(r.idx, idx)
		}
		switch {
		case isNew:
			m := c.nodes.at(idx)
			m.local, m.introducer = r.nearest, r.idx
			if imp && m.state == stQueued {
				fresh = append(fresh, idx)
			}
		case idx >= 0:
			c.corroborate(idx, r.idx)
		}
	}
	if imp {
		c.flagImplausible(r.idx, fresh)
	}
}

// sampled takes in a BEP 51 reply from node n (me): the node's interval,
// and the sample, which goes to the Recorder.
func (c *Crawler) sampled(n *node, me krpc.NodeInfo, m *krpc.Msg, now time.Time) {
	if n.bep51 != bep51Yes {
		c.san.sampleYes++
	}
	n.bep51 = bep51Yes
	n.num, n.interval = uint32(max(m.R.Num, 0)), uint32(max(m.R.Interval, 0))
	n.next = now.Add(time.Duration(m.R.Interval) * time.Second).UnixNano()
	c.res.Samples++
	for _, ih := range m.R.Samples {
		c.ihs[ih] = struct{}{}
	}
	if c.cfg.Recorder != nil {
		c.cfg.Recorder.RecordSample(me, now, m.R.Num, m.R.Interval, m.R.Samples)
	}
}

// Resend policy (see resendPays).
const (
	resendLearn = 100  // resends whose outcome is known before any is skipped
	resendWorth = 0.02 // share of resends answered that keeps every resend
	resendProbe = 10   // otherwise one timed-out query in this many is resent

	// resendHeldProbe is resendProbe for the crawl's plain resends,
	// whose skipped timeouts are held back, not dropped (see
	// resendPays): a skip costs a node only if loss is never noticed, so
	// the probes need only notice it, and on the live-like network one
	// in ten spent 0.11 packets per answering node on nodes that had
	// gone (5,500 of 55,000 timeouts, none answered).
	resendHeldProbe = 50
	// resendWindow is how many answers, at the rule's line, the recent
	// outcomes of held resends hold (the window is resendWindow/worth
	// outcomes: 200 at 2%): loss that begins in the middle of a long
	// crawl shows within that many probes, where in the count of all
	// outcomes since the start it would take as many probes as there
	// had been before. Four answers where one is expected at a quarter
	// of the line happen by chance about once in fifty windows.
	resendWindow = 4
	// resendRedeem is how many held timeouts are resent for each
	// outcome of a resend while resends pay: they follow the evidence,
	// so that a window that pays by chance resends a few hundred, not
	// every timeout held since the start.
	resendRedeem = 2

	// followWorth is resendWorth for follow-ups: a follow-up that is not
	// sent loses the node if it drops unknown methods, and while follow-ups
	// are one in resendProbe sampleFirst may put samples first, so that
	// every such node asked a sample is lost but one in ten. At 2% the
	// live-like infohash crawls sat near the line (8 of 303 follow-ups
	// answered in one), and one in some twenty recorded about 120 such
	// nodes as timed out, 0.3% of the census; a census may miss 0.5% in
	// all, and the checks are asked down to a yield of about 0.4%.
	followWorth = 0.005
)

// resendPays reports whether a query that timed out is resent. Resends
// are what carries a crawl through packet loss, but a resend to a node
// that has gone is a wasted packet, and on the DHT most nodes that time
// out have gone. So the crawl counts the resends that are answered: until
// the outcome of resendLearn resends is known, and while at least
// resendWorth of those known were answered, every timed-out query is
// resent; otherwise one in resendProbe is, so that loss appearing later
// is noticed. p is the rule of the kind: c.resent for resends, c.followed
// for the find_node that follows a timed-out sample (see timeout), whose
// line is followWorth instead; both count in Result.Resends.
//
// The plain resends of a crawl that ends (not continuous, not a revisit
// run) go further, as c.resent holds them (payRule.held): the first
// resendLearn are sent while their outcomes are unknown, and the
// timeouts that come meanwhile wait; past those, the rule judges the
// recent outcomes (resendWindow), and one in resendHeldProbe is resent
// while they do not pay. A timeout not resent is held: its node has
// failed, but should resends come to pay (loss has begun, or the first
// resends showed it from the start), the held ones are resent, the
// latest first, as outcomes come (redeem). On a network whose nodes
// that time out have gone the crawl so spends some 100 resends and one
// timeout in 50, and on a lossy one it loses none of the nodes whose
// first query was lost.
//
// resendPays queues node idx's query again if p's rule resends it, and
// reports whether it did.
func (c *Crawler) resendPays(idx int32, p *payRule) bool {
	if !p.pays() {
		return false
	}
	c.resend(idx, p)
	return true
}

// resend queues the timed-out query of node idx again, as a resend
// counted in p's rule.
func (c *Crawler) resend(idx int32, p *payRule) {
	n := c.nodes.at(idx)
	n.state, n.retry = stQueued, true
	c.q.push(idx)
	c.resends++
	p.pending++
}

// redeem resends up to resendRedeem held timeouts (payRule.held), the
// latest first, while c.resent pays. A held node that has answered or
// been queried since is passed over.
func (c *Crawler) redeem() {
	for sent := 0; sent < resendRedeem && len(c.held) > 0 && c.resent.paying(); {
		idx := c.held[len(c.held)-1]
		c.held = c.held[:len(c.held)-1]
		n := c.nodes.at(idx)
		if n.state != stFailed {
			continue
		}
		if !n.replied {
			c.unresolved(n)
		}
		c.resend(idx, &c.resent)
		c.res.Redeemed++
		sent++
	}
}

// resendRule returns the pay rule whose outcomes r's outcome counts in: a
// follow-up's, a resend's, or nil for a first query.
func (c *Crawler) resendRule(r result) *payRule {
	switch {
	case r.followUp:
		return &c.followed
	case r.resend:
		return &c.resent
	}
	return nil
}

// resamplePays reports whether a node that answered another query in
// rtt but not sample_infohashes is asked for the sample once more: not if
// it takes more than half the timeout to answer (it may have answered the
// sample too late to be heard, and would see two within its interval),
// otherwise by c.resampled's rule.
func (c *Crawler) resamplePays(rtt time.Duration) bool {
	return rtt < c.cfg.Timeout/2 && c.resampled.pays()
}

// payRule keeps the outcomes of one kind of second query and decides, by
// the rule of resendPays, whether the next is sent. The same rule decides
// the resample of a full crawl: a node whose sample_infohashes timed out
// but which answered the find_node that followed is asked for the sample
// once more, in case the first was lost (on a lossy link a BEP 51 node
// would otherwise go unharvested), while at least resendWorth of the
// resamples whose outcome is known were answered; where they go
// unanswered (the nodes drop the method), one in resendProbe is sent.
// It belongs to the crawl's event loop.
type payRule struct {
	done     int     // outcomes known: answered or timed out
	answered int     // of those, answered
	skipped  int     // queries not sent
	worth    float64 // the share answered that keeps every query: resendWorth, or followWorth
	pending  int     // queries sent whose outcome is not known

	// A held rule (c.resent of a crawl that ends; see resendPays):
	// recent and recentAnswered are its outcomes, each weighing less by
	// a factor of 1 - worth/resendWindow as each new one comes.
	held                   bool
	recent, recentAnswered float64
}

// Learned is what a crawl learned that the next crawl from the same
// socket may start from (Config.Learned): the outcomes of its second
// queries of each kind, and of its checks.
type Learned struct {
	Resends   Outcomes // queries resent after a timeout
	FollowUps Outcomes // find_node sent for a timed-out sample_infohashes
	Resamples Outcomes // sample_infohashes sent again to nodes that answered the follow-up
	// Checks counts the second pass's checks, and as answered the new
	// nodes that answered while they ran (coverage.go: secondPass).
	Checks Outcomes
}

// Outcomes counts the queries of one kind whose outcome is known.
type Outcomes struct {
	Sent, Answered int
}

// learnedRule returns the payRule that starts from o, scaled down to
// resendLearn outcomes if it holds more.
func learnedRule(o Outcomes) payRule {
	o = o.scaled(resendLearn)
	return payRule{done: o.Sent, answered: o.Answered, worth: resendWorth,
		recent: float64(o.Sent), recentAnswered: float64(o.Answered)}
}

// scaled returns o scaled down to n sent if it holds more, so that what
// was learned long ago weighs no more than n new outcomes.
func (o Outcomes) scaled(n int) Outcomes {
	if o.Sent <= n {
		return o
	}
	return Outcomes{Sent: n, Answered: int(math.Round(float64(o.Answered) * float64(n) / float64(o.Sent)))}
}

// Add returns the sum of o and p.
func (o Outcomes) Add(p Outcomes) Outcomes {
	return Outcomes{Sent: o.Sent + p.Sent, Answered: o.Answered + p.Answered}
}

// sub returns o less p.
func (o Outcomes) sub(p Outcomes) Outcomes {
	return Outcomes{Sent: o.Sent - p.Sent, Answered: o.Answered - p.Answered}
}

// Add returns the sum of l and m, kind by kind: what two crawls learned.
func (l Learned) Add(m Learned) Learned {
	return Learned{Resends: l.Resends.Add(m.Resends), FollowUps: l.FollowUps.Add(m.FollowUps),
		Resamples: l.Resamples.Add(m.Resamples), Checks: l.Checks.Add(m.Checks)}
}

// scaled returns l with each kind of second query scaled down to
// resendLearn outcomes (learnedRule); the checks are left as they are.
func (l Learned) scaled() Learned {
	return Learned{Resends: l.Resends.scaled(resendLearn), FollowUps: l.FollowUps.scaled(resendLearn),
		Resamples: l.Resamples.scaled(resendLearn), Checks: l.Checks}
}

// learned returns what the crawl has learned itself, Config.Learned and
// what Config.Share brought left out (Result.Learned).
func (c *Crawler) learned() Learned {
	return Learned{
		Resends:   c.resent.outcomes().sub(c.priors.Resends),
		FollowUps: c.followed.outcomes().sub(c.priors.FollowUps),
		Resamples: c.resampled.outcomes().sub(c.priors.Resamples),
		Checks:    Outcomes{Sent: c.res.Checks, Answered: c.checkFinds},
	}
}

// share passes what the crawl has learned so far to Config.Share, and
// takes in what the crawls beside it have learned: each rule then starts
// from Config.Learned plus theirs, scaled as Config.Learned is, and the
// second pass's patience counts their checks (checkLeast). The loop
// calls it after each outcome.
func (c *Crawler) share() {
	if c.cfg.Share == nil {
		return
	}
	others := c.cfg.Share(c.learned())
	if others == c.others {
		return
	}
	if others.Checks.Answered > c.others.Checks.Answered {
		c.poolStale = 0 // a check beside this crawl found a node
	} else {
		c.poolStale += max(0, others.Checks.Sent-c.others.Checks.Sent)
	}
	c.others = others
	priors := c.cfg.Learned.Add(others).scaled()
	c.resent.reprior(c.priors.Resends, priors.Resends)
	c.followed.reprior(c.priors.FollowUps, priors.FollowUps)
	c.resampled.reprior(c.priors.Resamples, priors.Resamples)
	c.priors = priors
}

// reprior replaces the outcomes p started from, from, by to, keeping its
// own. The change counts as recent.
func (p *payRule) reprior(from, to Outcomes) {
	p.done += to.Sent - from.Sent
	p.answered += to.Answered - from.Answered
	p.recent = max(0, p.recent+float64(to.Sent-from.Sent))
	p.recentAnswered = max(0, p.recentAnswered+float64(to.Answered-from.Answered))
}

// outcome takes in the outcome of one of p's queries.
func (p *payRule) outcome(answered bool) {
	p.done++
	p.pending = max(0, p.pending-1)
	a := 0.0
	if answered {
		p.answered++
		a = 1
	}
	keep := 1 - p.worth/resendWindow
	p.recent = p.recent*keep + 1
	p.recentAnswered = p.recentAnswered*keep + a
}

// withWorth returns p with the share answered that keeps every query
// set to worth.
func (p payRule) withWorth(worth float64) payRule {
	p.worth = worth
	return p
}

// holding returns p as a held rule (see resendPays) if held is true.
func (p payRule) holding(held bool) payRule {
	p.held = held
	return p
}

// outcomes returns what p has learned.
func (p payRule) outcomes() Outcomes { return Outcomes{Sent: p.done, Answered: p.answered} }

// paying reports whether the queries of the kind are all being sent (as
// opposed to one in resendProbe); it changes nothing.
func (p *payRule) paying() bool {
	switch {
	case p.done < resendLearn:
		return !p.held || p.done+p.pending < resendLearn
	case p.held:
		return p.recentAnswered >= p.worth*p.recent
	}
	return float64(p.answered) >= p.worth*float64(p.done)
}

// pays reports whether the next query of the kind is sent.
func (p *payRule) pays() bool {
	if p.paying() {
		return true
	}
	p.skipped++
	probe := resendProbe
	if p.held {
		probe = resendHeldProbe
	}
	return p.skipped%probe == 0
}

// secure reports whether ni's ID is acceptable for its IP under BEP 42.
func secure(ni krpc.NodeInfo) bool { return bep42.Acceptable(ni.ID, ni.Addr.Addr()) }

// record passes a sighting to the Recorder, if there is one.
func (c *Crawler) record(s observe.Sighting) {
	// A node is recorded only once its ID is known: a bootstrap address
	// that timed out before it told us would otherwise stand in the
	// database as the all-zero ID, on as many IPs as there were such
	// addresses.
	if c.cfg.Recorder != nil && !s.Node.ID.IsZero() {
		c.cfg.Recorder.Observe(s)
	}
}
