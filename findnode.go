package lightdht

import (
	"context"
	"sync"

	"github.com/lightdht/lightdht/krpc"
)

// FindNodeResult is the outcome of a find_node lookup.
type FindNodeResult struct {
	Nodes  []krpc.NodeInfo // the K closest IPv4 nodes that replied, nearest first
	Nodes6 []krpc.NodeInfo // the same for IPv6, when the node has an IPv6 socket
	Stats  LookupStats     // both families together
}

// FindNodeAsync looks up the K nodes closest to target and calls done
// once with them. It returns at once; done runs on one of the node's
// goroutines and must not block.
func (n *Node) FindNodeAsync(ctx context.Context, target krpc.ID, done func(FindNodeResult, error)) {
	var (
		mu  sync.Mutex
		res FindNodeResult
	)
	n.perFamily(func(f *family, finished func(error)) {
		n.findNodeAsync(ctx, f, target, false, func(r FindNodeResult, err error) {
			mu.Lock()
			if f.v6 {
				res.Nodes6 = r.Nodes
			} else {
				res.Nodes = r.Nodes
			}
			res.Stats = res.Stats.add(r.Stats)
			mu.Unlock()
			finished(err)
		})
	}, func(err error) { done(res, err) })
}

func (n *Node) findNodeAsync(ctx context.Context, f *family, target krpc.ID, withSeeds bool, done func(FindNodeResult, error)) {
	l := n.newLookup(ctx, f, findNodeLookup, target)
	l.finish = func(l *lookup, err error) {
		var res FindNodeResult
		for _, c := range l.closest() {
			res.Nodes = append(res.Nodes, c.ni)
		}
		res.Stats = l.stats
		done(res, err)
	}
	l.run(withSeeds)
}

// lookupSync runs a find_node lookup on family f and waits for it.
func (n *Node) lookupSync(ctx context.Context, f *family, target krpc.ID, withSeeds bool) (FindNodeResult, error) {
	return await(func(done func(FindNodeResult, error)) { n.findNodeAsync(ctx, f, target, withSeeds, done) })
}

// FindNode looks up the K nodes closest to target. On error the result
// holds what the lookup found before it stopped.
func (n *Node) FindNode(ctx context.Context, target krpc.ID) (FindNodeResult, error) {
	return await(func(done func(FindNodeResult, error)) { n.FindNodeAsync(ctx, target, done) })
}
