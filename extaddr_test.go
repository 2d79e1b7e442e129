package lightdht_test

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lightdht/lightdht"
	"github.com/lightdht/lightdht/bep42"
	"github.com/lightdht/lightdht/internal/simnet"
	"github.com/lightdht/lightdht/krpc"
)

// voteNet is a node behind a pretend NAT on the in-memory network, and
// voters at public-looking addresses (they exist only in memory) that
// answer every query with the address they claim to see the node at.
type voteNet struct {
	t    *testing.T
	sim  *simnet.Network
	node *lightdht.Node
	nat  atomic.Pointer[netip.AddrPort] // what honest voters see

	mu      sync.Mutex
	targets map[krpc.ID]int // find_node targets the voters were asked for
}

func newVoteNet(t *testing.T, tweak func(*lightdht.Config)) *voteNet {
	t.Helper()
	sim, err := simnet.New(simnet.Config{Latency: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	vn := &voteNet{t: t, sim: sim, targets: map[krpc.ID]int{}}
	nc, err := sim.Listen(netip.MustParseAddrPort("192.168.1.10:6881")) // the node's side of the NAT
	if err != nil {
		t.Fatal(err)
	}
	cfg := lightdht.LocalTestNet(lightdht.Config{Conn4: nc, NoMaintenance: true})
	if tweak != nil {
		tweak(&cfg)
	}
	if vn.node, err = lightdht.New(cfg); err != nil {
		t.Fatal(err)
	}
	go vn.node.Serve(context.Background())
	t.Cleanup(func() {
		vn.node.Close()
		sim.Close()
	})
	return vn
}

// see sets the address honest voters see the node at.
func (vn *voteNet) see(a string) {
	ap := netip.MustParseAddrPort(a)
	vn.nat.Store(&ap)
}

// voter starts a voter at addr that claims to see the node at lie, or,
// when lie is empty, at the NAT's current address.
func (vn *voteNet) voter(addr, lie string) netip.AddrPort {
	vn.t.Helper()
	c, err := vn.sim.Listen(netip.MustParseAddrPort(addr))
	if err != nil {
		vn.t.Fatal(err)
	}
	id := krpc.RandomID()
	var claim *netip.AddrPort
	if lie != "" {
		ap := netip.MustParseAddrPort(lie)
		claim = &ap
	}
	tr, err := krpc.New(krpc.Config{Conn: c, Handler: krpc.HandlerFunc(func(reply, q *krpc.Msg, _ netip.AddrPort) bool {
		if q.Q == krpc.MethodFindNode {
			vn.mu.Lock()
			vn.targets[q.A.Target]++
			vn.mu.Unlock()
		}
		reply.R.ID = id
		if claim != nil {
			reply.IP = *claim
		} else {
			reply.IP = *vn.nat.Load()
		}
		return true
	})})
	if err != nil {
		vn.t.Fatal(err)
	}
	go tr.Serve(context.Background())
	vn.t.Cleanup(func() { tr.Close() })
	return c.AddrPort()
}

// poll has the node ping each voter once and waits for the replies and
// for what they set off (a rejoin).
func (vn *voteNet) poll(voters ...netip.AddrPort) {
	vn.t.Helper()
	for _, v := range voters {
		if _, _, err := vn.node.Ping(context.Background(), v); err != nil {
			vn.t.Fatalf("ping %v: %v", v, err)
		}
	}
	time.Sleep(time.Minute) // fake time
}

func (vn *voteNet) findNodes(target krpc.ID) int {
	vn.mu.Lock()
	defer vn.mu.Unlock()
	return vn.targets[target]
}

// voters starts n voters, each in a /24 of its own, honest or all telling
// lie.
func (vn *voteNet) voters(first, n int, lie string) []netip.AddrPort {
	var out []netip.AddrPort
	for i := range n {
		out = append(out, vn.voter(netip.AddrPortFrom(netip.AddrFrom4([4]byte{byte(first + i), 20, 30, 40}), 6881).String(), lie))
	}
	return out
}

const (
	natA = "203.0.113.7:40000"
	natB = "198.51.100.9:40001"
	lie  = "100.64.9.9:1"
)

// TestExternalAddressVotes: the external address is decided by a clear
// majority of enough distinct voter networks, and the node then takes a
// BEP 42 ID for it.
func TestExternalAddressVotes(t *testing.T) {
	a := netip.MustParseAddrPort(natA).Addr()
	for _, tc := range []struct {
		name  string
		setup func(vn *voteNet) []netip.AddrPort
		want  netip.Addr // zero: undecided
	}{
		{"honest majority", func(vn *voteNet) []netip.AddrPort { return vn.voters(1, 6, "") }, a},
		{"lying minority", func(vn *voteNet) []netip.AddrPort {
			return append(vn.voters(50, 3, lie), vn.voters(1, 7, "")...) // the liars speak first
		}, a},
		{"one /24 casting many votes", func(vn *voteNet) []netip.AddrPort {
			var vs []netip.AddrPort
			for i := range 20 {
				vs = append(vs, vn.voter(netip.AddrPortFrom(netip.AddrFrom4([4]byte{100, 70, 0, byte(10 + i)}), 6881).String(), lie))
			}
			return append(vs, vn.voters(1, 5, "")...)
		}, a},
		{"one /24 alone", func(vn *voteNet) []netip.AddrPort {
			var vs []netip.AddrPort
			for i := range 20 {
				vs = append(vs, vn.voter(netip.AddrPortFrom(netip.AddrFrom4([4]byte{100, 70, 0, byte(10 + i)}), 6881).String(), lie))
			}
			return vs
		}, netip.Addr{}},
		{"a single voter", func(vn *voteNet) []netip.AddrPort {
			v := vn.voter("9.9.9.9:6881", "")
			return []netip.AddrPort{v, v, v, v, v, v, v, v}
		}, netip.Addr{}},
		{"too few voters", func(vn *voteNet) []netip.AddrPort { return vn.voters(1, 4, "") }, netip.Addr{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				vn := newVoteNet(t, nil)
				vn.see(natA)
				before := vn.node.ID()
				vn.poll(tc.setup(vn)...)
				s := vn.node.Stats()
				if s.ExternalAddr4 != tc.want {
					t.Fatalf("external address %v, want %v", s.ExternalAddr4, tc.want)
				}
				id := vn.node.ID()
				if !tc.want.IsValid() {
					if id != before || s.IDChanges != 0 {
						t.Errorf("undecided, yet the ID changed (%d changes)", s.IDChanges)
					}
					return
				}
				if !bep42.Valid(id, tc.want) || s.IDChanges != 1 || s.ExternalAddrChanges != 1 {
					t.Errorf("ID %v (valid for %v: %v) after %d ID changes and %d address changes, want a valid ID after one of each",
						id, tc.want, bep42.Valid(id, tc.want), s.IDChanges, s.ExternalAddrChanges)
				}
				if vn.findNodes(id) == 0 {
					t.Error("the node did not look up its new ID (no rejoin)")
				}
			})
		})
	}
}

// TestExternalAddressFlip: when the address the voters see changes, the
// decision follows once the new address has a clear majority, and the
// node takes a BEP 42 ID for it and rejoins exactly once; liars cannot
// move a decision.
func TestExternalAddressFlip(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var (
			mu      sync.Mutex
			changes []lightdht.AddrChange
		)
		vn := newVoteNet(t, func(c *lightdht.Config) {
			c.AddrChanged = func(ch lightdht.AddrChange) {
				mu.Lock()
				changes = append(changes, ch)
				mu.Unlock()
			}
		})
		vn.see(natA)
		honest := vn.voters(1, 8, "")
		vn.poll(honest...)
		first := vn.node.Stats()
		if first.ExternalAddr4 != netip.MustParseAddrPort(natA).Addr() || first.IDChanges != 1 {
			t.Fatalf("first decision %v after %d ID changes", first.ExternalAddr4, first.IDChanges)
		}
		// A minority of liars changes nothing.
		vn.poll(vn.voters(100, 3, lie)...)
		if s := vn.node.Stats(); s.ExternalAddr4 != first.ExternalAddr4 || s.IDChanges != 1 {
			t.Fatalf("liars moved the decision to %v (%d ID changes)", s.ExternalAddr4, s.IDChanges)
		}

		vn.see(natB)
		b := netip.MustParseAddrPort(natB).Addr()
		for range 3 { // the flip, then more votes for the same address
			vn.poll(honest...)
		}
		s := vn.node.Stats()
		id := vn.node.ID()
		switch {
		case s.ExternalAddr4 != b:
			t.Fatalf("after the flip the external address is %v, want %v", s.ExternalAddr4, b)
		case s.IDChanges != 2 || s.ExternalAddrChanges != 2:
			t.Errorf("%d ID changes and %d address changes, want 2 of each: one rejoin per change", s.IDChanges, s.ExternalAddrChanges)
		case !bep42.Valid(id, b):
			t.Errorf("ID %v is not a BEP 42 ID for %v", id, b)
		case vn.findNodes(id) == 0:
			t.Error("the node did not look up its new ID (no rejoin)")
		}
		mu.Lock()
		a := netip.MustParseAddrPort(natA).Addr()
		if len(changes) != 2 || changes[1] != (lightdht.AddrChange{Was: a, Is: b, ID: id, NewID: true}) {
			t.Errorf("reported changes %+v, want two, the second from %v to %v with ID %v", changes, a, b, id)
		}
		mu.Unlock()
		// Replies carry the new ID.
		r, err := vn.sim.NewConn4()
		if err != nil {
			t.Fatal(err)
		}
		tr, _ := krpc.New(krpc.Config{Conn: r})
		go tr.Serve(context.Background())
		defer tr.Close()
		resp, err := tr.Query(context.Background(), vn.node.Addr(), &krpc.Msg{Q: krpc.MethodPing, A: krpc.Args{ID: krpc.RandomID()}})
		if err != nil || resp.R.ID != id {
			t.Errorf("ping reply: %v, ID %v, want %v", err, resp.R.ID, id)
		}
	})
}

// TestExternalAddressKeepsConfiguredID: a configured ID or PublicIP is
// kept whatever the votes decide; the decision is still reported.
func TestExternalAddressKeepsConfiguredID(t *testing.T) {
	for _, tc := range []struct {
		name  string
		tweak func(*lightdht.Config)
	}{
		{"ID", func(c *lightdht.Config) { c.ID = krpc.ID{1, 2, 3} }},
		{"PublicIP", func(c *lightdht.Config) { c.PublicIP = netip.MustParseAddr("198.18.0.1") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				vn := newVoteNet(t, tc.tweak)
				vn.see(natA)
				before := vn.node.ID()
				vn.poll(vn.voters(1, 6, "")...)
				s := vn.node.Stats()
				if s.ExternalAddr4 != netip.MustParseAddrPort(natA).Addr() {
					t.Errorf("external address %v, want %v", s.ExternalAddr4, natA)
				}
				if vn.node.ID() != before || s.IDChanges != 0 {
					t.Errorf("the configured identity changed: %v to %v", before, vn.node.ID())
				}
			})
		})
	}
}
