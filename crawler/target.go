package crawler

import (
	"context"
	"math/bits"
	"math/rand/v2"

	"github.com/lightdht/lightdht/krpc"
	"github.com/lightdht/lightdht/table"
)

// target returns the find_node / sample_infohashes target for a node.
// Half the time it is the node's own ID with the last bit flipped, so the
// reply lists the node's nearest neighbours; otherwise a random ID sharing
// exactly d leading bits with the node's, for d drawn uniformly below the
// estimated depth of routing tables, so the reply lists one of its farther
// buckets. Nearest neighbours alone keep a crawl inside clusters of mutual
// neighbours; random buckets alone leave nodes that few tables hold. With
// both, a node is missed only if none of its K (table.DefaultK) nearest
// neighbours was asked for neighbours (1 in 2^K) and no farther bucket
// listed it. For a node whose ID is unknown (a bootstrap address) the
// target is random, or inside the zone.
func (c *Crawler) target(n *node) (t krpc.ID, nearest bool) {
	z := c.cfg.Zone
	switch {
	case n.id.IsZero() && z.Bits > 0, z.Bits > 0 && !z.contains(n.id):
		return c.zoneTarget(), false // on the way to the zone
	case n.id.IsZero():
		return krpc.RandomID(), false
	case !n.nearest:
		if d := c.forcedDepth(); d >= 0 {
			return krpc.RandomIDAtDepth(n.id, d), false
		}
	}
	switch {
	case n.nbrs && !n.nearest:
		// It has listed its nearest neighbours already (a second query:
		// the sample after find_node): a farther bucket adds more.
	case n.nearest || !n.local:
		t := n.id
		t[krpc.IDLen-1] ^= 1
		return t, true
	}
	// Inside a zone, only buckets inside it.
	lo := z.Bits
	return krpc.RandomIDAtDepth(n.id, lo+rand.IntN(max(1, c.tableDepth()-lo))), false
}

// minPerDepth is how many farther-bucket queries each depth gets before
// targets are left to chance, so that even a small network is crossed at
// every level (a crawl that never asks for a depth-0 bucket never leaves
// the half of the ID space it started in).
const minPerDepth = 3

// forcedDepth returns a depth that has had fewer than minPerDepth queries,
// shallowest first, counting this one, or -1 when every depth has had
// its share.
func (c *Crawler) forcedDepth() int {
	lo := c.cfg.Zone.Bits
	for d := lo; d < c.tableDepth() && d < len(c.perDepth); d++ {
		if c.perDepth[d] < minPerDepth {
			c.perDepth[d]++
			return d
		}
	}
	return -1
}

// tableDepth estimates how deep routing tables reach in a network of the
// size found so far: log2(discovered/K), plus one.
func (c *Crawler) tableDepth() int {
	return bits.Len(uint(c.res.Discovered/table.DefaultK)) + 1
}

// send sends node idx its query of the enumeration: find_node, or with
// Config.Infohashes sample_infohashes where BEP 51 may work, for the
// target of a gap probe (fillGaps) or the one target chooses. The reply
// comes back to the event loop as a result.
func (c *Crawler) send(idx int32) {
	n := c.sending(idx)
	target, gap := c.gapTarget[idx]
	nearest := false
	if !gap {
		target, nearest = c.target(n)
	}
	q := &krpc.Msg{Q: krpc.MethodFindNode, A: krpc.Args{ID: c.cfg.ID, Target: target}}
	// Sample only where BEP 51 may work (not refused, not ignored) and
	// the node's interval is over; otherwise ask for nodes the BEP 5 way.
	// A node whose sample timed out is asked find_node next (timeout):
	// a node that drops unknown methods answers that. In a zone crawl,
	// only the zone's nodes are sampled: those on the way to it, and the
	// bootstrap nodes, belong to other zones, whose crawls (a shared
	// crawl's, one after another from one socket) would otherwise sample
	// them again within their BEP 51 interval.
	may := n.bep51 == bep51Unknown || n.bep51 == bep51Yes || n.bep51 == bep51Resample
	if c.cfg.Infohashes && may && !n.id.IsZero() && c.cfg.Zone.contains(n.id) && c.cfg.Now().UnixNano() >= n.next {
		if n.replied || c.sampleFirst() {
			q.Q = krpc.MethodSampleInfohashes
		} else {
			c.res.FindNodeFirst++ // proven real first (sanitize.go)
		}
	}
	method, resend, sent := q.Q, n.retry, c.cfg.Now().UnixNano()
	followUp := resend && method == krpc.MethodFindNode && n.bep51 == bep51Unanswered
	n.retry = false
	c.tr.QueryAsync(context.Background(), n.key.addrPort(), q, func(r krpc.Response, err error) {
		c.results <- result{idx: idx, method: method, target: target, nearest: nearest, resend: resend, followUp: followUp, sent: sent, resp: r, err: err}
	})
}

// sending counts a query about to go to node idx, of any phase but the
// peers phase, and returns the node.
func (c *Crawler) sending(idx int32) *node {
	n := c.nodes.at(idx)
	n.state = stInFlight
	n.queries++
	if !n.queried {
		c.san.queried++
	}
	n.queried = true
	n.sentQuery()
	c.inflight++
	c.res.Queries++
	return n
}

// towardZone reports whether a node is worth querying in a zone crawl: it
// is in the zone, or the zone is still being approached (fewer than K
// nodes have answered from inside it) and the node is at least as close
// to the prefix as the closest node that answered so far. Only nodes that
// answered count: a poisoner lists fake contacts next to any target, and
// so next to the zone, which never answer; counting the contacts listed
// let one such reply end the approach before the zone was reached.
func (c *Crawler) towardZone(id krpc.ID) bool {
	z := c.cfg.Zone
	if z.Bits == 0 || z.contains(id) {
		return true
	}
	if c.zoneFound >= table.DefaultK {
		return false
	}
	return id.CommonPrefixLen(z.Prefix) >= c.bestCPL
}

// zoneTarget returns a random ID inside the zone.
func (c *Crawler) zoneTarget() krpc.ID {
	return krpc.RandomIDWithPrefix(c.cfg.Zone.Prefix, c.cfg.Zone.Bits)
}
