package krpc_test

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lightdht/lightdht/internal/simnet"
	"github.com/lightdht/lightdht/krpc"
)

// bigReplier answers get_peers with 50 IPv6 peers and 8 nodes of each
// family (about 1,800 bytes), and get with a value of vlen bytes.
func bigReplier(vlen int) krpc.Handler {
	return krpc.HandlerFunc(func(reply, q *krpc.Msg, src netip.AddrPort) bool {
		reply.R.ID = krpc.ID{1}
		switch q.Q {
		case krpc.MethodGetPeers:
			for i := range 50 {
				reply.R.Values = append(reply.R.Values, netip.AddrPortFrom(netip.AddrFrom16([16]byte{0xfd, 15: byte(i)}), 6881))
			}
			for i := range 8 {
				reply.R.Nodes = append(reply.R.Nodes, krpc.NodeInfo{ID: krpc.ID{byte(i)}, Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, byte(i + 1)}), 1)})
				reply.R.Nodes6 = append(reply.R.Nodes6, krpc.NodeInfo{ID: krpc.ID{byte(i)}, Addr: netip.AddrPortFrom(netip.AddrFrom16([16]byte{0xfd, 15: byte(i + 1)}), 1)})
			}
			reply.R.Token = []byte("tok")
		case krpc.MethodGet:
			reply.R.V = []byte(strconv.Itoa(vlen) + ":" + strings.Repeat("x", vlen)) // a bencoded string
		}
		return true
	})
}

// TestAmplificationCap: a reply over 10 times its query is trimmed from
// the tails of values, nodes6 and nodes until it fits, and one that cannot
// be trimmed enough (a large value) is not sent at all.
func TestAmplificationCap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t, simnet.Config{})
		tr, addr := startTransport(t, n, krpc.Config{Handler: bigReplier(900)})
		q := krpc.Msg{T: []byte("aa"), Y: krpc.KindQuery, Q: krpc.MethodGetPeers, A: krpc.Args{ID: krpc.ID{2}, InfoHash: krpc.ID{3}}}
		pkt, _ := q.MarshalBinary()
		b := rawExchange(t, n, addr, pkt)
		if b == nil {
			t.Fatal("no reply to get_peers")
		}
		if len(b) > 10*len(pkt) {
			t.Errorf("reply of %d bytes to a %d-byte query", len(b), len(pkt))
		}
		var r krpc.Msg
		if err := krpc.Unmarshal(b, &r); err != nil {
			t.Fatal(err)
		}
		// Values go first; the head of the list is kept.
		if len(r.R.Values) == 0 || len(r.R.Values) == 50 || r.R.Values[0].Addr().As16()[15] != 0 {
			t.Errorf("values after trimming: %d, first %v", len(r.R.Values), r.R.Values)
		}
		if len(r.R.Nodes) != 8 || len(r.R.Nodes6) != 8 || string(r.R.Token) != "tok" {
			t.Errorf("nodes %d, nodes6 %d, token %q: trimmed before the values", len(r.R.Nodes), len(r.R.Nodes6), r.R.Token)
		}
		// A query ten times smaller than a 900-byte value gets nothing.
		get := krpc.Msg{T: []byte("bb"), Y: krpc.KindQuery, Q: krpc.MethodGet, A: krpc.Args{ID: krpc.ID{2}, Target: krpc.ID{4}}}
		pkt, _ = get.MarshalBinary()
		if b := rawExchange(t, n, addr, pkt); b != nil {
			t.Errorf("a %d-byte reply to a %d-byte get", len(b), len(pkt))
		}
		s := tr.Stats()
		if s.RepliesTrimmed != 1 || s.DroppedAmplification != 1 {
			t.Errorf("RepliesTrimmed %d, DroppedAmplification %d, want 1 and 1", s.RepliesTrimmed, s.DroppedAmplification)
		}
	})
}

// TestAmplificationCapOff: MaxAmplification < 0 sends replies whole.
func TestAmplificationCapOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t, simnet.Config{})
		_, addr := startTransport(t, n, krpc.Config{Handler: bigReplier(900), MaxAmplification: -1})
		q := krpc.Msg{T: []byte("aa"), Y: krpc.KindQuery, Q: krpc.MethodGetPeers, A: krpc.Args{ID: krpc.ID{2}, InfoHash: krpc.ID{3}}}
		pkt, _ := q.MarshalBinary()
		var r krpc.Msg
		if err := (krpc.Limits{MaxSize: 4000}).Unmarshal(rawExchange(t, n, addr, pkt), &r); err != nil || len(r.R.Values) != 50 {
			t.Errorf("values %d (%v), want all 50", len(r.R.Values), err)
		}
	})
}

// TestPrefixReplyCap: replies to one /24 stop at the bucket's bytes,
// refill at the rate, and other prefixes are unaffected.
func TestPrefixReplyCap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t, simnet.Config{})
		tr, addr := startTransport(t, n, krpc.Config{Handler: pinger(krpc.ID{1}), PrefixReplyRate: 1000, PrefixReplyBurst: 2000})
		q := krpc.Msg{T: []byte("aa"), Y: krpc.KindQuery, Q: krpc.MethodPing, A: krpc.Args{ID: krpc.ID{2}}}
		pkt, _ := q.MarshalBinary()
		// exchange sends the ping from each ip at once, then collects the
		// replies: a read that waits out its deadline would advance the
		// fake clock and refill the bucket.
		exchange := func(ips ...string) (answered, bytes int) {
			var conns []*simnet.Conn
			for _, ip := range ips {
				c, err := n.Listen(netip.AddrPortFrom(netip.MustParseAddr(ip), 1))
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				c.WriteToUDPAddrPort(pkt, addr)
				conns = append(conns, c)
			}
			synctest.Wait() // every ping handled
			for _, c := range conns {
				c.SetReadDeadline(time.Now().Add(time.Millisecond)) // refills one byte at most
				if k, _, err := c.ReadFromUDPAddrPort(make([]byte, 1500)); err == nil {
					answered, bytes = answered+1, bytes+k
				}
			}
			return answered, bytes
		}
		// Sources all over one /24, in the same instant.
		var ips []string
		for i := range 100 {
			ips = append(ips, "127.9.9."+strconv.Itoa(i+1))
		}
		answered, got := exchange(ips...)
		if got > 2000 || answered == 0 {
			t.Errorf("%d replies, %d bytes to one /24 in an instant, want at most the 2000-byte bucket", answered, got)
		}
		if k, _ := exchange("127.9.10.1"); k == 0 {
			t.Error("another /24 was refused")
		}
		if tr.Stats().DroppedPrefixCap == 0 {
			t.Error("no reply counted in DroppedPrefixCap")
		}
		time.Sleep(time.Second) // refills 1000 bytes
		if k, _ := exchange("127.9.9.200"); k == 0 {
			t.Error("the /24 got nothing after its bucket refilled")
		}
	})
}

// TestAdmitHook: a packet Admit refuses reaches no handler and gets no
// reply.
func TestAdmitHook(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t, simnet.Config{})
		handled := 0
		h := krpc.HandlerFunc(func(reply, q *krpc.Msg, src netip.AddrPort) bool {
			handled++
			reply.R.ID = krpc.ID{1}
			return true
		})
		tr, addr := startTransport(t, n, krpc.Config{Handler: h, Admit: func(src netip.AddrPort) krpc.Admission {
			if src.Addr().As4()[3]%2 == 0 {
				return krpc.Admitted
			}
			return krpc.Refused
		}})
		q := krpc.Msg{T: []byte("aa"), Y: krpc.KindQuery, Q: krpc.MethodPing, A: krpc.Args{ID: krpc.ID{2}}}
		pkt, _ := q.MarshalBinary()
		answered := 0
		for i := range 10 {
			c, _ := n.Listen(netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 8, 0, byte(i + 1)}), 1))
			c.WriteToUDPAddrPort(pkt, addr)
			c.SetReadDeadline(time.Now().Add(time.Second))
			if _, _, err := c.ReadFromUDPAddrPort(make([]byte, 1500)); err == nil {
				answered++
			}
			c.Close()
		}
		if answered != 5 || handled != 5 || tr.Stats().DroppedNotAdmitted != 5 {
			t.Errorf("answered %d, handled %d, not admitted %d; want 5, 5, 5", answered, handled, tr.Stats().DroppedNotAdmitted)
		}
	})
}
