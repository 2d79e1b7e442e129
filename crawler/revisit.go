package crawler

import (
	"context"
	"time"

	"github.com/lightdht/lightdht/krpc"
	"github.com/lightdht/lightdht/observe"
)

// Revisiting: a run that visits known nodes again and again instead of
// crawling, so that sessions (how long a node stays up) are measured
// finely without re-crawling the network. Each node is pinged, or asked
// for a BEP 51 sample where Config.Infohashes is set, the node supports
// it and its interval is over; the next visit comes after a quarter of
// the time the node has been in its present state (up or down), within
// [Config.RevisitMin, Config.RevisitMax]. A node that has been down for
// Config.RevisitGiveUp is dropped. Queries obey Rate, PerIPInterval,
// Timeout and Retries like a crawl's.

// Defaults of the revisit fields of Config.
const (
	DefaultRevisitMin    = time.Minute
	DefaultRevisitMax    = 30 * time.Minute
	DefaultRevisitGiveUp = 24 * time.Hour
)

// revisitSpacing divides the time a node has been up (or down) to give
// the wait before its next visit: a node up for 4 hours is visited again
// after an hour (RevisitMax permitting). Long-running nodes are the
// stable ones; a session's end is still known to within the wait.
const revisitSpacing = 4

// Known is a node to revisit (Config.Nodes), with what is known of it.
type Known struct {
	// Node is the node; its ID must not be zero.
	Node krpc.NodeInfo
	// Up reports whether the node was answering when last visited.
	Up bool
	// Since is when it entered that state: the start of its session, or
	// its first failed visit. Zero: now.
	Since time.Time
	// BEP51 reports that the node answered sample_infohashes before.
	BEP51 bool
}

// revisitState is a node's state in a revisit run, beside Crawler.nodes
// and owned by the event loop.
type revisitState struct {
	up     bool
	since  int64 // Unix ns
	visits int   // visits made
}

// revisitPhase sets up the nodes of Config.Nodes and returns the phase
// that revisits them. Every node's first visit is due at once.
func (c *Crawler) revisitPhase() *phase {
	now := c.cfg.Now()
	c.revisit = make([]revisitState, 0, len(c.cfg.Nodes))
	for _, k := range c.cfg.Nodes {
		key := keyOf(k.Node.Addr)
		if c.index.find(key, &c.nodes) >= 0 {
			continue
		}
		n := node{id: k.Node.ID, key: key, state: stQueued, introducer: noIntroducer, round: round{at: now.UnixNano()}}
		if k.BEP51 {
			n.bep51 = bep51Yes
		}
		idx := c.nodes.add(n)
		c.index.add(key, idx)
		since := k.Since
		if since.IsZero() || since.After(now) {
			since = now
		}
		c.revisit = append(c.revisit, revisitState{up: k.Up, since: since.UnixNano()})
		c.q.push(idx)
	}
	c.res.Discovered = int(c.nodes.len())
	return &phase{
		queue: &c.q,
		ip:    func(idx int32) [16]byte { return c.nodes.at(idx).key.ip() },
		send:  c.sendRevisit,
		done:  func() bool { return c.q.len() == 0 && c.inflight == 0 },
	}
}

// sendRevisit sends node idx its revisit query: a ping, or a
// sample_infohashes where it is due.
func (c *Crawler) sendRevisit(idx int32) {
	n := c.sending(idx)
	q := &krpc.Msg{Q: krpc.MethodPing, A: krpc.Args{ID: c.cfg.ID}}
	if c.cfg.Infohashes && n.bep51 == bep51Yes && c.cfg.Now().UnixNano() >= n.next {
		q.Q = krpc.MethodSampleInfohashes
		q.A.Target = krpc.RandomID()
	}
	method, resend, sent := q.Q, n.retry, c.cfg.Now().UnixNano()
	n.retry = false
	c.tr.QueryAsync(context.Background(), n.key.addrPort(), q, func(r krpc.Response, err error) {
		c.results <- result{idx: idx, method: method, resend: resend, sent: sent, resp: r, err: err}
	})
}

// handleRevisit processes the outcome of a revisit query: an answer ends
// the node's round, a timeout is resent as far as Config.Retries allows
// and then ends it; either way the node's visit is reported and its next
// one scheduled.
func (c *Crawler) handleRevisit(r result) {
	c.inflight--
	now := c.cfg.Now()
	n := c.nodes.at(r.idx)
	st := &c.revisit[r.idx]
	if r.resp.Msg == nil {
		if !c.timeout(r, now) {
			return // resent, or the run is ending
		}
		n.state = stFailed
		c.res.FailedVisits++
		if st.up {
			st.up, st.since = false, now.UnixNano()
		}
	} else {
		me := c.answered(r, now)
		m := r.resp.Msg
		switch {
		case r.method == krpc.MethodSampleInfohashes && m.Y == krpc.KindError && m.E != nil && m.E.Code == krpc.CodeMethodUnknown:
			n.bep51 = bep51No
		case r.method == krpc.MethodSampleInfohashes && m.Y == krpc.KindReply:
			c.sampled(n, me, m, now)
		}
		if m.Y == krpc.KindReply {
			for _, ni := range m.R.Nodes {
				c.record(observe.Sighting{Node: ni, Time: now, Source: observe.SourceReported, Method: r.method,
					Reporter: me, SecureID: secure(ni)})
			}
		}
		if !st.up {
			st.up, st.since = true, now.UnixNano()
		}
	}
	c.res.Visits++
	st.visits++
	c.emitVisit(n)
	n.queries = 0
	if c.cfg.RevisitRounds > 0 && st.visits >= c.cfg.RevisitRounds {
		return // visited as often as asked
	}
	in := time.Duration(now.UnixNano()-st.since) / revisitSpacing
	if !st.up && c.cfg.RevisitGiveUp > 0 && time.Duration(now.UnixNano()-st.since) >= c.cfg.RevisitGiveUp {
		c.res.GivenUp++
		return // down for too long: not visited again
	}
	// A node whose BEP 51 interval is not over is pinged (sendRevisit):
	// its visits keep to the schedule whatever the interval.
	wait := min(max(in, c.cfg.RevisitMin), c.cfg.RevisitMax)
	n.state = stQueued
	c.q.delay(r.idx, now.Add(wait).UnixNano())
}
