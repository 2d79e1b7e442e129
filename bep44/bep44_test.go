package bep44

import (
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lightdht/lightdht/internal/clocktest"
	"github.com/lightdht/lightdht/krpc"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The test vectors of BEP 44. The BEP gives the signer's expanded private
// key, which crypto/ed25519 cannot sign with; its signatures are checked
// against our signing buffer with the public key instead.
const (
	vectorPub     = "77ff84905a91936367c01360803104f92432fcd904a43511876df5cdf3e7e548"
	vectorSig     = "305ac8aeb6c9c151fa120f120ea2cfb923564e11552d06a5d856091e5e853cff1260d3f39e4999684aa92eb73ffd136e6f4f3ecbfda0ce53a1608ecd7ae21f01"
	vectorSaltSig = "6834284b6b24c3204eb2fea824d82f88883a3d95e8b4a21b8c0ded553d17d17ddf9a8a7104b1258f30bed3787e6cb896fca78c58f8e03b5f18f14951a87d9a08"
)

func TestVectors(t *testing.T) {
	v := []byte("12:Hello World!")
	k := [32]byte(unhex(t, vectorPub))
	cases := []struct {
		name       string
		salt       string
		wantBuf    string
		sig        string
		wantTarget string
	}{
		{"mutable", "", "3:seqi1e1:v12:Hello World!", vectorSig, "4a533d47ec9c7d95b1ad75f576cffc641853b750"},
		{"mutable with salt", "foobar", "4:salt6:foobar3:seqi1e1:v12:Hello World!", vectorSaltSig, "411eba73b6f087ca51a3795d9c8c938d365e32c1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			salt := []byte(tc.salt)
			if got := string(AppendSigningBuffer(nil, salt, 1, v)); got != tc.wantBuf {
				t.Errorf("signing buffer %q, want %q", got, tc.wantBuf)
			}
			sig := [64]byte(unhex(t, tc.sig))
			if !Verify(k, salt, 1, v, sig) {
				t.Error("the BEP's signature does not verify")
			}
			if Verify(k, salt, 2, v, sig) {
				t.Error("the signature verifies for another seq")
			}
			if got := MutableTarget(k, salt).String(); got != tc.wantTarget {
				t.Errorf("target %s, want %s", got, tc.wantTarget)
			}
			it := Item{V: v, Mutable: true, K: k, Salt: salt, Seq: 1, Sig: sig}
			if err := it.Check(); err != nil {
				t.Errorf("Check: %v", err)
			}
		})
	}
	if got := ImmutableTarget(v).String(); got != "e5f96f6f38320f0f33959cb4d3d656452117aadb" {
		t.Errorf("immutable target %s", got)
	}
}

func TestSignRoundTrip(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	k := [32]byte(pub)
	v := []byte("d1:ai1ee")
	sig := Sign(priv, []byte("s"), 7, v)
	if !Verify(k, []byte("s"), 7, v, sig) {
		t.Fatal("own signature does not verify")
	}
	for _, bad := range []struct {
		salt string
		seq  int64
		v    string
	}{{"t", 7, "d1:ai1ee"}, {"s", 8, "d1:ai1ee"}, {"s", 7, "d1:ai2ee"}} {
		if Verify(k, []byte(bad.salt), bad.seq, []byte(bad.v), sig) {
			t.Errorf("signature verifies for %+v", bad)
		}
	}
}

func code(err error) int {
	var kerr *krpc.Error
	if errors.As(err, &kerr) {
		return kerr.Code
	}
	return 0
}

func TestStore(t *testing.T) {
	clock := clocktest.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	s := NewStore(StoreConfig{Now: clock.Now, TTL: time.Hour, MaxItems: 3})
	pub, priv, _ := ed25519.GenerateKey(nil)
	k := [32]byte(pub)
	mut := func(seq int64, v string) Item {
		return Item{V: []byte(v), Mutable: true, K: k, Salt: []byte("x"), Seq: seq, Sig: Sign(priv, []byte("x"), seq, []byte(v))}
	}
	i64 := func(v int64) *int64 { return &v }

	imm := Item{V: []byte("5:hello")}
	if err := s.Put(imm, nil); err != nil {
		t.Fatal(err)
	}
	if got, ok := s.Get(ImmutableTarget([]byte("5:hello"))); !ok || string(got.V) != "5:hello" {
		t.Fatalf("immutable get: %v %q", ok, got.V)
	}
	target := MutableTarget(k, []byte("x"))
	steps := []struct {
		name     string
		item     Item
		cas      *int64
		wantCode int
		wantSeq  int64
	}{
		{"first put", mut(5, "1:a"), nil, 0, 5},
		{"higher seq wins", mut(6, "1:b"), nil, 0, 6},
		{"lower seq refused", mut(4, "1:c"), nil, krpc.CodeSeqTooLow, 6},
		{"same seq other value refused", mut(6, "1:d"), nil, krpc.CodeSeqTooLow, 6},
		{"same item renews", mut(6, "1:b"), nil, 0, 6},
		{"bad cas refused", mut(7, "1:e"), i64(5), krpc.CodeCASMismatch, 6},
		{"good cas", mut(7, "1:e"), i64(6), 0, 7},
	}
	for _, st := range steps {
		err := s.Put(st.item, st.cas)
		if code(err) != st.wantCode {
			t.Errorf("%s: error %v, want code %d", st.name, err, st.wantCode)
		}
		if got, _ := s.Get(target); got.Seq != st.wantSeq {
			t.Errorf("%s: stored seq %d, want %d", st.name, got.Seq, st.wantSeq)
		}
	}
	bad := mut(8, "1:f")
	bad.Sig[0] ^= 1
	if c := code(s.Put(bad, nil)); c != krpc.CodeBadSignature {
		t.Errorf("bad signature: code %d", c)
	}
	big := Item{V: []byte("1001:" + strings.Repeat("x", 1001))}
	if c := code(s.Put(big, nil)); c != krpc.CodeValueTooBig {
		t.Errorf("big value: code %d", c)
	}
	salty := mut(1, "1:a")
	salty.Salt = []byte(strings.Repeat("s", 65))
	if c := code(s.Put(salty, nil)); c != krpc.CodeSaltTooBig {
		t.Errorf("big salt: code %d", c)
	}
	if c := code(s.Put(Item{V: []byte("5:ab")}, nil)); c != krpc.CodeProtocol {
		t.Errorf("broken bencode: code %d", c)
	}

	// Expiry: an hour after its last put an item is gone.
	clock.Step(59 * time.Minute)
	if _, ok := s.Get(target); !ok {
		t.Error("item gone before its TTL")
	}
	clock.Step(time.Minute)
	if _, ok := s.Get(target); ok {
		t.Error("item outlived its TTL")
	}

	// Eviction: with MaxItems 3, the fourth item pushes out the oldest.
	for i, v := range []string{"1:p", "1:q", "1:r", "1:s"} {
		clock.Step(time.Second)
		if err := s.Put(Item{V: []byte(v)}, nil); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	if s.Len() != 3 {
		t.Errorf("%d items held, want 3", s.Len())
	}
	if _, ok := s.Get(ImmutableTarget([]byte("1:p"))); ok {
		t.Error("the oldest item survived eviction")
	}
}
