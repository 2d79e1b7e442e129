package lightdht

import (
	"context"
	"net/netip"
	"sync"

	"github.com/lightdht/lightdht/bep42"
	"github.com/lightdht/lightdht/krpc"
	"github.com/lightdht/lightdht/table"
)

// Snapshot is what a node saves to resume later with the same identity
// and without the bootstrap list: its ID, its external IPv4 address and
// the good nodes of its routing tables. Encoding it is the caller's
// business (cmd/lightdht keeps it in a state file).
type Snapshot struct {
	ID            krpc.ID
	ExternalAddr4 netip.Addr      // zero: not decided
	Nodes, Nodes6 []krpc.NodeInfo // good routing table entries per family
}

// Snapshot returns the node's ID, external IPv4 address and the good
// nodes of its routing tables (BEP 5: replied within 15 minutes, or
// replied once and queried us within 15 minutes).
func (n *Node) Snapshot() Snapshot {
	s := Snapshot{ID: n.ID()}
	if n.v4 != nil {
		s.ExternalAddr4 = n.v4.votes.addr()
		s.Nodes = n.goodNodes(n.v4)
	}
	if n.v6 != nil {
		s.Nodes6 = n.goodNodes(n.v6)
	}
	return s
}

func (n *Node) goodNodes(f *family) []krpc.NodeInfo {
	now := n.cfg.Now()
	var out []krpc.NodeInfo
	f.table.Each(func(e table.Entry) bool {
		if e.State(now, table.Config{}) == table.Good {
			out = append(out, e.NodeInfo)
		}
		return true
	})
	return out
}

// startID picks the node ID at start; see Config.ID, PublicIP and
// Resume.
func startID(cfg Config) krpc.ID {
	if !cfg.ID.IsZero() {
		return cfg.ID
	}
	addr := cfg.PublicIP
	if !addr.IsValid() && cfg.Resume != nil {
		addr = cfg.Resume.ExternalAddr4
	}
	if r := cfg.Resume; r != nil && !r.ID.IsZero() && (!addr.IsValid() || bep42.Acceptable(r.ID, addr)) {
		return r.ID
	}
	if addr.IsValid() {
		return bep42.Generate(addr)
	}
	return krpc.RandomID()
}

// maxResumePings bounds the pings of saved nodes in flight at once.
const maxResumePings = 32

// pingSaved pings the saved nodes of family f, once per node lifetime, and
// returns how many answered; the answers put them in the routing table.
func (n *Node) pingSaved(ctx context.Context, f *family) int {
	var saved []krpc.NodeInfo
	f.resumeOnce.Do(func() {
		if r := n.cfg.Resume; r != nil {
			saved = r.Nodes
			if f.v6 {
				saved = r.Nodes6
			}
		}
	})
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		answered int
		slots    = make(chan struct{}, maxResumePings)
	)
	for _, ni := range saved {
		if ni.Is6() != f.v6 || !n.admit(ni, false) {
			continue
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return answered
		}
		wg.Add(1)
		q := &krpc.Msg{Q: krpc.MethodPing, A: krpc.Args{ID: n.ID()}}
		f.tr.QueryAsync(ctx, ni.Addr, q, func(r krpc.Response, err error) {
			defer wg.Done()
			n.handleResult(f, ni, krpc.MethodPing, r, err)
			if err == nil && r.Y == krpc.KindReply {
				mu.Lock()
				answered++
				mu.Unlock()
			}
			<-slots
		})
	}
	wg.Wait()
	return answered
}
