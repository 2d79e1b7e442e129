package lightdht_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lightdht/lightdht"
	"github.com/lightdht/lightdht/bep44"
	"github.com/lightdht/lightdht/internal/simnet"
	"github.com/lightdht/lightdht/krpc"
)

// TestPutGetHandling talks BEP 44 to one node directly: get issues a
// token, put stores, and each bad put gets its BEP 44 error code.
func TestPutGetHandling(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil)
		me := krpc.RandomID()
		pub, priv, _ := ed25519.GenerateKey(nil)
		k := [32]byte(pub)
		target := bep44.MutableTarget(k, []byte("salt"))
		resp, err := r.query(t, &krpc.Msg{Q: krpc.MethodGet, A: krpc.Args{ID: me, Target: target}})
		if err != nil || len(resp.R.Token) == 0 || len(resp.R.V) != 0 {
			t.Fatalf("get of a missing item: %v, token %x, v %q", err, resp.R.Token, resp.R.V)
		}
		token := append([]byte(nil), resp.R.Token...)
		put := func(v string, salt string, seq int64, sig [64]byte, cas *int64) error {
			s := seq
			_, err := r.query(t, &krpc.Msg{Q: krpc.MethodPut, A: krpc.Args{ID: me, Token: token, V: []byte(v), K: k, Salt: []byte(salt), Seq: &s, Sig: sig, CAS: cas}})
			return err
		}
		sign := func(v, salt string, seq int64) [64]byte { return bep44.Sign(priv, []byte(salt), seq, []byte(v)) }
		if err := put("1:a", "salt", 3, sign("1:a", "salt", 3), nil); err != nil {
			t.Fatalf("put: %v", err)
		}
		resp, err = r.query(t, &krpc.Msg{Q: krpc.MethodGet, A: krpc.Args{ID: me, Target: target}})
		if err != nil || string(resp.R.V) != "1:a" || resp.R.Seq == nil || *resp.R.Seq != 3 || resp.R.K != k {
			t.Fatalf("get: %v, v %q seq %v", err, resp.R.V, resp.R.Seq)
		}
		// A getter that already has seq 3 gets no value, only the seq.
		three := int64(3)
		resp, err = r.query(t, &krpc.Msg{Q: krpc.MethodGet, A: krpc.Args{ID: me, Target: target, Seq: &three}})
		if err != nil || len(resp.R.V) != 0 || resp.R.Seq == nil || *resp.R.Seq != 3 {
			t.Errorf("get with seq 3: %v, v %q", err, resp.R.V)
		}
		bad := sign("1:b", "salt", 4)
		bad[5] ^= 1
		long := "1001:" + strings.Repeat("x", 1001)
		two := int64(2)
		cases := []struct {
			name string
			err  error
			code int
		}{
			{"bad signature", put("1:b", "salt", 4, bad, nil), krpc.CodeBadSignature},
			{"stale seq", put("1:b", "salt", 2, sign("1:b", "salt", 2), nil), krpc.CodeSeqTooLow},
			{"CAS mismatch", put("1:b", "salt", 4, sign("1:b", "salt", 4), &two), krpc.CodeCASMismatch},
			{"value too big", put(long, "salt", 5, sign(long, "salt", 5), nil), krpc.CodeValueTooBig},
			{"salt too big", put("1:b", strings.Repeat("s", 65), 5, sign("1:b", strings.Repeat("s", 65), 5), nil), krpc.CodeSaltTooBig},
		}
		for _, tc := range cases {
			var kerr *krpc.Error
			if !errors.As(tc.err, &kerr) || kerr.Code != tc.code {
				t.Errorf("%s: got %v, want code %d", tc.name, tc.err, tc.code)
			}
		}
		// A put with a forged token: 203.
		s := int64(9)
		_, err = r.query(t, &krpc.Msg{Q: krpc.MethodPut, A: krpc.Args{ID: me, Token: []byte("forged!!"), V: []byte("1:c"), K: k, Salt: []byte("salt"), Seq: &s, Sig: sign("1:c", "salt", 9)}})
		wantCode(t, err, krpc.CodeProtocol)
	})
}

// TestPutGetAcrossNetwork: on 200 nodes an item put from one node is got
// from another, for both kinds; a higher seq wins; a stale seq and a bad
// CAS are refused with their codes; and items expire.
func TestPutGetAcrossNetwork(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tn := newTestNet(t, 200, simnet.Config{Seed: 6, Latency: 10 * time.Millisecond}, func(c *lightdht.Config) {
			c.ItemTTL = 30 * time.Minute
		})
		ctx := context.Background()
		a, b := tn.nodes[7], tn.nodes[150]

		imm := bep44.Item{V: []byte("12:Hello World!")}
		pr, err := a.Put(ctx, imm, nil)
		if err != nil || len(pr.StoredAt) == 0 {
			t.Fatalf("immutable put: %v (%d nodes)", err, len(pr.StoredAt))
		}
		if pr.Target.String() != "e5f96f6f38320f0f33959cb4d3d656452117aadb" {
			t.Errorf("target %v", pr.Target)
		}
		gr, err := b.Get(ctx, pr.Target)
		if err != nil || string(gr.Item.V) != "12:Hello World!" {
			t.Fatalf("immutable get: %v, %q", err, gr.Item.V)
		}

		pub, priv, _ := ed25519.GenerateKey(nil)
		k := [32]byte(pub)
		mut := func(seq int64, v string) bep44.Item {
			return bep44.Item{V: []byte(v), Mutable: true, K: k, Salt: []byte("s"), Seq: seq, Sig: bep44.Sign(priv, []byte("s"), seq, []byte(v))}
		}
		if _, err := a.Put(ctx, mut(1, "5:first"), nil); err != nil {
			t.Fatalf("mutable put seq 1: %v", err)
		}
		if gr, err := b.GetMutable(ctx, k, []byte("s")); err != nil || gr.Item.Seq != 1 || string(gr.Item.V) != "5:first" {
			t.Fatalf("get after seq 1: %v, seq %d %q", err, gr.Item.Seq, gr.Item.V)
		}
		one := int64(1)
		pr2, err := b.Put(ctx, mut(2, "6:second"), &one)
		if err != nil {
			t.Fatalf("mutable put seq 2 with CAS 1: %v", err)
		}
		holders := map[krpc.NodeInfo]bool{}
		for _, ni := range pr2.StoredAt {
			holders[ni] = true
		}
		if gr, err := a.GetMutable(ctx, k, []byte("s")); err != nil || gr.Item.Seq != 2 || string(gr.Item.V) != "6:second" {
			t.Fatalf("get after seq 2: %v, seq %d %q", err, gr.Item.Seq, gr.Item.V)
		}
		// A stale seq and a bad CAS are refused, with codes, by every node
		// that holds seq 2. Lookups from a and from b need not end on the
		// same K nodes: a node at the edge that b's put missed holds seq 1
		// and rightly takes a CAS of 1, so only the holders are asked to
		// refuse, and they must be most of the nodes reached.
		for _, tc := range []struct {
			name string
			item bep44.Item
			cas  *int64
			code int
		}{
			{"stale seq", mut(1, "5:stale"), nil, krpc.CodeSeqTooLow},
			{"bad CAS", mut(3, "5:third"), &one, krpc.CodeCASMismatch},
		} {
			pr, err := a.Put(ctx, tc.item, tc.cas)
			for _, ni := range pr.StoredAt {
				if holders[ni] {
					t.Errorf("%s: stored at %v, which holds seq 2", tc.name, ni)
				}
			}
			if len(pr.Refused) <= len(pr.StoredAt) || (err == nil) != (len(pr.StoredAt) > 0) {
				t.Errorf("%s: err %v, stored at %d, refused by %d; want most nodes to refuse", tc.name, err, len(pr.StoredAt), len(pr.Refused))
			}
			for ni, e := range pr.Refused {
				var kerr *krpc.Error
				if !errors.As(e, &kerr) || kerr.Code != tc.code {
					t.Errorf("%s: %v refused with %v, want code %d", tc.name, ni, e, tc.code)
				}
			}
		}
		// Items expire: 31 minutes later there is nothing to get.
		time.Sleep(31 * time.Minute)
		if _, err := b.Get(ctx, pr.Target); !errors.Is(err, bep44.ErrNotFound) {
			t.Errorf("immutable item after its TTL: %v, want ErrNotFound", err)
		}
		if _, err := b.GetMutable(ctx, k, []byte("s")); !errors.Is(err, bep44.ErrNotFound) {
			t.Errorf("mutable item after its TTL: %v, want ErrNotFound", err)
		}
	})
}

// TestObserverSeesItems: incoming gets and accepted puts are reported with
// the item's target (and a mutable item's seq), so that the database can
// record who stored what.
func TestObserverSeesItems(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var seen []lightdht.Sighting
		r := newRig(t, func(c *lightdht.Config) {
			c.Observer = lightdht.ObserverFunc(func(s lightdht.Sighting) {
				if s.Method == krpc.MethodGet || s.Method == krpc.MethodPut {
					seen = append(seen, s)
				}
			})
		})
		me := krpc.RandomID()
		pub, priv, _ := ed25519.GenerateKey(nil)
		k := [32]byte(pub)
		target := bep44.MutableTarget(k, nil)
		resp, err := r.query(t, &krpc.Msg{Q: krpc.MethodGet, A: krpc.Args{ID: me, Target: target}})
		if err != nil {
			t.Fatal(err)
		}
		seq := int64(12)
		if _, err := r.query(t, &krpc.Msg{Q: krpc.MethodPut, A: krpc.Args{ID: me, Token: resp.R.Token, V: []byte("1:x"), K: k, Seq: &seq,
			Sig: bep44.Sign(priv, nil, 12, []byte("1:x"))}}); err != nil {
			t.Fatal(err)
		}
		if len(seen) != 2 {
			t.Fatalf("%d sightings, want 2", len(seen))
		}
		if g := seen[0]; g.Method != krpc.MethodGet || g.Item != target || g.Node.ID != me {
			t.Errorf("get sighting %+v", g)
		}
		if p := seen[1]; p.Method != krpc.MethodPut || p.Item != target || !p.ItemMutable || p.ItemSeq != 12 || p.Node.ID != me {
			t.Errorf("put sighting %+v", p)
		}
	})
}
