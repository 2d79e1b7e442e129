package crawler

import (
	"time"

	"github.com/lightdht/lightdht/krpc"
	"github.com/lightdht/lightdht/observe"
)

// Visits: what the crawl learnt of each node, for a Recorder that takes
// them (observe.VisitRecorder). A full crawl reports one visit per node
// whose ID it knows, at its end, when each node's part is over; a
// continuous crawl reports one per round (a reply, or the last timeout),
// and at its end one for each node whose round was cut short or that was
// never queried.

// round is what a node did in its current round: the whole of a full
// crawl, one revisit of a continuous one. It lives in node and is owned
// by the event loop.
type round struct {
	at       int64  // Unix ns of the last answer or timeout, or of discovery
	rttUs    uint32 // first answer's round-trip time, µs
	errCode  uint16 // code of the last KRPC error
	version  uint16 // index into Crawler.versions + 1; 0: none
	sent     uint8  // queries sent, resends included (saturating)
	timeouts uint8  // queries that timed out (saturating)
	answered bool   // a reply or a KRPC error came back
	gotReply bool   // a reply (not an error) came back
	readOnly bool   // an answer set BEP 43's "ro"
	emitted  bool   // a visit has been reported for the node (continuous)
}

// maxVersions bounds the distinct "v" strings a crawl interns; versions
// past it are not reported in visits.
const maxVersions = 1 << 12

// sentQuery counts a query in the node's round.
func (n *node) sentQuery() {
	if n.round.sent < 255 {
		n.round.sent++
	}
}

// timedOut counts a timeout in the node's round.
func (n *node) timedOut(now time.Time) {
	if n.round.timeouts < 255 {
		n.round.timeouts++
	}
	n.round.at = now.UnixNano()
}

// heardFrom takes an answer (reply or KRPC error) into the node's round.
func (c *Crawler) heardFrom(n *node, m *krpc.Msg, rtt time.Duration, now time.Time) {
	r := &n.round
	r.at = now.UnixNano()
	if !r.answered && rtt > 0 {
		r.rttUs = uint32(min(rtt.Microseconds(), 1<<32-1))
	}
	r.answered = true
	if m.Y == krpc.KindError {
		if m.E != nil {
			r.errCode = uint16(min(max(m.E.Code, 0), 1<<16-1))
		}
	} else {
		r.gotReply = true
	}
	r.readOnly = r.readOnly || m.RO
	if len(m.V) > 0 {
		r.version = c.internVersion(string(m.V))
	}
}

// internVersion returns v's index in c.versions plus one, adding it if
// there is room, or 0.
func (c *Crawler) internVersion(v string) uint16 {
	if i, ok := c.versionIdx[v]; ok {
		return i
	}
	if len(c.versions) >= maxVersions {
		return 0
	}
	c.versions = append(c.versions, v)
	i := uint16(len(c.versions))
	c.versionIdx[v] = i
	return i
}

// visit builds node n's visit from its round.
func (c *Crawler) visit(n *node) observe.Visit {
	r := &n.round
	v := observe.Visit{
		Node:       krpc.NodeInfo{ID: n.id, Addr: n.key.addrPort()},
		Time:       time.Unix(0, r.at),
		Queries:    int(r.sent),
		RTT:        time.Duration(r.rttUs) * time.Microsecond,
		ReadOnly:   r.readOnly,
		Discounted: n.discount,
	}
	if r.version > 0 {
		v.Version = c.versions[r.version-1]
	}
	switch {
	case r.answered && r.gotReply:
		v.Outcome = observe.OutcomeReplied
	case r.answered:
		v.Outcome, v.ErrorCode = observe.OutcomeError, int(r.errCode)
	case r.timeouts > 0:
		v.Outcome = observe.OutcomeTimeout
	default:
		// Never queried, or its query was cut off by the end of the
		// crawl before it could time out.
		v.Outcome, v.Skipped = observe.OutcomeNotQueried, observe.SkipUnreached
		if n.state == stSkipped {
			v.Skipped = n.skip
		}
	}
	switch n.bep51 {
	case bep51Yes:
		v.BEP51, v.Num, v.Interval = observe.BEP51Yes, int(n.num), int(n.interval)
	case bep51No:
		v.BEP51 = observe.BEP51No
	case bep51Silent, bep51Resample:
		v.BEP51 = observe.BEP51Silent
	}
	return v
}

// emitVisit reports node n's visit, if the Recorder takes visits and the
// node's ID is known, and starts its next round.
func (c *Crawler) emitVisit(n *node) {
	if c.visits != nil && !n.id.IsZero() {
		c.visits.RecordVisit(c.visit(n))
	}
	n.round = round{at: n.round.at, emitted: true}
}

// emitVisits reports, at the end of the crawl, the visit of every node
// that has not had one for its current round.
func (c *Crawler) emitVisits() {
	if c.visits == nil {
		return
	}
	for i := range c.nodes.len() {
		n := c.nodes.at(i)
		if n.round.sent == 0 && !n.round.answered && (n.round.emitted || c.revisit != nil) {
			// Nothing new since its last visit (continuous), or a node
			// of a revisit run whose next visit had not come.
			continue
		}
		c.emitVisit(n)
	}
}
