package interop

import (
	"context"
	"crypto/ed25519"
	"net"
	"net/netip"
	"testing"

	abep44 "github.com/anacrolix/dht/v2/bep44"
	"github.com/anacrolix/dht/v2/exts/getput"
	akrpc "github.com/anacrolix/dht/v2/krpc"

	"github.com/lightdht/lightdht/bep44"
)

// TestBEP44BothWays: items put through anacrolix/dht are got through a
// lightdht node and the other way round, immutable and mutable, stored on
// a network of anacrolix servers and on a network of lightdht nodes.
func TestBEP44BothWays(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, sn network) {
		for _, storage := range []string{"anacrolix storage", "lightdht storage"} {
			t.Run(storage, func(t *testing.T) {
				var addrs []netip.AddrPort
				if storage == "anacrolix storage" {
					_, _, addrs = anacrolixMesh(t, sn, 10)
				} else {
					for _, n := range lightdhtNetwork(t, sn, 10) {
						addrs = append(addrs, n.Addr())
					}
				}
				ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
				defer cancel()
				ours := newNode(t, sn.conn(t), addrs[0])
				if _, err := ours.Bootstrap(ctx); err != nil {
					t.Fatalf("bootstrap: %v", err)
				}
				var starting []*net.UDPAddr
				for _, a := range addrs {
					starting = append(starting, udpAddr(a))
				}
				theirs := newAnacrolix(t, sn.conn(t), starting...)
				for _, a := range addrs {
					theirs.Ping(udpAddr(a)) // fill its table
				}
				pub, priv, _ := ed25519.GenerateKey(nil)
				k := [32]byte(pub)

				// anacrolix puts, lightdht gets.
				{
					immTarget := bep44.ImmutableTarget([]byte("20:hello from anacrolix"))
					if _, err := getput.Put(ctx, akrpc.ID(immTarget), theirs, nil, func(int64) abep44.Put {
						return abep44.Put{V: "hello from anacrolix"}
					}); err != nil {
						t.Fatalf("anacrolix immutable put: %v", err)
					}
					if gr, err := ours.Get(ctx, immTarget); err != nil || string(gr.Item.V) != "20:hello from anacrolix" {
						t.Errorf("lightdht get of anacrolix's immutable item: %v, %q", err, gr.Item.V)
					}
					salt := []byte("salt")
					if _, err := getput.Put(ctx, akrpc.ID(bep44.MutableTarget(k, salt)), theirs, salt, func(int64) abep44.Put {
						p := abep44.Put{V: "their value", K: &k, Salt: salt, Seq: 4}
						p.Sign(priv)
						return p
					}); err != nil {
						t.Fatalf("anacrolix mutable put: %v", err)
					}
					if gr, err := ours.GetMutable(ctx, k, salt); err != nil || gr.Item.Seq != 4 || string(gr.Item.V) != "11:their value" {
						t.Errorf("lightdht get of anacrolix's mutable item: %v, seq %d %q", err, gr.Item.Seq, gr.Item.V)
					}
				}

				// lightdht puts, anacrolix gets.
				pr, err := ours.Put(ctx, bep44.Item{V: []byte("15:hello from ours")}, nil)
				if err != nil {
					t.Fatalf("lightdht immutable put: %v", err)
				}
				res, _, err := getput.Get(ctx, abep44.Target(pr.Target), theirs, nil, nil)
				if err != nil || string(res.V) != "15:hello from ours" {
					t.Errorf("anacrolix get of our immutable item: %v, %q", err, res.V)
				}
				if gr, err := ours.Get(ctx, pr.Target); err != nil || string(gr.Item.V) != "15:hello from ours" {
					t.Errorf("lightdht get of our immutable item: %v, %q", err, gr.Item.V)
				}
				osalt := []byte("ours")
				item := bep44.Item{V: []byte("i42e"), Mutable: true, K: k, Salt: osalt, Seq: 9, Sig: bep44.Sign(priv, osalt, 9, []byte("i42e"))}
				if _, err := ours.Put(ctx, item, nil); err != nil {
					t.Fatalf("lightdht mutable put: %v", err)
				}
				res, _, err = getput.Get(ctx, abep44.Target(bep44.MutableTarget(k, osalt)), theirs, nil, osalt)
				if err != nil || res.Seq != 9 || string(res.V) != "i42e" || !res.Mutable {
					t.Errorf("anacrolix get of our mutable item: %v, seq %d %q", err, res.Seq, res.V)
				}
				if gr, err := ours.GetMutable(ctx, k, osalt); err != nil || gr.Item.Seq != 9 || string(gr.Item.V) != "i42e" {
					t.Errorf("lightdht get of our mutable item: %v, seq %d %q", err, gr.Item.Seq, gr.Item.V)
				}
			})
		}
	})
}
