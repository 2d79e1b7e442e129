package lightdht_test

import (
	"context"
	"crypto/ed25519"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lightdht/lightdht/bep44"
	"github.com/lightdht/lightdht/internal/simnet"
)

// TestBEP44BothFamilies: a put reaches the closest nodes of both address
// families, and a get still finds the item, both kinds, when one family
// carries no packets at all.
func TestBEP44BothFamilies(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sim, err := simnet.New(simnet.Config{Seed: 8, Latency: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sim.Close() }) // registered first: runs after the nodes close
		nodes, _ := dualStackNodes(t, sim, 60)
		ctx := context.Background()
		for range 2 {
			for _, n := range nodes[1:] {
				n.Bootstrap(ctx)
			}
		}
		pub, priv, _ := ed25519.GenerateKey(nil)
		mutable := bep44.Item{Mutable: true, K: [32]byte(pub), Salt: []byte("s"), Seq: 4, V: []byte("5:hello")}
		mutable.Sig = bep44.Sign(priv, mutable.Salt, mutable.Seq, mutable.V)
		for _, it := range []bep44.Item{{V: []byte("3:abc")}, mutable} {
			pr, err := nodes[5].Put(ctx, it, nil)
			if err != nil {
				t.Fatalf("put: %v", err)
			}
			var v4, v6 int
			for _, ni := range pr.StoredAt {
				if ni.Is6() {
					v6++
				} else {
					v4++
				}
			}
			if v4 < 8 || v6 < 8 {
				t.Errorf("put stored at %d IPv4 and %d IPv6 nodes, want 8 of each", v4, v6)
			}
			for _, drop := range []bool{false, true} { // drop IPv4, then IPv6
				sim.SetLinkFilter(func(from, _ netip.AddrPort) bool { return from.Addr().Is4() != drop })
				// Fake time: past the quiet window of the addresses that
				// timed out in the previous round (see recall.go).
				time.Sleep(20 * time.Minute)
				var found bool
				var got bep44.Item
				if it.Mutable {
					r, err := nodes[40].GetMutable(ctx, it.K, it.Salt)
					found, got = err == nil && r.Found, r.Item
				} else {
					r, err := nodes[40].Get(ctx, it.Target())
					found, got = err == nil && r.Found, r.Item
				}
				if !found || string(got.V) != string(it.V) || got.Seq != it.Seq {
					t.Errorf("get (mutable %v) with only IPv%d carrying packets: found %v, %q seq %d", it.Mutable, map[bool]int{false: 6, true: 4}[drop], found, got.V, got.Seq)
				}
			}
			sim.SetLinkFilter(nil)
		}
	})
}
