package lightdht

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lightdht/lightdht/internal/simnet"
	"github.com/lightdht/lightdht/krpc"
)

// TestTokenHolderIsKnown: a querier that presents a valid token in an
// announce_peer has shown that it receives at its address, so it joins
// the known addresses, whose queries are served first in a thin flood;
// one that only asked get_peers, or presented a bad token, does not.
func TestTokenHolderIsKnown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sn, err := simnet.New(simnet.Config{Seed: 5})
		if err != nil {
			t.Fatal(err)
		}
		defer sn.Close()
		nc, err := sn.Listen(netip.MustParseAddrPort("127.251.0.1:6881"))
		if err != nil {
			t.Fatal(err)
		}
		node, err := New(Config{Conn4: nc, NoMaintenance: true})
		if err != nil {
			t.Fatal(err)
		}
		go node.Serve(context.Background())
		defer node.Close()
		if node.limits.known == nil {
			t.Fatal("a node with the default send cap keeps no known addresses")
		}
		querier := func(a string) (*krpc.Transport, netip.AddrPort) {
			ap := netip.MustParseAddrPort(a)
			c, err := sn.Listen(ap)
			if err != nil {
				t.Fatal(err)
			}
			tr, err := krpc.New(krpc.Config{Conn: c, Retries: krpc.NoRetries, Timeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			go tr.Serve(context.Background())
			t.Cleanup(func() { tr.Close() })
			return tr, ap
		}
		ih := krpc.RandomID()
		ask := func(tr *krpc.Transport, q *krpc.Msg) *krpc.Msg {
			t.Helper()
			r, err := tr.Query(context.Background(), node.Addr(), q)
			if err != nil {
				t.Fatalf("%s: %v", q.Q, err)
			}
			return r.Msg
		}
		holder, holderAddr := querier("127.251.1.1:6881")
		asker, askerAddr := querier("127.251.1.2:6881")
		forger, forgerAddr := querier("127.251.1.3:6881")
		for _, tr := range []*krpc.Transport{holder, asker, forger} {
			r := ask(tr, &krpc.Msg{Q: krpc.MethodGetPeers, A: krpc.Args{ID: krpc.RandomID(), InfoHash: ih}})
			if len(r.R.Token) == 0 {
				t.Fatal("get_peers reply without a token")
			}
			if tr == holder {
				if m := ask(tr, &krpc.Msg{Q: krpc.MethodAnnouncePeer, A: krpc.Args{ID: krpc.RandomID(), InfoHash: ih,
					Port: 6881, Token: r.R.Token}}); m.Y != krpc.KindReply {
					t.Fatalf("announce with a valid token: %+v", m)
				}
			}
			if tr == forger {
				_, err := tr.Query(context.Background(), node.Addr(), &krpc.Msg{Q: krpc.MethodAnnouncePeer,
					A: krpc.Args{ID: krpc.RandomID(), InfoHash: ih, Port: 6881, Token: []byte("not a token")}})
				var ke *krpc.Error
				if !errors.As(err, &ke) || ke.Code != krpc.CodeProtocol {
					t.Fatalf("announce with a bad token: %v, want error 203", err)
				}
			}
		}
		now := node.cfg.Now()
		if !node.limits.known.has(holderAddr, now) {
			t.Error("the querier that presented a valid token is not known")
		}
		if node.limits.known.has(askerAddr, now) || node.limits.known.has(forgerAddr, now) {
			t.Error("a querier that only asked, or forged a token, is known")
		}
	})
}
