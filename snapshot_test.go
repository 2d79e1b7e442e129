package lightdht_test

import (
	"context"
	"net/netip"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lightdht/lightdht"
	"github.com/lightdht/lightdht/bep42"
	"github.com/lightdht/lightdht/internal/simnet"
	"github.com/lightdht/lightdht/krpc"
)

// TestResumeFromSnapshot: a node stopped and started again from its
// snapshot keeps its ID and refills its routing table from the saved
// nodes without sending a packet to the bootstrap address.
func TestResumeFromSnapshot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tn := newTestNet(t, 30, simnet.Config{Seed: 3, Latency: 5 * time.Millisecond}, nil)
		old := tn.nodes[5]
		snap := old.Snapshot()
		if snap.ID != old.ID() || len(snap.Nodes) < 8 {
			t.Fatalf("snapshot of %v holds ID %v and %d nodes", old.ID(), snap.ID, len(snap.Nodes))
		}
		addr := old.Addr()
		old.Close()

		boot, err := tn.sim.NewConn4() // a bootstrap address that counts what it is sent
		if err != nil {
			t.Fatal(err)
		}
		var bootPackets atomic.Int64
		go func() {
			buf := make([]byte, 2048)
			for {
				if _, _, err := boot.ReadFromUDPAddrPort(buf); err != nil {
					return
				}
				bootPackets.Add(1)
			}
		}()
		defer boot.Close()
		conn, err := tn.sim.Listen(addr)
		if err != nil {
			t.Fatal(err)
		}
		n, err := lightdht.New(lightdht.LocalTestNet(lightdht.Config{Conn4: conn, Resume: &snap,
			Bootstrap: []netip.AddrPort{boot.AddrPort()}, QueryTimeout: time.Second}))
		if err != nil {
			t.Fatal(err)
		}
		go n.Serve(context.Background()) // with maintenance: it bootstraps by itself
		defer n.Close()
		time.Sleep(time.Minute) // fake time: the first bootstrap is over
		if n.ID() != snap.ID {
			t.Errorf("resumed with ID %v, saved %v", n.ID(), snap.ID)
		}
		for _, ni := range snap.Nodes {
			if e, ok := n.Table(false).Get(ni.ID); !ok || e.LastReply.IsZero() {
				t.Errorf("saved node %v is not back in the table as a node that replied", ni)
			}
		}
		if got := bootPackets.Load(); got != 0 {
			t.Errorf("the bootstrap address got %d packets, want none", got)
		}
		if _, err := n.FindNode(context.Background(), krpc.RandomID()); err != nil {
			t.Errorf("lookup after resuming: %v", err)
		}
	})
}

// TestResumeFallsBackToBootstrap: when the saved nodes do not answer, the
// bootstrap address is asked.
func TestResumeFallsBackToBootstrap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tn := newTestNet(t, 12, simnet.Config{Seed: 4, Latency: 5 * time.Millisecond}, nil)
		gone := lightdht.Snapshot{ID: krpc.RandomID()}
		for i := range 10 {
			gone.Nodes = append(gone.Nodes, krpc.NodeInfo{ID: krpc.RandomID(),
				Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 99, 0, byte(i + 1)}), 6881)}) // nobody there
		}
		conn, _ := tn.sim.NewConn4()
		n, err := lightdht.New(lightdht.LocalTestNet(lightdht.Config{Conn4: conn, Resume: &gone, NoMaintenance: true,
			Bootstrap: []netip.AddrPort{tn.nodes[0].Addr()}, QueryTimeout: time.Second}))
		if err != nil {
			t.Fatal(err)
		}
		go n.Serve(context.Background())
		defer n.Close()
		size, err := n.Bootstrap(context.Background())
		if err != nil || size < 8 {
			t.Fatalf("bootstrap after unanswered saved nodes: %d nodes, %v", size, err)
		}
		if n.ID() != gone.ID {
			t.Errorf("ID %v, want the saved %v", n.ID(), gone.ID)
		}
	})
}

// TestResumeIDValidity: a saved ID is kept when it is valid for the
// address the node knows, and replaced by a BEP 42 ID otherwise; a
// configured ID wins.
func TestResumeIDValidity(t *testing.T) {
	ext := netip.MustParseAddr("203.0.113.50")
	valid, invalid := bep42.Generate(ext), krpc.ID{0xff, 19: 0xff}
	for bep42.Valid(invalid, ext) {
		invalid[1]++
	}
	for _, tc := range []struct {
		name   string
		cfg    lightdht.Config
		want   krpc.ID // zero: a fresh BEP 42 ID for ext
		secure bool
	}{
		{"valid for the saved address", lightdht.Config{Resume: &lightdht.Snapshot{ID: valid, ExternalAddr4: ext}}, valid, false},
		{"invalid for the saved address", lightdht.Config{Resume: &lightdht.Snapshot{ID: invalid, ExternalAddr4: ext}}, krpc.ID{}, true},
		{"invalid for PublicIP", lightdht.Config{PublicIP: ext, Resume: &lightdht.Snapshot{ID: invalid}}, krpc.ID{}, true},
		{"no address known", lightdht.Config{Resume: &lightdht.Snapshot{ID: invalid}}, invalid, false},
		{"configured ID wins", lightdht.Config{ID: invalid, Resume: &lightdht.Snapshot{ID: valid, ExternalAddr4: ext}}, invalid, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sim, _ := simnet.New(simnet.Config{})
			defer sim.Close()
			tc.cfg.Conn4, _ = sim.NewConn4()
			n, err := lightdht.New(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer n.Close()
			switch id := n.ID(); {
			case tc.secure && (!bep42.Valid(id, ext) || id == tc.cfg.Resume.ID):
				t.Errorf("ID %v, want a new BEP 42 ID for %v", id, ext)
			case !tc.secure && id != tc.want:
				t.Errorf("ID %v, want %v", id, tc.want)
			}
		})
	}
}
