package synth

import (
	"encoding/binary"
	"errors"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"time"

	"github.com/lightdht/lightdht/krpc"
)

// lookup returns the entry at address ap.
func (n *Network) lookup(ap netip.AddrPort) (int, bool) {
	a := ap.Addr().Unmap()
	if !a.Is4() {
		return 0, false
	}
	b := a.As4()
	ip := binary.BigEndian.Uint32(b[:])
	// Several entries may share an IP (Config.SybilHosts, SharedIPShare).
	for j := n.firstIP(ip); j < len(n.byIP) && uint32(n.byIP[j]>>32) == ip; j++ {
		if i := int(uint32(n.byIP[j])); n.portOf(i) == ap.Port() {
			return i, true
		}
	}
	return 0, false
}

// firstIP returns the position in byIP of the first entry at ip, or
// where it would be.
func (n *Network) firstIP(ip uint32) int {
	return sort.Search(len(n.byIP), func(j int) bool { return uint32(n.byIP[j]>>32) >= ip })
}

// answers reports whether entry i answers queries now: it is neither
// silent nor a bogon, not set offline, and not churned out.
func (n *Network) answers(i int) bool {
	f := n.flags[i]
	if f&(flagSilent|flagBogon) != 0 {
		return false
	}
	if n.offline[i/32].Load()&(1<<(i%32)) != 0 {
		return false
	}
	return !n.churned(i, time.Now())
}

// churned reports whether entry i is offline at time t by the churn model.
func (n *Network) churned(i int, t time.Time) bool {
	if n.cfg.ChurnShare == 0 || n.flags[i]&flagBootstrap != 0 {
		return false
	}
	epoch := uint64(t.Sub(n.start) / n.cfg.ChurnPeriod)
	return unit(hash(n.seed, tagChurn, uint64(i), epoch)) < n.cfg.ChurnShare
}

// SetOnline sets whether node i answers. A node set offline stays in other
// nodes' tables but answers nothing, like a node that quit; set online
// again, it answers as before (unless it is silent, a bogon, or churned
// out). It panics if i is out of range.
func (n *Network) SetOnline(i int, online bool) {
	w, m := &n.offline[i/32], uint32(1)<<(i%32)
	if online {
		w.And(^m)
	} else {
		w.Or(m)
	}
}

// SetID makes node i answer with id from now on, as a node that changed
// its ID at the same address; other nodes' tables still list its old ID
// (they have not heard of the change). It panics if i is out of range.
func (n *Network) SetID(i int, id krpc.ID) {
	_ = n.ids[i]
	n.override(func(o *overrides) { o.id[int32(i)] = id })
}

// SetPort moves node i to another UDP port of its IP from now on: it
// answers there and no longer at the old one, and the tables list it at
// the new address. It panics if i is out of range.
func (n *Network) SetPort(i int, port uint16) {
	_ = n.ids[i]
	n.override(func(o *overrides) { o.port[int32(i)] = port })
}

// overrides are the IDs and ports changed by SetID and SetPort. They
// are copied on write and read through one atomic load, so that a
// network without any costs its handler nothing.
type overrides struct {
	id   map[int32]krpc.ID
	port map[int32]uint16
}

func (n *Network) override(f func(*overrides)) {
	n.overrideMu.Lock()
	defer n.overrideMu.Unlock()
	o := &overrides{id: make(map[int32]krpc.ID), port: make(map[int32]uint16)}
	if old := n.over.Load(); old != nil {
		maps.Copy(o.id, old.id)
		maps.Copy(o.port, old.port)
	}
	f(o)
	n.over.Store(o)
}

// idOf returns the ID entry i answers with now: the one SetID gave it,
// else its rotated ID (Config.RotateShare), else its listed ID.
func (n *Network) idOf(i int) krpc.ID {
	if o := n.over.Load(); o != nil {
		if id, ok := o.id[int32(i)]; ok {
			return id
		}
	}
	if id, ok := n.rotatedID(i, time.Now()); ok {
		return id
	}
	return n.ids[i]
}

// portOf returns entry i's port.
func (n *Network) portOf(i int) uint16 {
	if o := n.over.Load(); o != nil {
		if p, ok := o.port[int32(i)]; ok {
			return p
		}
	}
	return n.port[i]
}

// drop leaves unanswered a query that a node of Config.DropUnknownShare
// does not know.
func (n *Network) drop() ([]byte, bool) {
	n.st.dropped.Add(1)
	return nil, false
}

// handle is the simnet handler: it answers a packet sent to a synthetic
// node.
func (n *Network) handle(to, from netip.AddrPort, pkt []byte) ([]byte, bool) {
	n.st.packets.Add(1)
	i, ok := n.lookup(to)
	if !ok {
		n.st.noSuchNode.Add(1)
		return nil, false
	}
	m := n.msgPool.Get().(*krpc.Msg)
	defer n.msgPool.Put(m)
	err := krpc.Unmarshal(pkt, m)
	var de *krpc.DecodeError
	if err != nil && !(errors.As(err, &de) && de.Field != "" && m.Y == krpc.KindQuery) {
		n.st.unparseable.Add(1)
		return nil, false
	}
	if m.Y != krpc.KindQuery {
		n.st.nonQuery.Add(1)
		return nil, false
	}
	n.st.byMethod.Add(m.Q)
	n.queries[i].Add(1)
	now := time.Now()
	if n.lastQ != nil {
		t := int64(now.Sub(n.start))
		if prev := n.lastQ[i].Swap(t + 1); prev != 0 && t+1-prev < int64(n.cfg.MinQueryGap) {
			n.st.rateViolations.Add(1)
		}
	}
	if !n.answers(i) {
		n.st.unanswered.Add(1)
		return nil, false
	}
	if !n.admit(i, from.Addr(), now.Sub(n.start)) {
		return nil, false // the source is blocked (Config.RateLimitShare)
	}
	if d := n.hold(i); d > 0 {
		// The node's own round-trip time (Config.RTTMedian); the handler
		// runs on a timer's goroutine, as check ensures. Close ends the
		// wait, so that no goroutine outlives the network.
		tm := time.NewTimer(d)
		select {
		case <-tm.C:
		case <-n.done:
			tm.Stop()
			return nil, false
		}
	}
	if err != nil {
		return n.errorReply(i, m, from, krpc.CodeProtocol, "invalid "+de.Field)
	}
	if m.A.ID.IsZero() {
		return n.errorReply(i, m, from, krpc.CodeProtocol, "missing id")
	}
	r := krpc.Msg{T: m.T, Y: krpc.KindReply, V: n.version(i), IP: from}
	r.R.ID = n.idOf(i)
	switch m.Q {
	case krpc.MethodPing:
	case krpc.MethodFindNode:
		if m.A.Target.IsZero() {
			return n.errorReply(i, m, from, krpc.CodeProtocol, "missing target")
		}
		r.R.Nodes = n.nodes(i, m.A.Target)
	case krpc.MethodGetPeers:
		if m.A.InfoHash.IsZero() {
			return n.errorReply(i, m, from, krpc.CodeProtocol, "missing info_hash")
		}
		r.R.Token = n.token(i, from.Addr())
		r.R.Nodes = n.nodes(i, m.A.InfoHash)
		m.A.Target = m.A.InfoHash // for a poisoner below
	case krpc.MethodAnnouncePeer:
		if m.A.InfoHash.IsZero() || !slices.Equal(m.A.Token, n.token(i, from.Addr())) {
			return n.errorReply(i, m, from, krpc.CodeProtocol, "bad token")
		}
	case krpc.MethodSampleInfohashes:
		if n.flags[i]&flagDropUnknown != 0 {
			return n.drop()
		}
		if n.flags[i]&flagBEP51 == 0 {
			return n.errorReply(i, m, from, krpc.CodeMethodUnknown, "method unknown")
		}
		if m.A.Target.IsZero() {
			return n.errorReply(i, m, from, krpc.CodeProtocol, "missing target")
		}
		seq := n.recordSample(i, now)
		r.R.Interval = n.cfg.Interval
		r.R.Num = n.cfg.InfohashesPerNode
		r.R.Samples = n.sample(i, seq)
		r.R.Nodes = n.nodes(i, m.A.Target)
	default:
		if n.flags[i]&flagDropUnknown != 0 {
			return n.drop()
		}
		return n.errorReply(i, m, from, krpc.CodeMethodUnknown, "method unknown")
	}
	if n.xf != nil && n.xf[i]&xPoison != 0 && len(r.R.Nodes) > 0 {
		r.R.Nodes = n.fakeNodes(i, m.A.Target)
	}
	b, err := r.AppendBinary(make([]byte, 0, 128+len(r.R.Nodes)*krpc.CompactNodeLen4+len(r.R.Samples)*krpc.IDLen))
	if err != nil {
		return nil, false // cannot happen: every field is valid
	}
	if n.xf != nil && len(r.R.Nodes) > 0 {
		b = n.mangle(i, b)
	}
	n.st.replies.Add(1)
	return b, true
}

// errorReply builds a KRPC error from entry i.
func (n *Network) errorReply(i int, q *krpc.Msg, from netip.AddrPort, code int, msg string) ([]byte, bool) {
	e := krpc.Msg{T: q.T, Y: krpc.KindError, E: &krpc.Error{Code: code, Msg: msg}, V: n.version(i), IP: from}
	b, err := e.AppendBinary(make([]byte, 0, 96))
	if err != nil {
		return nil, false
	}
	n.st.errors.Add(1)
	return b, true
}

// version returns entry i's "v", or nil.
func (n *Network) version(i int) []byte {
	v := n.vers[n.ver[i]]
	if len(v) == 0 {
		return nil
	}
	return v
}

// nodes returns the K entries of i's table closest to target.
func (n *Network) nodes(i int, target krpc.ID) []krpc.NodeInfo {
	idx := n.closest(i, target)
	out := make([]krpc.NodeInfo, len(idx))
	for j, x := range idx {
		out[j] = n.info(int(x))
	}
	return out
}

// token is entry i's get_peers token for a querier IP; it never expires.
func (n *Network) token(i int, ip netip.Addr) []byte {
	b := ip.Unmap().As16()
	h := hash(n.seed, tagToken, uint64(i), binary.BigEndian.Uint64(b[:8])^mix(binary.BigEndian.Uint64(b[8:])))
	return binary.BigEndian.AppendUint64(nil, h)
}

// recordSample notes an answered sample_infohashes at entry i, counting a
// violation if the previous one is less than Interval ago, and returns how
// many came before it.
func (n *Network) recordSample(i int, now time.Time) int {
	at := now.Sub(n.start)
	interval := time.Duration(n.cfg.Interval) * time.Second
	n.sampleM.Lock()
	defer n.sampleM.Unlock()
	ts := n.samples[int32(i)]
	if len(ts) > 0 && at-ts[len(ts)-1] < interval {
		n.st.violations.Add(1)
	}
	n.samples[int32(i)] = append(ts, at)
	n.st.sampled.Add(1)
	return len(ts)
}

// infohash returns infohash j of entry i's set.
func (n *Network) infohash(i, j int) krpc.ID {
	if p := n.cfg.InfohashPool; p > 0 {
		base := hash(n.seed, tagPool, uint64(i), 0) % uint64(p)
		return hashID(n.seed, tagInfohash, ^uint64(0), (base+uint64(j))%uint64(p))
	}
	return hashID(n.seed, tagInfohash, uint64(i), uint64(j))
}

// Infohashes returns the infohash set of entry i: Config.InfohashesPerNode
// IDs for a BEP 51 node, nil for any other. It panics if i is out of range.
func (n *Network) Infohashes(i int) []krpc.ID {
	if n.flags[i]&flagBEP51 == 0 {
		return nil
	}
	out := make([]krpc.ID, n.cfg.InfohashesPerNode)
	for j := range out {
		out[j] = n.infohash(i, j)
	}
	return out
}

// sample returns up to SampleMax distinct infohashes of entry i, a
// different random subset for each sample number seq.
func (n *Network) sample(i, seq int) []krpc.ID {
	total, want := n.cfg.InfohashesPerNode, n.cfg.SampleMax
	if total <= want {
		return n.Infohashes(i)
	}
	picked := make([]int, 0, want)
	h := hash(n.seed, tagSample, uint64(i), uint64(seq))
	for j := total - want; j < total; j++ {
		h = mix(h + 0x9e3779b97f4a7c15)
		t := int(h % uint64(j+1))
		if slices.Contains(picked, t) {
			t = j
		}
		picked = append(picked, t)
	}
	out := make([]krpc.ID, len(picked))
	for k, j := range picked {
		out[k] = n.infohash(i, j)
	}
	return out
}
