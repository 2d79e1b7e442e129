package krpc_test

import (
	"bytes"
	"math/rand/v2"
	"net/netip"
	"testing"

	akrpc "github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/torrent/bencode"

	"github.com/lightdht/lightdht/krpc"
)

// randomMsg builds one of the BEP 5 messages both implementations model.
func randomMsg(r *rand.Rand) krpc.Msg {
	var id, other krpc.ID
	for i := range id {
		id[i], other[i] = byte(r.Uint32()), byte(r.Uint32())
	}
	t := []byte{byte(r.Uint32()), byte(r.Uint32())}
	switch r.IntN(6) {
	case 0:
		return krpc.Msg{T: t, Y: "q", Q: krpc.MethodPing, A: krpc.Args{ID: id}}
	case 1:
		return krpc.Msg{T: t, Y: "q", Q: krpc.MethodFindNode, A: krpc.Args{ID: id, Target: other}}
	case 2:
		return krpc.Msg{T: t, Y: "q", Q: krpc.MethodGetPeers, A: krpc.Args{ID: id, InfoHash: other}}
	case 3:
		return krpc.Msg{T: t, Y: "q", Q: krpc.MethodAnnouncePeer, A: krpc.Args{ID: id, InfoHash: other,
			Port: 1 + r.IntN(65535), Token: []byte("tok12345")}}
	case 4:
		nodes := make([]krpc.NodeInfo, r.IntN(9))
		for i := range nodes {
			nodes[i].ID = krpc.RandomID()
			nodes[i].Addr = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())}), uint16(r.Uint32()))
		}
		return krpc.Msg{T: t, Y: "r", R: krpc.Return{ID: id, Nodes: nodes, Token: []byte("tk")}}
	default:
		values := make([]netip.AddrPort, 1+r.IntN(20))
		for i := range values {
			values[i] = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, byte(r.Uint32()), byte(r.Uint32())}), uint16(r.Uint32()))
		}
		return krpc.Msg{T: t, Y: "r", R: krpc.Return{ID: id, Token: []byte("tk"), Values: values}}
	}
}

// TestSameBytesAsReference checks the encoder against an independent
// implementation: anacrolix/dht's krpc.Msg, decoded from our bytes and
// encoded again by github.com/anacrolix/torrent/bencode, must give the
// same bytes, and our decoder must read the reference encoding back to the
// message we started from.
func TestSameBytesAsReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		m := randomMsg(r)
		ours, err := m.MarshalBinary()
		if err != nil {
			t.Fatalf("case %d: MarshalBinary: %v", i, err)
		}
		var ref akrpc.Msg
		if err := bencode.Unmarshal(ours, &ref); err != nil {
			t.Fatalf("case %d: reference decoder refused %q: %v", i, ours, err)
		}
		theirs, err := bencode.Marshal(ref)
		if err != nil {
			t.Fatalf("case %d: reference encoder: %v", i, err)
		}
		if !bytes.Equal(ours, theirs) {
			t.Fatalf("case %d: encodings differ\n ours   %q\n theirs %q", i, ours, theirs)
		}
		var back krpc.Msg
		if err := krpc.Unmarshal(theirs, &back); err != nil {
			t.Fatalf("case %d: decoding the reference bytes: %v", i, err)
		}
		again, _ := back.MarshalBinary()
		if !bytes.Equal(again, ours) {
			t.Fatalf("case %d: round trip through the reference changed the message\n got  %q\n want %q", i, again, ours)
		}
	}
}
