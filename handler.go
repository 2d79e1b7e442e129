package lightdht

import (
	"errors"
	"net/netip"
	"time"

	"github.com/lightdht/lightdht/bep44"
	"github.com/lightdht/lightdht/internal/peerstore"
	"github.com/lightdht/lightdht/krpc"
	"github.com/lightdht/lightdht/table"
)

var errMissingSeq = &krpc.Error{Code: krpc.CodeProtocol, Msg: "missing seq"}

// serveQuery answers one incoming query on family f. It runs on f's read
// goroutine.
func (n *Node) serveQuery(f *family, reply, q *krpc.Msg, src netip.AddrPort) bool {
	var sighting *Sighting // of the querier; nil when it sent no ID
	n.stats.queries.Add(q.Q)
	querier := krpc.NodeInfo{ID: q.A.ID, Addr: src}
	if !q.A.ID.IsZero() {
		// Reported once handling is done, so that an accepted announce
		// carries the peer it stored.
		s := Sighting{Node: querier, Source: SourceQuery, Method: q.Q, Version: string(q.V), ReadOnly: q.RO}
		switch q.Q {
		case krpc.MethodGetPeers, krpc.MethodAnnouncePeer:
			s.Infohash = q.A.InfoHash
		case krpc.MethodGet:
			s.Item = q.A.Target
		}
		sighting = &s
		defer func() { n.observe(*sighting) }()
		if !f.flooding {
			n.update(f, querier, table.Queried, q.RO)
		}
	}
	if n.cfg.ReadOnly {
		return false // BEP 43: a read-only node answers nothing
	}
	if q.A.ID.IsZero() {
		return reply.Fail(krpc.ErrorMissingID)
	}
	reply.IP = src // BEP 42: tell the querier its address
	reply.R.ID = n.id

	switch q.Q {
	case krpc.MethodPing:
	case krpc.MethodFindNode:
		if q.A.Target.IsZero() {
			return reply.Fail(krpc.ErrorMissingTarget)
		}
		n.closestNodes(f, reply, q.A.Target, q.A.Want)
	case krpc.MethodGetPeers:
		if q.A.InfoHash.IsZero() {
			return reply.Fail(krpc.ErrorMissingInfohash)
		}
		reply.R.Token = n.tokens.Append(reply.R.Token[:0], src.Addr())
		fam := peerstore.IPv4
		if f.v6 {
			fam = peerstore.IPv6
		}
		reply.R.Values = n.peers.AppendPeers(reply.R.Values[:0], q.A.InfoHash, fam, n.cfg.MaxValues, q.A.NoSeed)
		if len(reply.R.Values) == 0 {
			n.closestNodes(f, reply, q.A.InfoHash, q.A.Want)
		}
		if q.A.Scrape {
			seeds, peers := n.peers.Scrape(q.A.InfoHash)
			reply.R.BFsd, reply.R.BFpe = seeds[:], peers[:]
		}
	case krpc.MethodAnnouncePeer:
		if q.A.InfoHash.IsZero() {
			return reply.Fail(krpc.ErrorMissingInfohash)
		}
		if !n.tokens.Valid(q.A.Token, src.Addr()) {
			n.stats.badTokens.Add(1)
			return reply.Fail(krpc.ErrorBadToken)
		}
		peer, ok := q.A.AnnouncedPeer(src)
		if !ok {
			return reply.Fail(krpc.ErrorBadPort)
		}
		n.peers.Announce(q.A.InfoHash, peer, q.A.Seed)
		n.stats.announces.Add(1)
		sighting.Peer = peer // sighting is set: q.A.ID was checked above
	case krpc.MethodGet:
		if q.A.Target.IsZero() {
			return reply.Fail(krpc.ErrorMissingTarget)
		}
		reply.R.Token = n.tokens.Append(reply.R.Token[:0], src.Addr())
		n.closestNodes(f, reply, q.A.Target, q.A.Want)
		if it, ok := n.items.Get(q.A.Target); ok {
			if it.Mutable {
				seq := it.Seq
				reply.R.K, reply.R.Seq, reply.R.Sig = it.K, &seq, it.Sig
				// A getter that has this seq or a newer one needs no value.
				if q.A.Seq == nil || *q.A.Seq < it.Seq {
					reply.R.V = it.V
				}
			} else {
				reply.R.V = it.V
			}
		}
	case krpc.MethodPut:
		if !n.tokens.Valid(q.A.Token, src.Addr()) {
			n.stats.badTokens.Add(1)
			return reply.Fail(krpc.ErrorBadToken)
		}
		it := bep44.Item{V: q.A.V}
		if q.A.K != [32]byte{} {
			if q.A.Seq == nil {
				return reply.Fail(errMissingSeq)
			}
			it.Mutable, it.K, it.Salt, it.Seq, it.Sig = true, q.A.K, q.A.Salt, *q.A.Seq, q.A.Sig
		}
		if err := n.items.Put(it, q.A.CAS); err != nil {
			var kerr *krpc.Error
			if !errors.As(err, &kerr) {
				kerr = &krpc.Error{Code: krpc.CodeServer, Msg: err.Error()}
			}
			return reply.Fail(kerr)
		}
		if sighting != nil { // who stored what
			sighting.Item, sighting.ItemMutable, sighting.ItemSeq = it.Target(), it.Mutable, it.Seq
		}
	case krpc.MethodSampleInfohashes:
		if q.A.Target.IsZero() {
			return reply.Fail(krpc.ErrorMissingTarget)
		}
		reply.R.Samples, reply.R.Num = n.sampleInfohashes(reply.R.Samples[:0])
		reply.R.Interval = int(n.cfg.SampleInterval / time.Second)
		n.closestNodes(f, reply, q.A.Target, q.A.Want)
	default:
		return reply.Fail(krpc.ErrorMethodUnknown)
	}
	return true
}

// sampleInfohashes appends the node's BEP 51 sample: up to SampleMax
// infohashes it holds peers for, drawn afresh once per SampleInterval.
func (n *Node) sampleInfohashes(dst []krpc.ID) ([]krpc.ID, int) {
	now := n.cfg.Now()
	n.sampleMu.Lock()
	defer n.sampleMu.Unlock()
	if n.sampleAt.IsZero() || now.Sub(n.sampleAt) >= n.cfg.SampleInterval || now.Before(n.sampleAt) {
		n.sample, n.sampleN = n.peers.SampleInfohashes(n.sample[:0], SampleMax)
		n.sampleAt = now
	}
	return append(dst, n.sample...), n.sampleN
}

// closestNodes fills reply with the K closest nodes to target: from the
// querier's own family by default, or from the families BEP 32's want
// asks for.
func (n *Node) closestNodes(f *family, reply *krpc.Msg, target krpc.ID, want krpc.Want) {
	if want == 0 {
		want = krpc.WantN4
		if f.v6 {
			want = krpc.WantN6
		}
	}
	if want&krpc.WantN4 != 0 && n.v4 != nil {
		f.closest = n.v4.table.AppendClosest(f.closest[:0], target, n.cfg.K)
		reply.R.Nodes = appendInfos(reply.R.Nodes[:0], f.closest)
	}
	if want&krpc.WantN6 != 0 && n.v6 != nil {
		f.closest = n.v6.table.AppendClosest(f.closest[:0], target, n.cfg.K)
		reply.R.Nodes6 = appendInfos(reply.R.Nodes6[:0], f.closest)
	}
}

func appendInfos(dst []krpc.NodeInfo, es []table.Entry) []krpc.NodeInfo {
	for _, e := range es {
		dst = append(dst, e.NodeInfo)
	}
	return dst
}
