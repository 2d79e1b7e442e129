package lightdht

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/lightdht/lightdht/bep44"
	"github.com/lightdht/lightdht/krpc"
)

// considerItem keeps a BEP 44 item from a get reply if it is valid for the
// lookup's target and better than the one held: the value must hash to the
// target (immutable), or carry the expected key and a valid signature,
// with a higher seq than any seen (mutable). l.mu must be held.
func (l *lookup) considerItem(r *krpc.Return) {
	it := bep44.Item{V: slices.Clone(r.V)}
	if l.mutable {
		if r.Seq == nil || r.K != l.itemK {
			return
		}
		it.Mutable, it.K, it.Salt, it.Seq, it.Sig = true, r.K, l.salt, *r.Seq, r.Sig
		if l.item != nil && it.Seq <= l.item.Seq {
			return
		}
	} else if l.item != nil {
		return
	}
	if it.Check() != nil || it.Target() != l.target {
		return
	}
	l.item = &it
}

// GetItemResult is the outcome of a BEP 44 get lookup.
type GetItemResult struct {
	Item  bep44.Item  // the item found: for a mutable one, the highest seq of either family
	Found bool        // whether a valid item was found
	Nodes []NodeToken // per family, the K closest nodes that replied, with their tokens (for a put)
	Stats LookupStats // both families together
}

// GetAsync looks up the immutable item stored under target and calls done
// once. Only a value whose SHA-1 is target is accepted. Like get_peers,
// BEP 44 lookups run on every address family the node has (BEP 32), at
// the same time; an item found over either counts.
func (n *Node) GetAsync(ctx context.Context, target krpc.ID, done func(GetItemResult, error)) {
	n.getItemAsync(ctx, target, false, [32]byte{}, nil, done)
}

// GetMutableAsync looks up the mutable item of public key k and salt and
// calls done once with the highest-seq item whose signature verifies.
func (n *Node) GetMutableAsync(ctx context.Context, k [32]byte, salt []byte, done func(GetItemResult, error)) {
	n.getItemAsync(ctx, bep44.MutableTarget(k, salt), true, k, salt, done)
}

func (n *Node) getItemAsync(ctx context.Context, target krpc.ID, mutable bool, k [32]byte, salt []byte, done func(GetItemResult, error)) {
	var (
		mu  sync.Mutex // guards res
		res GetItemResult
	)
	n.perFamily(func(f *family, finished func(error)) {
		l := n.newLookup(ctx, f, getItemLookup, target)
		l.mutable, l.itemK, l.salt = mutable, k, slices.Clone(salt)
		l.finish = func(l *lookup, err error) {
			mu.Lock()
			for _, c := range l.closest() {
				res.Nodes = append(res.Nodes, NodeToken{NodeInfo: c.ni, Token: c.token})
			}
			// Both families' items passed considerItem: any one will do
			// for an immutable target, the higher seq for a mutable one.
			if it := l.item; it != nil && (!res.Found || (mutable && it.Seq > res.Item.Seq)) {
				res.Item, res.Found = *it, true
			}
			res.Stats = res.Stats.add(l.stats)
			mu.Unlock()
			finished(err)
		}
		l.run(false)
	}, func(err error) {
		mu.Lock()
		out := res
		mu.Unlock()
		if err == nil && !out.Found {
			err = fmt.Errorf("lightdht: get %v: %w", target, bep44.ErrNotFound)
		}
		done(out, err)
	})
}

// Get looks up the immutable item stored under target; see GetAsync.
func (n *Node) Get(ctx context.Context, target krpc.ID) (GetItemResult, error) {
	return await(func(done func(GetItemResult, error)) { n.GetAsync(ctx, target, done) })
}

// GetMutable looks up a mutable item; see GetMutableAsync.
func (n *Node) GetMutable(ctx context.Context, k [32]byte, salt []byte) (GetItemResult, error) {
	return await(func(done func(GetItemResult, error)) { n.GetMutableAsync(ctx, k, salt, done) })
}

// PutResult is the outcome of a BEP 44 put.
type PutResult struct {
	Target   krpc.ID
	StoredAt []krpc.NodeInfo         // nodes that accepted the put
	Refused  map[krpc.NodeInfo]error // nodes that refused it, with their error (e.g. 302)
	Lookup   GetItemResult           // the get lookup that found the nodes and tokens
}

// PutAsync stores item in the DHT: it checks the item, looks up the K
// closest nodes of each address family to its target with get
// (collecting tokens), then sends put to each that gave a token, with cas
// when set. done is called once; the
// put succeeds when at least one node stored the item.
func (n *Node) PutAsync(ctx context.Context, item bep44.Item, cas *int64, done func(PutResult, error)) {
	target := item.Target()
	if err := item.Check(); err != nil {
		go done(PutResult{Target: target}, fmt.Errorf("lightdht: put %v: %w", target, err))
		return
	}
	n.getItemAsync(ctx, target, item.Mutable, item.K, item.Salt, func(lr GetItemResult, err error) {
		res := PutResult{Target: target, Lookup: lr, Refused: map[krpc.NodeInfo]error{}}
		if err != nil && !errors.Is(err, bep44.ErrNotFound) {
			done(res, err)
			return
		}
		n.storeAt(ctx, "put", target, lr.Nodes, func(nt NodeToken) *krpc.Msg {
			// An immutable put carries seq 0 too: BEP 44 leaves it out, but
			// anacrolix/dht refuses a put without one, and other nodes
			// ignore seq when there is no key.
			seq := item.Seq
			q := &krpc.Msg{Q: krpc.MethodPut, A: krpc.Args{ID: n.ID(), Token: nt.Token, V: item.V, CAS: cas, Seq: &seq}}
			if item.Mutable {
				q.A.K, q.A.Salt, q.A.Sig = item.K, item.Salt, item.Sig
			}
			return q
		}, func(accepted []krpc.NodeInfo, refused map[krpc.NodeInfo]error, err error) {
			res.StoredAt, res.Refused = accepted, refused
			done(res, err)
		})
	})
}

// Put stores item in the DHT; see PutAsync.
func (n *Node) Put(ctx context.Context, item bep44.Item, cas *int64) (PutResult, error) {
	return await(func(done func(PutResult, error)) { n.PutAsync(ctx, item, cas, done) })
}
