package table

import (
	"net/netip"
	"sync"
	"time"

	"github.com/lightdht/lightdht/krpc"
)

// rec is the compact, pointer-free form of an Entry kept by the research
// tables (72 bytes; the garbage collector does not scan it). Zones of IPv6
// addresses are not kept.
type rec struct {
	id       krpc.ID
	ip       [16]byte // IPv4 in the first 4 bytes when fam == 4
	port     uint16
	fam      uint8 // 4 or 6
	failures uint8 // saturates at MaxFailuresLimit
	first    int64 // Unix nanoseconds; 0 = never
	seen     int64
	reply    int64
	query    int64
}

type packedAddr struct {
	ip   [16]byte
	port uint16
	fam  uint8
}

func pack(ap netip.AddrPort) packedAddr {
	p := packedAddr{port: ap.Port(), fam: 6}
	a := ap.Addr()
	if a.Is4() {
		b := a.As4()
		copy(p.ip[:], b[:])
		p.fam = 4
	} else {
		p.ip = a.As16()
	}
	return p
}

func (r *rec) packed() packedAddr { return packedAddr{r.ip, r.port, r.fam} }

func (r *rec) addr() netip.AddrPort {
	if r.fam == 4 {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(r.ip[:4])), r.port)
	}
	return netip.AddrPortFrom(netip.AddrFrom16(r.ip), r.port)
}

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

func (r *rec) entry() Entry {
	return Entry{
		NodeInfo:  krpc.NodeInfo{ID: r.id, Addr: r.addr()},
		FirstSeen: fromNanos(r.first),
		LastSeen:  fromNanos(r.seen),
		LastReply: fromNanos(r.reply),
		LastQuery: fromNanos(r.query),
		Failures:  int(r.failures),
	}
}

func (r *rec) observe(ev Event, now int64) {
	r.seen = now
	switch ev {
	case Replied:
		r.reply = now
		r.failures = 0
	case Queried:
		r.query = now
	}
}

// index finds records of a research table by ID and answers Closest. It
// sees the table's records as recs; it may keep indices into recs but no
// pointers.
type index interface {
	// find returns the index of the record with this ID, or -1.
	find(recs []rec, id krpc.ID) int
	// insert indexes the new record recs[i].
	insert(recs []rec, i int, live bool)
	// remove forgets recs[i], which is still intact.
	remove(recs []rec, i int, live bool)
	// moved notes that the record at index from now is at index to.
	moved(recs []rec, from, to int)
	// liveChanged notes that recs[i] became bad (live false) or stopped
	// being bad (live true).
	liveChanged(recs []rec, i int, live bool)
	// closest appends to out the indices of up to n records that are not
	// bad (failures < maxFail), or, if replied is set, that have replied
	// and failed nothing since, nearest to target first.
	closest(recs []rec, target krpc.ID, n int, maxFail uint8, replied bool, out []int) []int
}

// research is the unbounded table shared by Flat and Prefix: every node is
// kept, bad ones too; an ID seen at a new address moves there.
type research struct {
	mu      sync.RWMutex
	cfg     Config
	maxFail uint8
	recs    []rec
	idx     index
	// Virtual buckets for Refresh: changed[c] is when a node sharing c
	// leading bits with Self was last added or heard from directly; maxCPL is
	// the largest such c ever stored.
	changed [numBits]int64
	maxCPL  int
}

func newResearch(cfg Config, idx index) *research {
	t := &research{cfg: cfg, maxFail: uint8(cfg.MaxFailures), idx: idx}
	now := nanos(cfg.Now())
	for i := range t.changed {
		t.changed[i] = now
	}
	return t
}

func (t *research) live(r *rec) bool { return r.failures < t.maxFail }

// Update implements Table: it always adds or updates the node. A known ID
// seen at a new address (by any Event) moves there; its reply, query and
// failure history, which belonged to the old address, is cleared.
func (t *research) Update(n krpc.NodeInfo, ev Event) UpdateResult {
	if r := t.cfg.check(n, ev); r != ReasonNone {
		return reject(r)
	}
	p := pack(n.Addr)
	cpl := t.cfg.Self.CommonPrefixLen(n.ID)
	t.mu.Lock()
	defer t.mu.Unlock()
	now := nanos(t.cfg.Now())
	if ev != Reported {
		t.changed[cpl] = now
	}
	if i := t.idx.find(t.recs, n.ID); i >= 0 {
		r := &t.recs[i]
		wasLive := t.live(r)
		if r.packed() != p {
			r.ip, r.port, r.fam = p.ip, p.port, p.fam
			r.reply, r.query, r.failures = 0, 0, 0
		}
		r.observe(ev, now)
		if !wasLive && t.live(r) {
			t.idx.liveChanged(t.recs, i, true)
		}
		return UpdateResult{Outcome: Updated}
	}
	r := rec{id: n.ID, ip: p.ip, port: p.port, fam: p.fam, first: now}
	r.observe(ev, now)
	t.recs = append(t.recs, r)
	t.idx.insert(t.recs, len(t.recs)-1, true)
	t.changed[cpl] = now
	t.maxCPL = max(t.maxCPL, cpl)
	return UpdateResult{Outcome: Added}
}

// Failed implements Table. Failures saturate at MaxFailuresLimit.
func (t *research) Failed(n krpc.NodeInfo) {
	p := pack(n.Addr)
	t.mu.Lock()
	defer t.mu.Unlock()
	i := t.idx.find(t.recs, n.ID)
	if i < 0 {
		return
	}
	r := &t.recs[i]
	if r.packed() != p || r.failures == MaxFailuresLimit {
		return
	}
	wasLive := t.live(r)
	r.failures++
	if wasLive && !t.live(r) {
		t.idx.liveChanged(t.recs, i, false)
	}
}

// Remove implements Table.
func (t *research) Remove(id krpc.ID) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	i := t.idx.find(t.recs, id)
	if i < 0 {
		return false
	}
	t.removeLocked(i)
	return true
}

// removeLocked deletes record i.
func (t *research) removeLocked(i int) {
	t.idx.remove(t.recs, i, t.live(&t.recs[i]))
	last := len(t.recs) - 1
	if i != last {
		t.recs[i] = t.recs[last]
		t.idx.moved(t.recs, last, i)
	}
	t.recs = t.recs[:last]
}

// SetSelf implements Table: the records stay as they are (the index does
// not depend on our ID); the virtual buckets are those of the new ID.
func (t *research) SetSelf(self krpc.ID) {
	if self.IsZero() {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if self == t.cfg.Self {
		return
	}
	t.cfg.Self = self
	if i := t.idx.find(t.recs, self); i >= 0 {
		t.removeLocked(i)
	}
	now := nanos(t.cfg.Now())
	for i := range t.changed {
		t.changed[i] = now
	}
	t.maxCPL = 0
	for i := range t.recs {
		t.maxCPL = max(t.maxCPL, self.CommonPrefixLen(t.recs[i].id))
	}
}

// Closest implements Table.
func (t *research) Closest(target krpc.ID, n int) []Entry {
	if n <= 0 {
		return nil
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.appendClosestLocked(make([]Entry, 0, min(n, len(t.recs))), target, n, false)
}

// AppendClosest implements Table.
func (t *research) AppendClosest(dst []Entry, target krpc.ID, n int) []Entry {
	if n <= 0 {
		return dst
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.appendClosestLocked(dst, target, n, false)
}

// AppendClosestReplied implements Table. The walk skips the records that
// have not replied, so in a table filled mostly from reported nodes it
// visits about n divided by the share that replied.
func (t *research) AppendClosestReplied(dst []Entry, target krpc.ID, n int) []Entry {
	if n <= 0 {
		return dst
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.appendClosestLocked(dst, target, n, true)
}

func (t *research) appendClosestLocked(dst []Entry, target krpc.ID, n int, replied bool) []Entry {
	for _, i := range t.idx.closest(t.recs, target, n, t.maxFail, replied, make([]int, 0, min(n, len(t.recs)))) {
		dst = append(dst, t.recs[i].entry())
	}
	return dst
}

// Get implements Table.
func (t *research) Get(id krpc.ID) (Entry, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if i := t.idx.find(t.recs, id); i >= 0 {
		return t.recs[i].entry(), true
	}
	return Entry{}, false
}

// Len implements Table.
func (t *research) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.recs)
}

// Each implements Table.
func (t *research) Each(f func(Entry) bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for i := range t.recs {
		if !f(t.recs[i].entry()) {
			return
		}
	}
}

// Refresh implements Table with virtual buckets: the ranges a k-bucket table
// would have if it had split down to the deepest node ever stored (bucket c
// < maxCPL holds the IDs sharing exactly c leading bits with Self, bucket
// maxCPL those sharing at least maxCPL). A virtual bucket changes when a
// node in its range is added or replies to or queries us.
func (t *research) Refresh() []krpc.ID {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := nanos(t.cfg.Now())
	after := t.cfg.RefreshAfter.Nanoseconds()
	var out []krpc.ID
	for c := 0; c < t.maxCPL; c++ {
		if now-t.changed[c] >= after {
			out = append(out, krpc.RandomIDAtDepth(t.cfg.Self, c))
			t.changed[c] = now
		}
	}
	latest := t.changed[t.maxCPL]
	for _, ch := range t.changed[t.maxCPL+1:] {
		latest = max(latest, ch)
	}
	if now-latest >= after {
		out = append(out, krpc.RandomIDWithPrefix(t.cfg.Self, t.maxCPL))
		t.changed[t.maxCPL] = now
	}
	return out
}
