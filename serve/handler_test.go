package serve

import (
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lightdht/lightdht/bep44"
	"github.com/lightdht/lightdht/internal/clocktest"
	"github.com/lightdht/lightdht/internal/peerstore"
	"github.com/lightdht/lightdht/krpc"
	"github.com/lightdht/lightdht/observe"
	"github.com/lightdht/lightdht/table"
	"github.com/lightdht/lightdht/tokens"
)

// rig is a handler with real parts, one table holding both families, an
// injected clock and a record of what it observed and heard.
type rig struct {
	h     *Handler
	tab   table.Table
	clock *clocktest.Clock
	mu    sync.Mutex
	seen  []observe.Sighting
	heard []krpc.NodeInfo
	tid   atomic.Uint32 // the last transaction ID ask made up
}

func newRig(t *testing.T, tweak func(*Config)) *rig {
	t.Helper()
	r := &rig{clock: clocktest.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))}
	clock := r.clock.Now
	self := krpc.RandomID()
	var err error
	if r.tab, err = table.New(table.KBucket, table.Config{Self: self, IPsPerBucket: -1, Now: clock}); err != nil {
		t.Fatal(err)
	}
	tok, err := tokens.New(tokens.Config{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	ps, err := peerstore.New(peerstore.Config{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		ID: self, Table4: r.tab, Table6: r.tab, Tokens: tok, Peers: ps,
		Items:   bep44.NewStore(bep44.StoreConfig{Now: clock}),
		Samples: true, SampleInterval: 10 * time.Minute, Now: clock,
		Observer: observe.ObserverFunc(func(s observe.Sighting) {
			r.mu.Lock()
			r.seen = append(r.seen, s)
			r.mu.Unlock()
		}),
		Heard: func(_ *krpc.Msg, ni krpc.NodeInfo) {
			r.mu.Lock()
			r.heard = append(r.heard, ni)
			r.mu.Unlock()
		},
	}
	if tweak != nil {
		tweak(&cfg)
	}
	if r.h, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	return r
}

var (
	src4 = netip.MustParseAddrPort("10.0.0.1:6881")
	src6 = netip.MustParseAddrPort("[fd00::1]:6881")
)

// ask runs one query from src through the handler and returns its reply,
// or nil when the handler sent none. The reply is a copy: the handler's
// buffers are reused.
func (r *rig) ask(q krpc.Msg, src netip.AddrPort) *krpc.Msg {
	if q.A.ID.IsZero() {
		q.A.ID = krpc.ID{1, 2, 3}
	}
	if q.T == nil { // a transaction ID of its own, as a client gives each query
		q.T = binary.BigEndian.AppendUint32(nil, r.tid.Add(1))
	}
	var reply krpc.Msg
	if !r.h.ServeKRPC(&reply, &q, src) {
		return nil
	}
	out := reply
	out.R.Nodes, out.R.Nodes6 = slices.Clone(reply.R.Nodes), slices.Clone(reply.R.Nodes6)
	out.R.Values, out.R.Token = slices.Clone(reply.R.Values), slices.Clone(reply.R.Token)
	return &out
}

func code(m *krpc.Msg) int {
	if m == nil || m.E == nil {
		return 0
	}
	return m.E.Code
}

// fill puts n IPv4 and n IPv6 nodes that have replied in the table.
func (r *rig) fill(n int) {
	for i := range n {
		r.tab.Update(krpc.NodeInfo{ID: krpc.RandomID(), Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, 0, byte(i + 1)}), 6881)}, table.Replied)
		a6 := netip.MustParseAddr("fd00::100").As16()
		a6[15] = byte(i + 1)
		r.tab.Update(krpc.NodeInfo{ID: krpc.RandomID(), Addr: netip.AddrPortFrom(netip.AddrFrom16(a6), 6881)}, table.Replied)
	}
}

func TestFamiliesAndWant(t *testing.T) {
	r := newRig(t, nil)
	r.fill(20)
	target := krpc.RandomID()
	tests := []struct {
		name           string
		src            netip.AddrPort
		want           krpc.Want
		nodes, nodes6  bool
		wantFromFamily bool
	}{
		{"IPv4 querier gets nodes", src4, 0, true, false, true},
		{"IPv6 querier gets nodes6", src6, 0, false, true, true},
		{"want n6 from IPv4", src4, krpc.WantN6, false, true, true},
		{"want both", src4, krpc.WantN4 | krpc.WantN6, true, true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := r.ask(krpc.Msg{Q: krpc.MethodFindNode, A: krpc.Args{Target: target, Want: tc.want}}, tc.src)
			if m == nil || m.E != nil {
				t.Fatalf("find_node: %+v", m)
			}
			if (len(m.R.Nodes) > 0) != tc.nodes || (len(m.R.Nodes6) > 0) != tc.nodes6 {
				t.Fatalf("got %d nodes and %d nodes6", len(m.R.Nodes), len(m.R.Nodes6))
			}
			// The shared table's other family is left out, never sent
			// in the wrong list.
			for _, ni := range m.R.Nodes {
				if ni.Is6() {
					t.Errorf("IPv6 node %v in nodes", ni)
				}
			}
			for _, ni := range m.R.Nodes6 {
				if !ni.Is6() {
					t.Errorf("IPv4 node %v in nodes6", ni)
				}
			}
			if m.IP != tc.src || m.R.ID != r.h.cfg.ID {
				t.Errorf("reply ip %v id %v, want %v and %v", m.IP, m.R.ID, tc.src, r.h.cfg.ID)
			}
		})
	}
}

func TestAnnounceAndGetPeers(t *testing.T) {
	r := newRig(t, nil)
	r.fill(10)
	ih := krpc.RandomID()
	m := r.ask(krpc.Msg{Q: krpc.MethodGetPeers, A: krpc.Args{InfoHash: ih}}, src4)
	if len(m.R.Token) == 0 || len(m.R.Nodes) == 0 || len(m.R.Values) != 0 {
		t.Fatalf("get_peers with no peers: %+v; want a token and nodes", m.R)
	}
	token := m.R.Token
	if c := code(r.ask(krpc.Msg{Q: krpc.MethodAnnouncePeer, A: krpc.Args{InfoHash: ih, Port: 7000, Token: []byte("forged")}}, src4)); c != krpc.CodeProtocol {
		t.Errorf("announce with a forged token: code %d, want 203", c)
	}
	// A token is for the IP it was given to.
	if c := code(r.ask(krpc.Msg{Q: krpc.MethodAnnouncePeer, A: krpc.Args{InfoHash: ih, Port: 7000, Token: token}}, src6)); c != krpc.CodeProtocol {
		t.Errorf("announce with another IP's token: code %d, want 203", c)
	}
	if m := r.ask(krpc.Msg{Q: krpc.MethodAnnouncePeer, A: krpc.Args{InfoHash: ih, Port: 7000, Token: token}}, src4); m == nil || m.E != nil {
		t.Fatalf("announce: %+v", m)
	}
	m = r.ask(krpc.Msg{Q: krpc.MethodGetPeers, A: krpc.Args{InfoHash: ih}}, src4)
	if want := []netip.AddrPort{netip.AddrPortFrom(src4.Addr(), 7000)}; !slices.Equal(m.R.Values, want) || len(m.R.Nodes) != 0 {
		t.Errorf("get_peers after the announce: values %v and %d nodes, want %v and none", m.R.Values, len(m.R.Nodes), want)
	}
	// BEP 32: an IPv6 querier is not handed IPv4 peers.
	if m := r.ask(krpc.Msg{Q: krpc.MethodGetPeers, A: krpc.Args{InfoHash: ih}}, src6); len(m.R.Values) != 0 {
		t.Errorf("IPv6 get_peers got IPv4 peers %v", m.R.Values)
	}
	st := r.h.Stats()
	if st.Announces != 1 || st.BadTokens != 2 || st.Queries[krpc.MethodAnnouncePeer] != 3 || st.Total != 6 {
		t.Errorf("stats %+v; want 1 announce, 2 bad tokens, 3 announce_peer of 6 queries", st)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var stored []netip.AddrPort
	for _, s := range r.seen {
		if s.Method == krpc.MethodAnnouncePeer && s.Peer.IsValid() {
			stored = append(stored, s.Peer)
		}
		if s.Infohash != ih || !s.Time.Equal(r.clock.Now()) || !s.SecureID {
			t.Errorf("sighting %+v: want infohash %v, time %v and SecureID (private address)", s, ih, r.clock.Now())
		}
	}
	if len(stored) != 1 || len(r.seen) != 6 || len(r.heard) != 6 {
		t.Errorf("%d sightings (%d with the stored peer %v), %d heard; want 6 (1), 6", len(r.seen), len(stored), stored, len(r.heard))
	}
}

func TestItems(t *testing.T) {
	r := newRig(t, nil)
	pub, priv, _ := ed25519.GenerateKey(nil)
	var k [32]byte
	copy(k[:], pub)
	salt, v := []byte("name"), []byte("5:hello")
	token := r.ask(krpc.Msg{Q: krpc.MethodGet, A: krpc.Args{Target: krpc.RandomID()}}, src4).R.Token
	put := func(seq int64, sig [64]byte) *krpc.Msg {
		return r.ask(krpc.Msg{Q: krpc.MethodPut, A: krpc.Args{Token: token, V: v, K: k, Salt: salt, Seq: &seq, Sig: sig}}, src4)
	}
	if c := code(put(1, [64]byte{})); c != 206 {
		t.Errorf("put with a bad signature: code %d, want 206", c)
	}
	if m := put(2, bep44.Sign(priv, salt, 2, v)); m == nil || m.E != nil {
		t.Fatalf("put: %+v", m)
	}
	if c := code(put(1, bep44.Sign(priv, salt, 1, v))); c != 302 {
		t.Errorf("put of an older seq: code %d, want 302", c)
	}
	if c := code(r.ask(krpc.Msg{Q: krpc.MethodPut, A: krpc.Args{Token: token, V: v, K: k, Salt: salt}}, src4)); c != krpc.CodeProtocol {
		t.Errorf("mutable put without seq: code %d, want 203", c)
	}
	target := bep44.MutableTarget(k, salt)
	m := r.ask(krpc.Msg{Q: krpc.MethodGet, A: krpc.Args{Target: target}}, src4)
	if m.R.Seq == nil || *m.R.Seq != 2 || string(m.R.V) != string(v) || m.R.K != k {
		t.Errorf("get: seq %v, v %q, k %x; want 2, %q, %x", m.R.Seq, m.R.V, m.R.K, v, k)
	}
	seq := int64(2)
	if m := r.ask(krpc.Msg{Q: krpc.MethodGet, A: krpc.Args{Target: target, Seq: &seq}}, src4); m.R.V != nil || m.R.Seq == nil {
		t.Errorf("get from a getter with seq 2: v %q; want only the seq", m.R.V)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var found bool
	for _, s := range r.seen {
		if s.Method == krpc.MethodPut && s.Item == target && s.ItemMutable && s.ItemSeq == 2 {
			found = true
		}
	}
	if !found {
		t.Errorf("the accepted put was not observed with its target and seq")
	}
}

func TestSampleCache(t *testing.T) {
	r := newRig(t, nil)
	ask := func() *krpc.Msg {
		return r.ask(krpc.Msg{Q: krpc.MethodSampleInfohashes, A: krpc.Args{Target: krpc.RandomID()}}, src4)
	}
	m := ask()
	if len(m.R.Samples) != 0 || m.R.Num != 0 || m.R.Interval != 600 {
		t.Fatalf("empty store: %d samples, num %d, interval %d; want 0, 0, 600", len(m.R.Samples), m.R.Num, m.R.Interval)
	}
	for i := range 30 {
		r.h.cfg.Peers.Announce(krpc.ID{byte(i + 1)}, netip.MustParseAddrPort("10.9.9.9:1"), false)
	}
	if m := ask(); m.R.Num != 0 {
		t.Errorf("within the interval the sample stands: num %d, want 0", m.R.Num)
	}
	r.clock.Step(10 * time.Minute)
	if m := ask(); m.R.Num != 30 || len(m.R.Samples) != SampleMax {
		t.Errorf("after the interval: num %d, %d samples; want 30 and %d", m.R.Num, len(m.R.Samples), SampleMax)
	}
}

func TestMissingPartsAndHooks(t *testing.T) {
	answer := true
	r := newRig(t, func(c *Config) {
		c.Items, c.Samples = nil, false
		c.Answer = func(*krpc.Msg, netip.AddrPort) bool { return answer }
	})
	for _, q := range []string{krpc.MethodGet, krpc.MethodPut, krpc.MethodSampleInfohashes, "vote"} {
		if c := code(r.ask(krpc.Msg{Q: q, A: krpc.Args{Target: krpc.RandomID()}}, src4)); c != krpc.CodeMethodUnknown {
			t.Errorf("%s without its part: code %d, want 204", q, c)
		}
	}
	var reply krpc.Msg
	if !r.h.ServeKRPC(&reply, &krpc.Msg{Q: krpc.MethodPing}, src4) || reply.E == nil || reply.E.Code != krpc.CodeProtocol {
		t.Errorf("ping without an ID: %+v, want error 203", reply)
	}
	answer = false
	if m := r.ask(krpc.Msg{Q: krpc.MethodPing}, src4); m != nil {
		t.Errorf("Answer false: the handler replied %+v", m)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	// Every querier with an ID is heard and observed, answered or not; the
	// one without an ID is neither, and a get is not recorded as an item
	// asked for by a handler that keeps none.
	if len(r.heard) != 5 || len(r.seen) != 5 || !r.seen[0].Item.IsZero() {
		t.Errorf("%d heard, %d seen (first %+v); want 5 and 5 with no item", len(r.heard), len(r.seen), r.seen[0])
	}
}

// TestConcurrentFamilies runs two read goroutines through one handler, as
// a node with two sockets does; the race detector checks the scratch
// buffers and the sample cache.
func TestConcurrentFamilies(t *testing.T) {
	r := newRig(t, func(c *Config) { c.Observer, c.Heard = nil, nil })
	r.fill(30)
	var wg sync.WaitGroup
	for _, src := range []netip.AddrPort{src4, src6} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 2000 {
				target := krpc.RandomID()
				m := r.ask(krpc.Msg{Q: krpc.MethodFindNode, A: krpc.Args{Target: target, Want: krpc.WantN4 | krpc.WantN6}}, src)
				// One table holds both families: the K closest are shared
				// out between the two lists.
				if len(m.R.Nodes)+len(m.R.Nodes6) != 8 {
					t.Errorf("find_node: %d nodes and %d nodes6, want 8 in all", len(m.R.Nodes), len(m.R.Nodes6))
					return
				}
				r.ask(krpc.Msg{Q: krpc.MethodSampleInfohashes, A: krpc.Args{Target: target}}, src)
			}
		}()
	}
	wg.Wait()
}

func TestConfigErrors(t *testing.T) {
	good := func() Config {
		tok, _ := tokens.New(tokens.Config{})
		ps, _ := peerstore.New(peerstore.Config{})
		return Config{Tokens: tok, Peers: ps}
	}
	tests := []struct {
		name  string
		tweak func(*Config)
	}{
		{"no tokens", func(c *Config) { c.Tokens = nil }},
		{"no peer store", func(c *Config) { c.Peers = nil }},
		{"negative K", func(c *Config) { c.K = -1 }},
		{"negative MaxValues", func(c *Config) { c.MaxValues = -1 }},
		{"SampleInterval over BEP 51's limit", func(c *Config) { c.SampleInterval = 7 * time.Hour }},
	}
	for _, tc := range tests {
		cfg := good()
		tc.tweak(&cfg)
		if _, err := New(cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v, want an error wrapping ErrConfig", tc.name, err)
		}
	}
	h, err := New(good())
	if err != nil {
		t.Fatal(err)
	}
	if h.cfg.K != table.DefaultK || h.cfg.MaxValues != DefaultMaxValues || h.cfg.SampleInterval != DefaultSampleInterval || h.cfg.Now == nil {
		t.Errorf("defaults not filled: %+v", h.cfg)
	}
}

// TestRetransmissionsCountedOnce: a query resent with the same transaction
// ID is answered every time but heard and observed once; the same query
// after RepeatWindow, or with another transaction ID, is a new query.
func TestRetransmissionsCountedOnce(t *testing.T) {
	r := newRig(t, nil)
	ih := krpc.RandomID()
	token := r.ask(krpc.Msg{T: []byte("t0"), Q: krpc.MethodGetPeers, A: krpc.Args{InfoHash: ih}}, src4).R.Token
	announce := krpc.Msg{T: []byte("t1"), Q: krpc.MethodAnnouncePeer, A: krpc.Args{InfoHash: ih, Port: 7000, Token: token}}
	for range 3 {
		if m := r.ask(announce, src4); m == nil || m.E != nil {
			t.Fatalf("announce (or its resend): %+v", m)
		}
	}
	gp := krpc.Msg{T: []byte("t2"), Q: krpc.MethodGetPeers, A: krpc.Args{InfoHash: ih}}
	r.ask(gp, src4)
	r.ask(gp, src4)            // a resend
	r.ask(gp, src6)            // another querier
	gp.T = []byte("t3")        // another query
	r.ask(gp, src4)            //
	r.clock.Step(RepeatWindow) // long after: a new query
	r.ask(announce, src4)      //
	if st := r.h.Stats(); st.Repeated != 3 || st.Total != 9 || st.Announces != 4 {
		t.Errorf("stats %+v; want 3 repeats of 9 queries, 4 announces stored", st)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.seen) != 6 || len(r.heard) != 6 {
		t.Errorf("%d sightings and %d heard, want 6 and 6 (every query once)", len(r.seen), len(r.heard))
	}
	var stored int
	for _, s := range r.seen {
		if s.Peer.IsValid() {
			stored++
		}
	}
	if stored != 2 {
		t.Errorf("%d sightings carry the stored peer, want 2 (the first announce and the late one)", stored)
	}
}
