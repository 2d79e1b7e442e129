package lightdht

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/lightdht/lightdht/krpc"
)

// AnnounceResult is the outcome of an announce.
type AnnounceResult struct {
	// AnnouncedTo lists the nodes that accepted the announce_peer.
	AnnouncedTo []krpc.NodeInfo
	// Refused maps the nodes whose announce_peer failed to the error.
	Refused map[krpc.NodeInfo]error
	// Lookup is the get_peers lookup that found the nodes and tokens,
	// including the peers it saw.
	Lookup GetPeersResult
}

// AnnounceAsync announces that a peer for infohash listens on port: it
// runs a get_peers lookup, then sends announce_peer to the K closest nodes
// of each address family that issued tokens. With port 0 the nodes take the port the announce
// comes from (implied_port). done is called once; the call returns at
// once.
func (n *Node) AnnounceAsync(ctx context.Context, infohash krpc.ID, port int, done func(AnnounceResult, error)) {
	if port < 0 || port > 65535 {
		go done(AnnounceResult{}, fmt.Errorf("lightdht: announce %v: port %d out of range", infohash, port))
		return
	}
	n.GetPeersAsync(ctx, infohash, nil, func(lr GetPeersResult, err error) {
		res := AnnounceResult{Lookup: lr, Refused: map[krpc.NodeInfo]error{}}
		if err != nil {
			done(res, err)
			return
		}
		var targets []NodeToken
		for _, nt := range lr.Nodes {
			if len(nt.Token) > 0 {
				targets = append(targets, nt)
			}
		}
		if len(targets) == 0 {
			done(res, fmt.Errorf("lightdht: announce %v: no node issued a token: %w", infohash, ErrNoNodes))
			return
		}
		var (
			mu      sync.Mutex
			pending = len(targets)
		)
		for _, nt := range targets {
			f := n.familyFor(nt.Addr.Addr())
			q := &krpc.Msg{Q: krpc.MethodAnnouncePeer, A: krpc.Args{ID: n.id, InfoHash: infohash, Token: nt.Token, Port: port, ImpliedPort: port == 0}}
			f.tr.QueryAsync(ctx, nt.Addr, q, func(r krpc.Response, err error) {
				n.handleResult(f, nt.NodeInfo, krpc.MethodAnnouncePeer, r, err)
				mu.Lock()
				if err == nil {
					res.AnnouncedTo = append(res.AnnouncedTo, nt.NodeInfo)
				} else {
					res.Refused[nt.NodeInfo] = err
				}
				pending--
				last := pending == 0
				mu.Unlock()
				if !last {
					return
				}
				if len(res.AnnouncedTo) == 0 {
					done(res, fmt.Errorf("lightdht: announce %v: every node refused: %w", infohash, errors.Join(errorsOf(res.Refused)...)))
					return
				}
				done(res, nil)
			})
		}
	})
}

func errorsOf(m map[krpc.NodeInfo]error) []error {
	out := make([]error, 0, len(m))
	for _, e := range m {
		out = append(out, e)
	}
	return out
}

// Announce announces that a peer for infohash listens on port (0: the
// port the announce comes from); see AnnounceAsync.
func (n *Node) Announce(ctx context.Context, infohash krpc.ID, port int) (AnnounceResult, error) {
	type out struct {
		r   AnnounceResult
		err error
	}
	ch := make(chan out, 1)
	n.AnnounceAsync(ctx, infohash, port, func(r AnnounceResult, err error) { ch <- out{r, err} })
	o := <-ch
	return o.r, o.err
}
