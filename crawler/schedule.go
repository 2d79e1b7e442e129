package crawler

import (
	"container/heap"
	"time"
)

// dispatch sends queries while the limits allow and returns when it should
// be called again (zero if only a result can make progress).
func (c *Crawler) dispatch() time.Time {
	now := time.Now()
	c.promote(now)
	for c.inflight < c.cfg.MaxInFlight && len(c.ready) > 0 {
		idx := c.ready[0]
		n := &c.nodes[idx]
		ip := n.key.ip()
		if last, ok := c.lastIP[ip]; ok {
			if due := last + int64(c.cfg.PerIPInterval); due > now.UnixNano() {
				c.ready = c.ready[1:]
				heap.Push(&c.later, delayed{idx: idx, at: due})
				continue
			}
		}
		r := c.lim.ReserveN(now, 1)
		if d := r.DelayFrom(now); d > 0 {
			r.CancelAt(now)
			return c.earliest(now.Add(d))
		}
		c.ready = c.ready[1:]
		c.lastIP[ip] = now.UnixNano()
		c.send(idx)
	}
	c.pruneIPs(now)
	return c.earliest(time.Time{})
}

// earliest returns the sooner of t and the next delayed node's time.
func (c *Crawler) earliest(t time.Time) time.Time {
	if c.later.Len() > 0 {
		at := time.Unix(0, c.later[0].at)
		if t.IsZero() || at.Before(t) {
			return at
		}
	}
	return t
}

// promote moves the delayed nodes that are due to the ready queue.
func (c *Crawler) promote(now time.Time) {
	for c.later.Len() > 0 && c.later[0].at <= now.UnixNano() {
		d := heap.Pop(&c.later).(delayed)
		c.ready = append(c.ready, d.idx)
	}
}

// pruneIPs forgets per-IP send times that no longer restrict anything,
// so the map holds only the IPs of the last PerIPInterval.
func (c *Crawler) pruneIPs(now time.Time) {
	if len(c.lastIP) < 4096 {
		return
	}
	cutoff := now.UnixNano() - int64(c.cfg.PerIPInterval)
	for ip, t := range c.lastIP {
		if t <= cutoff {
			delete(c.lastIP, ip)
		}
	}
}

// delayed is a node waiting for its time: its IP's interval, a BEP 51
// interval or a revisit.
type delayed struct {
	idx int32
	at  int64
}

type delayHeap []delayed

func (h delayHeap) Len() int           { return len(h) }
func (h delayHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h delayHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *delayHeap) Push(x any)        { *h = append(*h, x.(delayed)) }
func (h *delayHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
