package crawler

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/lightdht/lightdht/krpc"
)

// PeerRecorder is the optional part of a Recorder that receives peers
// (*db.DB has it).
type PeerRecorder interface {
	RecordPeer(infohash krpc.ID, peer netip.AddrPort, source string, t time.Time)
}

// peerTask is one get_peers of the peers phase.
type peerTask struct {
	idx int32
	ih  krpc.ID
}

// peersPhase asks, for each harvested infohash, the 8 replied nodes
// closest to it for peers, within the rate and per-IP limits, until done
// or ctx ends.
func (c *Crawler) peersPhase(ctx context.Context) error {
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
		for _, idx := range c.closestReplied(byID, ih, 8) {
			tasks = append(tasks, peerTask{idx: idx, ih: ih})
		}
	}
	c.peerSeen = map[peerSeenKey]struct{}{}
	wake := time.NewTimer(0)
	defer wake.Stop()
	for len(tasks) > 0 || c.inflight > 0 {
		now := time.Now()
		var next time.Time
		for i := 0; i < len(tasks) && c.inflight < c.cfg.MaxInFlight; {
			t := tasks[i]
			ip := c.nodes[t.idx].key.ip()
			if last, ok := c.lastIP[ip]; ok && last+int64(c.cfg.PerIPInterval) > now.UnixNano() {
				if due := time.Unix(0, last+int64(c.cfg.PerIPInterval)); next.IsZero() || due.Before(next) {
					next = due
				}
				i++
				continue
			}
			r := c.lim.ReserveN(now, 1)
			if d := r.DelayFrom(now); d > 0 {
				r.CancelAt(now)
				if due := now.Add(d); next.IsZero() || due.Before(next) {
					next = due
				}
				break
			}
			tasks = append(tasks[:i], tasks[i+1:]...)
			c.lastIP[ip] = now.UnixNano()
			c.sendGetPeers(t)
		}
		if !next.IsZero() {
			wake.Reset(time.Until(next))
		}
		select {
		case r := <-c.results:
			c.handle(r)
		case <-wake.C:
		case <-ctx.Done():
			return fmt.Errorf("crawler: %w", context.Cause(ctx))
		}
	}
	return nil
}

func (c *Crawler) sendGetPeers(t peerTask) {
	c.inflight++
	c.res.PeerQueries++
	q := &krpc.Msg{Q: krpc.MethodGetPeers, A: krpc.Args{ID: c.cfg.ID, InfoHash: t.ih}}
	idx, ih := t.idx, t.ih
	c.tr.QueryAsync(context.Background(), c.nodes[t.idx].key.addrPort(), q, func(r krpc.Response, err error) {
		c.results <- result{idx: idx, ih: ih, method: krpc.MethodGetPeers, resp: r, err: err}
	})
}

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
	now := time.Now()
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
