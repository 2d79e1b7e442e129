package lightdht

import (
	"net/netip"
	"sync"
	"time"

	"github.com/lightdht/lightdht/bep42"
	"github.com/lightdht/lightdht/krpc"
)

// How the external address is decided from the "ip" that replies carry
// (BEP 42).
const (
	// minVoters is the number of distinct voter prefixes that must agree
	// before an address is taken: one network, however many nodes it
	// runs, is one voter, and a handful of networks is still a guess.
	minVoters = 5
	// maxVoters bounds the voter prefixes whose votes are held; the
	// oldest vote goes first.
	maxVoters = 64
	// voteTTL is how long a vote counts: a node that moved is believed
	// once the votes cast before the move have been replaced or expired.
	voteTTL = time.Hour
)

// ballot is one voter prefix's latest vote.
type ballot struct {
	addr netip.Addr
	at   time.Time
}

// ballotBox decides one family's external address from votes: each reply
// to our queries says which address its sender saw us at. Only the latest
// vote of each voter prefix (a /24 for IPv4, a /48 for IPv6) counts, so
// that one network cannot outvote the rest, and an address is decided
// when at least minVoters prefixes vote for it and they are more than two
// thirds of the votes held.
//
// Ownership: every field below mu is guarded by it.
type ballotBox struct {
	mu      sync.Mutex
	votes   map[netip.Prefix]ballot
	decided netip.Addr // zero until a decision
}

func newBallotBox() *ballotBox { return &ballotBox{votes: map[netip.Prefix]ballot{}} }

// voterPrefix is the prefix a voter's vote is counted under.
func voterPrefix(voter netip.Addr) netip.Prefix {
	voter = voter.Unmap()
	bits := 24
	if voter.Is6() {
		bits = 48
	}
	p, _ := voter.Prefix(bits)
	return p
}

// cast records that voter saw us at addr, at time now, and returns the
// decided address before and after the vote; they differ when this vote
// changed the decision. Invalid and unspecified addresses, and votes of
// the other family than v6 says, are ignored.
func (b *ballotBox) cast(voter, addr netip.Addr, v6 bool, now time.Time) (was, is netip.Addr) {
	addr, voter = addr.Unmap(), voter.Unmap()
	if !addr.IsValid() || addr.IsUnspecified() || !voter.IsValid() || addr.Is6() != v6 || voter.Is6() != v6 {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.decided, b.decided
	}
	addr = addr.WithZone("")
	p := voterPrefix(voter)
	b.mu.Lock()
	defer b.mu.Unlock()
	was = b.decided
	old, had := b.votes[p]
	b.votes[p] = ballot{addr: addr, at: now}
	if had && old.addr == addr && addr == b.decided {
		return was, was // a repeated vote for the decision changes nothing
	}
	if !had && len(b.votes) > maxVoters {
		oldest := p
		for q, v := range b.votes {
			if v.at.Before(b.votes[oldest].at) {
				oldest = q
			}
		}
		delete(b.votes, oldest)
	}
	counts := make(map[netip.Addr]int, 4)
	total := 0
	for q, v := range b.votes {
		if now.Sub(v.at) >= voteTTL {
			delete(b.votes, q)
			continue
		}
		counts[v.addr]++
		total++
	}
	var best netip.Addr
	for a, c := range counts {
		if c > counts[best] {
			best = a
		}
	}
	if c := counts[best]; c >= minVoters && 3*c > 2*total {
		b.decided = best
	}
	return was, b.decided
}

// addr returns the decided address, or the zero Addr.
func (b *ballotBox) addr() netip.Addr {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.decided
}

// AddrChange reports a change of the node's external address.
type AddrChange struct {
	V6      bool       // the family whose address changed
	Was, Is netip.Addr // the old address (zero: none decided before) and the new one
	ID      krpc.ID    // the node ID after the change
	NewID   bool       // whether the node took ID for the new address (BEP 42) and rejoined
}

// vote counts a replier's view of our address in family f and acts on a
// changed decision.
func (n *Node) vote(f *family, voter, addr netip.Addr) {
	was, is := f.votes.cast(voter, addr, f.v6, n.cfg.Now())
	if was != is {
		n.learned(f, was, is)
	}
}

// learned reports a new external address and, when the primary family's
// address makes the ID insecure, takes a BEP 42 ID for it and rejoins. A
// configured ID or PublicIP is kept whatever the votes say.
func (n *Node) learned(f *family, was, is netip.Addr) {
	n.stats.addrChanges.Add(1)
	fam := "IPv4"
	if f.v6 {
		fam = "IPv6"
	}
	n.log.Info().Str("family", fam).Stringer("was", was).Stringer("external", is).Msg("external address changed")
	change := AddrChange{V6: f.v6, Was: was, Is: is}
	change.ID, change.NewID = n.secureFor(f, is)
	if n.cfg.AddrChanged != nil {
		n.cfg.AddrChanged(change)
	}
}

// secureFor takes a BEP 42 ID for external address is of family f if f is
// the primary family, the ID is not valid for is and neither ID nor
// PublicIP is configured; it then rejoins. It returns the ID and whether
// it changed.
func (n *Node) secureFor(f *family, is netip.Addr) (krpc.ID, bool) {
	switch {
	case f != n.primary() || !n.cfg.ID.IsZero():
		return n.ID(), false
	case n.cfg.PublicIP.IsValid():
		if is != n.cfg.PublicIP.Unmap() {
			n.log.Warn().Stringer("external", is).Stringer("public_ip", n.cfg.PublicIP).
				Msg("replies see another address than the configured PublicIP; keeping the configured one")
		}
		return n.ID(), false
	}
	n.idMu.Lock()
	old := n.ID()
	if bep42.Acceptable(old, is) || f.votes.addr() != is {
		n.idMu.Unlock()
		return old, false // already secure, or the decision moved on meanwhile
	}
	id := bep42.Generate(is)
	n.id.Store(&id)
	n.handler.SetID(id)
	for _, g := range n.families() {
		g.table.SetSelf(id)
	}
	n.idMu.Unlock()
	n.stats.idChanges.Add(1)
	n.log.Info().Stringer("was", old).Stringer("id", id).Stringer("external", is).Msg("new BEP 42 node ID for the external address; rejoining")
	n.rejoin.start(n)
	return id, true
}

// rejoiner runs the bootstraps that follow changes of ID, one at a time:
// a change while one runs makes it run once more, for the newest ID.
//
// Ownership: its fields are guarded by Node.mu.
type rejoiner struct {
	running bool
	again   bool
}

// start runs a rejoin in the background unless the node is not serving
// or is closed; Close waits for it.
func (r *rejoiner) start(n *Node) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.serving || n.closed {
		return
	}
	if r.running {
		r.again = true
		return
	}
	r.running = true
	ctx := n.ctx
	n.wg.Add(1) // under mu, before Close can wait (see Serve)
	go func() {
		defer n.wg.Done()
		for {
			if _, err := n.Bootstrap(ctx); err != nil && ctx.Err() == nil {
				n.log.Warn().Err(err).Msg("rejoin after a change of ID failed")
			}
			n.mu.Lock()
			if !r.again || ctx.Err() != nil {
				r.running = false
				n.mu.Unlock()
				return
			}
			r.again = false
			n.mu.Unlock()
		}
	}()
}
