package crawler

import (
	"context"
	"net/netip"
	"time"

	"github.com/lightdht/lightdht/krpc"
	"github.com/lightdht/lightdht/table"
)

// PeerRecorder is the optional part of a Recorder that receives peers
// (*db.DB has it).
type PeerRecorder interface {
	// RecordPeer receives a peer of infohash, learnt at t from source
	// ("get_peers" in the peers phase).
	RecordPeer(infohash krpc.ID, peer netip.AddrPort, source string, t time.Time)
}

// peerTask is one get_peers of the peers phase.
type peerTask struct {
	idx int32
	ih  krpc.ID
}

// peersPhase returns the phase that asks, for each harvested infohash
// (up to Config.PeersLimit), the table.DefaultK (8) replied nodes closest
// to it for peers, under the limits of every query (dispatch); nil if no
// node replied. The phase's items index its tasks, which only its
// closures hold.
func (c *Crawler) peersPhase() *phase {
	byID := c.inIDOrder(func(n *node) bool { return n.replied })
	if len(byID) == 0 {
		return nil
	}
	var tasks []peerTask
	asked := 0
	for ih := range c.ihs {
		if c.cfg.PeersLimit > 0 && asked == c.cfg.PeersLimit {
			break
		}
		asked++
		for _, idx := range c.closestReplied(byID, ih, table.DefaultK) {
			tasks = append(tasks, peerTask{idx: idx, ih: ih})
		}
	}
	c.peerSeen = map[peerSeenKey]struct{}{}
	q := &queue{}
	for i := range tasks {
		q.push(int32(i))
	}
	return &phase{
		queue: q,
		ip:    func(i int32) [16]byte { return c.nodes.at(tasks[i].idx).key.ip() },
		send:  func(i int32) { c.sendGetPeers(tasks[i]) },
		done:  func() bool { return q.len() == 0 && c.inflight == 0 },
	}
}

// sendGetPeers sends one get_peers of the peers phase; the reply comes
// back to the event loop as a result.
func (c *Crawler) sendGetPeers(t peerTask) {
	c.inflight++
	c.res.PeerQueries++
	q := &krpc.Msg{Q: krpc.MethodGetPeers, A: krpc.Args{ID: c.cfg.ID, InfoHash: t.ih}}
	idx, ih, sent := t.idx, t.ih, c.cfg.Now().UnixNano()
	c.tr.QueryAsync(context.Background(), c.nodes.at(t.idx).key.addrPort(), q, func(r krpc.Response, err error) {
		c.results <- result{idx: idx, ih: ih, method: krpc.MethodGetPeers, sent: sent, resp: r, err: err}
	})
}

// peerSeenKey is a peer of one infohash, counted once however many nodes
// return it.
type peerSeenKey struct {
	ih   krpc.ID
	peer addrKey
}

// handlePeers records the peers of one get_peers reply.
func (c *Crawler) handlePeers(r result) {
	c.inflight--
	if r.resp.Msg == nil || r.resp.Y != krpc.KindReply {
		return
	}
	pr, _ := c.cfg.Recorder.(PeerRecorder)
	now := c.cfg.Now()
	for _, p := range r.resp.R.Values {
		k := peerSeenKey{r.ih, keyOf(p)}
		if _, dup := c.peerSeen[k]; dup {
			continue
		}
		c.peerSeen[k] = struct{}{}
		c.res.Peers++
		if pr != nil {
			pr.RecordPeer(r.ih, p, "get_peers", now)
		}
	}
}
