package lightdht

import (
	"context"
	"net/netip"
	"slices"
	"sync"

	"github.com/lightdht/lightdht/internal/peerstore"
	"github.com/lightdht/lightdht/krpc"
)

// NodeToken is a node that answered a get_peers lookup, with the token it
// issued for announce_peer.
type NodeToken struct {
	krpc.NodeInfo
	Token []byte
}

// GetPeersResult is the outcome of a get_peers lookup.
type GetPeersResult struct {
	Peers []netip.AddrPort // every distinct peer received, IPv4 and IPv6
	Nodes []NodeToken      // per family, the K closest nodes that replied, nearest first, with their tokens
	Stats LookupStats      // both families together
}

// GetPeersAsync looks up the peers of infohash. onPeers (may be nil)
// receives each batch of new, distinct peers as replies arrive; calls are
// never concurrent. Peers announced to this node itself come first, in a
// call made before GetPeersAsync returns. done is called once at the end
// with every peer and the K closest nodes with their tokens. GetPeersAsync
// returns at once; the callbacks run on the node's goroutines and must not
// block.
func (n *Node) GetPeersAsync(ctx context.Context, infohash krpc.ID, onPeers func([]netip.AddrPort), done func(GetPeersResult, error)) {
	var (
		mu      sync.Mutex // guards res
		res     GetPeersResult
		deliver func([]netip.AddrPort)
	)
	if onPeers != nil {
		// Each family's lookup calls onPeers one batch at a time, but the
		// two families' lookups run at once: dmu keeps their calls apart.
		var dmu sync.Mutex
		deliver = func(ps []netip.AddrPort) {
			dmu.Lock()
			defer dmu.Unlock()
			onPeers(ps)
		}
	}
	n.perFamily(func(f *family, finished func(error)) {
		n.getPeersAsync(ctx, f, infohash, deliver, func(r GetPeersResult, err error) {
			mu.Lock()
			res.Peers = append(res.Peers, r.Peers...)
			res.Nodes = append(res.Nodes, r.Nodes...)
			res.Stats = res.Stats.add(r.Stats)
			mu.Unlock()
			finished(err)
		})
	}, func(err error) { done(res, err) })
}

func (n *Node) getPeersAsync(ctx context.Context, f *family, infohash krpc.ID, onPeers func([]netip.AddrPort), done func(GetPeersResult, error)) {
	l := n.newLookup(ctx, f, getPeersLookup, infohash)
	l.onPeers = onPeers
	// This node is part of the DHT too: peers announced to it count.
	fam := peerstore.IPv4
	if f.v6 {
		fam = peerstore.IPv6
	}
	if local := n.peers.Peers(infohash, fam, n.cfg.MaxValues, false); len(local) > 0 {
		for _, p := range local {
			l.peerSet[p] = true
		}
		l.peers = append(l.peers, local...)
		if onPeers != nil {
			l.outbox = append(l.outbox, local)
		}
	}
	l.finish = func(l *lookup, err error) {
		var res GetPeersResult
		for _, c := range l.closest() {
			res.Nodes = append(res.Nodes, NodeToken{NodeInfo: c.ni, Token: c.token})
		}
		res.Peers = slices.Clone(l.peers)
		res.Stats = l.stats
		done(res, err)
	}
	l.deliver() // the local peers, before GetPeersAsync returns
	l.run(false)
}

// GetPeers looks up the peers of infohash. On error the result holds what
// the lookup found before it stopped.
func (n *Node) GetPeers(ctx context.Context, infohash krpc.ID) (GetPeersResult, error) {
	return await(func(done func(GetPeersResult, error)) { n.GetPeersAsync(ctx, infohash, nil, done) })
}
