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
		n.storeAt(ctx, "announce", infohash, lr.Nodes, func(nt NodeToken) *krpc.Msg {
			return &krpc.Msg{Q: krpc.MethodAnnouncePeer, A: krpc.Args{ID: n.ID(), InfoHash: infohash, Token: nt.Token, Port: port, ImpliedPort: port == 0}}
		}, func(accepted []krpc.NodeInfo, refused map[krpc.NodeInfo]error, err error) {
			res.AnnouncedTo, res.Refused = accepted, refused
			done(res, err)
		})
	})
}

// storeAt sends the query that query builds to every node in nodes that
// issued a token, on its family's socket, and calls done once, when all
// have answered, with the nodes that accepted and those that refused. It
// fails when no node issued a token or every node refused. op and key
// name the operation in errors. Announce and BEP 44 put share it.
func (n *Node) storeAt(ctx context.Context, op string, key krpc.ID, nodes []NodeToken, query func(NodeToken) *krpc.Msg,
	done func(accepted []krpc.NodeInfo, refused map[krpc.NodeInfo]error, err error)) {
	refused := map[krpc.NodeInfo]error{}
	var targets []NodeToken
	for _, nt := range nodes {
		if len(nt.Token) > 0 {
			targets = append(targets, nt)
		}
	}
	if len(targets) == 0 {
		done(nil, refused, fmt.Errorf("lightdht: %s %v: no node issued a token: %w", op, key, ErrNoNodes))
		return
	}
	var (
		mu       sync.Mutex
		pending  = len(targets)
		accepted []krpc.NodeInfo
	)
	for _, nt := range targets {
		f := n.familyFor(nt.Addr.Addr())
		q := query(nt)
		f.tr.QueryAsync(ctx, nt.Addr, q, func(r krpc.Response, err error) {
			n.handleResult(f, nt.NodeInfo, q.Q, r, err)
			mu.Lock()
			if err == nil {
				accepted = append(accepted, nt.NodeInfo)
			} else {
				refused[nt.NodeInfo] = err
			}
			pending--
			last := pending == 0
			mu.Unlock()
			if !last {
				return
			}
			if len(accepted) == 0 {
				done(nil, refused, fmt.Errorf("lightdht: %s %v: every node refused: %w", op, key, errors.Join(errorsOf(refused)...)))
				return
			}
			done(accepted, refused, nil)
		})
	}
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
	return await(func(done func(AnnounceResult, error)) { n.AnnounceAsync(ctx, infohash, port, done) })
}
