package lightdht

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/lightdht/lightdht/krpc"
)

// maintain bootstraps the node and keeps its tables fresh until ctx ends:
// a find_node for its own ID whenever a table is nearly empty (at most every
// DefaultBootstrapEvery), and a find_node for a random ID in each bucket
// the table reports stale.
func (n *Node) maintain(ctx context.Context) {
	n.bootstrap(ctx)
	lastBoot := n.cfg.Now()
	tick := time.NewTicker(DefaultRefreshEvery)
	defer tick.Stop()
	boot := time.NewTicker(DefaultBootstrapEvery)
	defer boot.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-boot.C:
			if n.primary().table.Len() < n.cfg.K && n.cfg.Now().Sub(lastBoot) >= DefaultBootstrapEvery {
				n.bootstrap(ctx)
				lastBoot = n.cfg.Now()
			}
		case <-tick.C:
			for _, f := range n.families() {
				for _, target := range f.table.Refresh() {
					if ctx.Err() != nil {
						return
					}
					n.lookupSync(ctx, f, target, false)
				}
			}
		}
	}
}

// bootstrap joins the network; see Bootstrap.
func (n *Node) bootstrap(ctx context.Context) {
	if len(n.cfg.Bootstrap) == 0 && n.primary().table.Len() == 0 && n.cfg.Resume == nil {
		return
	}
	size, err := n.Bootstrap(ctx)
	if err != nil && ctx.Err() == nil {
		n.log.Warn().Err(err).Msg("bootstrap failed")
		return
	}
	n.log.Debug().Int("table", size).Msg("bootstrapped")
}

// maxRefreshDepth bounds the bucket refreshes of a bootstrap: 2^24 nodes
// per bucket depth is more than the whole DHT holds.
const maxRefreshDepth = 24

// Bootstrap joins the network and returns how many nodes the routing tables
// hold afterwards (both families together); it fails only when every
// family does. It looks up the node's own ID, which fills the buckets
// nearest to it, then one random ID in each farther bucket (as deep as the
// nearest node found shares bits with ours), so that the table also knows
// nodes in the rest of the ID space. Every lookup of a bootstrap also asks
// the bootstrap addresses, unless K of the nodes saved by an earlier run
// (Config.Resume) answered the pings the first bootstrap sends them. Serve bootstraps by itself; Bootstrap is for
// callers that want to wait until the node has joined.
//
// A call while a bootstrap is in progress (Serve's or another caller's)
// waits for that one instead of starting a second: two at once would ask
// every node the same questions twice, and nodes that rate-limit (a few
// queries a second) would drop the duplicates and perhaps the querier. A
// caller whose ctx ends first returns at once; if the bootstrap it waited
// for ends because its own starter's ctx did, the call runs its own.
func (n *Node) Bootstrap(ctx context.Context) (int, error) {
	for {
		n.mu.Lock()
		fl := n.boot
		if fl == nil {
			fl = &bootFlight{done: make(chan struct{})}
			n.boot = fl
			n.mu.Unlock()
			fl.size, fl.err = n.bootstrapAll(ctx)
			n.mu.Lock()
			n.boot = nil
			n.mu.Unlock()
			close(fl.done)
			return fl.size, fl.err
		}
		n.mu.Unlock()
		select {
		case <-fl.done:
		case <-ctx.Done():
			return n.tableSize(), ctx.Err()
		}
		if fl.err == nil || ctx.Err() != nil || !(errors.Is(fl.err, context.Canceled) || errors.Is(fl.err, context.DeadlineExceeded)) {
			return fl.size, fl.err
		}
		// The starter gave up; this caller has not: bootstrap again.
	}
}

// bootFlight is one bootstrap in progress: the callers that join it wait
// for done, then read its outcome.
type bootFlight struct {
	done chan struct{}
	size int
	err  error
}

// tableSize is the number of nodes in both families' routing tables.
func (n *Node) tableSize() int {
	size := 0
	for _, f := range n.families() {
		size += f.table.Len()
	}
	return size
}

// bootstrapAll bootstraps every family at once; see Bootstrap.
func (n *Node) bootstrapAll(ctx context.Context) (int, error) {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		size  int
		errs  []error
		fails int
	)
	fs := n.families()
	for _, f := range fs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := n.bootstrapFamily(ctx, f)
			mu.Lock()
			defer mu.Unlock()
			size += k
			if err != nil {
				errs = append(errs, err)
				fails++
			}
		}()
	}
	wg.Wait()
	if fails == len(fs) {
		return size, errors.Join(errs...)
	}
	return size, nil
}

func (n *Node) bootstrapFamily(ctx context.Context, f *family) (int, error) {
	// Nodes saved by an earlier run come first: when K of them answer,
	// the bootstrap list is left alone (lookups still fall back to it if
	// the table runs short).
	withSeeds := n.pingSaved(ctx, f) < n.cfg.K
	res, err := n.lookupSync(ctx, f, n.ID(), withSeeds)
	if err != nil {
		return f.table.Len(), err
	}
	depth := 0
	if len(res.Nodes) > 0 {
		depth = min(n.ID().CommonPrefixLen(res.Nodes[0].ID), maxRefreshDepth)
	}
	var wg sync.WaitGroup
	for d := range depth {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.lookupSync(ctx, f, krpc.RandomIDAtDepth(n.ID(), d), withSeeds)
		}()
	}
	wg.Wait()
	return f.table.Len(), nil
}
