package krpc_test

import (
	"net/netip"
	"testing"

	akrpc "github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/torrent/bencode"

	"github.com/lightdht/lightdht/krpc"
)

// findNodeReply returns the bytes of a find_node reply with 8 IPv4 nodes,
// the most common packet a DHT node receives.
func findNodeReply(b *testing.B) []byte {
	b.Helper()
	m := krpc.Msg{T: []byte("ab"), Y: "r", V: []byte("LD\x00\x01"), R: krpc.Return{ID: krpc.RandomID()}}
	m.IP = netip.MustParseAddrPort("127.0.0.1:6881")
	for i := range 8 {
		m.R.Nodes = append(m.R.Nodes, krpc.NodeInfo{ID: krpc.RandomID(),
			Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 1, byte(i + 1)}), 6881+uint16(i))})
	}
	wire, err := m.MarshalBinary()
	if err != nil {
		b.Fatal(err)
	}
	return wire
}

// BenchmarkDecodeFindNodeReply compares decoding the same 8-node reply:
// ours into a reused Msg (the transport's read loop for queries), ours into
// a fresh Msg per packet (the reply path), and anacrolix/dht/v2 krpc.Msg
// with anacrolix/torrent/bencode.
func BenchmarkDecodeFindNodeReply(b *testing.B) {
	wire := findNodeReply(b)
	b.Run("lightdht/reused", func(b *testing.B) {
		var m krpc.Msg
		b.ReportAllocs()
		b.SetBytes(int64(len(wire)))
		for b.Loop() {
			if err := krpc.Unmarshal(wire, &m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("lightdht/fresh", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(wire)))
		for b.Loop() {
			m := new(krpc.Msg)
			if err := krpc.Unmarshal(wire, m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("anacrolix", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(wire)))
		for b.Loop() {
			var m akrpc.Msg
			if err := bencode.Unmarshal(wire, &m); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkEncodeFindNodeReply compares encoding the same 8-node reply.
func BenchmarkEncodeFindNodeReply(b *testing.B) {
	wire := findNodeReply(b)
	b.Run("lightdht", func(b *testing.B) {
		var m krpc.Msg
		if err := krpc.Unmarshal(wire, &m); err != nil {
			b.Fatal(err)
		}
		buf := make([]byte, 0, 1500)
		b.ReportAllocs()
		b.SetBytes(int64(len(wire)))
		for b.Loop() {
			if _, err := m.AppendBinary(buf[:0]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("anacrolix", func(b *testing.B) {
		var m akrpc.Msg
		if err := bencode.Unmarshal(wire, &m); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.SetBytes(int64(len(wire)))
		for b.Loop() {
			if _, err := bencode.Marshal(m); err != nil {
				b.Fatal(err)
			}
		}
	})
}
