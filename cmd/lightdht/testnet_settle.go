package main

import (
	"context"
	"slices"
	"sync"

	"github.com/lightdht/lightdht"
	"github.com/lightdht/lightdht/krpc"
	"github.com/rs/zerolog"
)

// settleRounds is how many rounds settleTestnet pings missing neighbours.
const settleRounds = 5

// settleTestnet makes every node's IPv4 table hold its true nearest
// neighbours in the network (min(K, n-1) of them, by XOR distance) as
// answering nodes: the entries a find_node reply about its neighbourhood
// lists. The joins alone do not ensure it on a busy machine: a bootstrap
// query that times out there counts as a failure against a node that is
// up, and a table does not hand out a node with failures, so a node that
// few tables hold can then stay hidden from crawlers and lookups. Each
// round pings, from each node, the neighbours it lacks (a reply stores
// the neighbour, or clears its failures). It returns the number of
// (node, neighbour) pairs still missing after the last round, and logs
// at debug level how many each round found.
func settleTestnet(ctx context.Context, log zerolog.Logger, all []*lightdht.Node, k, rounds int) int {
	near := trueNeighbours(nodeIDs(all), k)
	type pair struct{ from, to *lightdht.Node }
	var missing []pair
	for round := range rounds {
		missing = missing[:0]
		for i, n := range all {
			tb := n.Table(false)
			for _, j := range near[i] {
				m := all[j]
				e, ok := tb.Get(m.ID())
				if !ok || e.Addr != m.Addr() || e.LastReply.IsZero() || e.Failures > 0 {
					missing = append(missing, pair{n, m})
				}
			}
		}
		log.Debug().Int("round", round).Int("missing", len(missing)).Msg("test network: nearest neighbours missing from tables")
		if len(missing) == 0 || ctx.Err() != nil {
			break
		}
		sem := make(chan struct{}, 32)
		var wg sync.WaitGroup
		for _, p := range missing {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				p.from.Ping(ctx, p.to.Addr())
			}()
		}
		wg.Wait()
	}
	return len(missing)
}

// nodeIDs returns the IDs of nodes, in their order.
func nodeIDs(nodes []*lightdht.Node) []krpc.ID {
	ids := make([]krpc.ID, len(nodes))
	for i, n := range nodes {
		ids[i] = n.ID()
	}
	return ids
}

// trueNeighbours returns, for each of ids, the indexes of its
// min(k, len(ids)-1) nearest other IDs by XOR distance. They lie in the
// smallest ID prefix around the ID that holds more than k IDs, which the
// sorted IDs give by binary search, so a large network costs little more
// than the sort.
func trueNeighbours(ids []krpc.ID, k int) [][]int {
	want := min(k, len(ids)-1)
	order := make([]int, len(ids)) // indexes into ids, sorted by ID
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return ids[a].Cmp(ids[b]) })
	// prefix returns the range of order whose IDs share the first l bits
	// of id.
	prefix := func(id krpc.ID, l int) (int, int) {
		lo, hi := id, id
		for b := l; b < 8*len(id); b++ {
			lo[b/8] &^= 0x80 >> (b % 8)
			hi[b/8] |= 0x80 >> (b % 8)
		}
		first, _ := slices.BinarySearchFunc(order, lo, func(i int, t krpc.ID) int { return ids[i].Cmp(t) })
		end, found := slices.BinarySearchFunc(order, hi, func(i int, t krpc.ID) int { return ids[i].Cmp(t) })
		if found {
			end++
		}
		return first, end
	}
	out := make([][]int, len(ids))
	for i := range ids {
		if want <= 0 {
			continue
		}
		// The longest prefix that still holds want others besides i.
		lo, hi := 0, len(order)
		for l := 1; l <= 8*len(ids[i]); l++ {
			a, b := prefix(ids[i], l)
			if b-a < want+1 {
				break
			}
			lo, hi = a, b
		}
		pool := make([]int, 0, hi-lo-1)
		for _, j := range order[lo:hi] {
			if j != i {
				pool = append(pool, j)
			}
		}
		slices.SortFunc(pool, func(a, b int) int { return ids[a].Xor(ids[i]).Cmp(ids[b].Xor(ids[i])) })
		out[i] = pool[:want]
	}
	return out
}
