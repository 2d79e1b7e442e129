package table

import (
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/lightdht/lightdht/krpc"
)

// bucket is one k-bucket. With L buckets, bucket i < L-1 holds the IDs that
// share exactly i leading bits with Self; the last one holds those sharing
// at least L-1 bits, Self's own range, and is the only one that splits.
type bucket struct {
	entries []Entry // at most limit, in no particular order
	pending []Entry // replacement candidates, at most K; never in entries
	changed time.Time
	limit   int // K, or more for the first buckets of an extended table (Config.Extended)
}

// kbucketTable is the BEP 5 routing table (Kind KBucket).
type kbucketTable struct {
	mu      sync.RWMutex
	cfg     Config
	buckets []*bucket // never empty
	n       int       // entries in all buckets
}

func newKBucket(cfg Config) *kbucketTable {
	t := &kbucketTable{cfg: cfg}
	t.buckets = []*bucket{t.newBucket(0, cfg.Now())}
	return t
}

// extendedFactors are the sizes, in multiples of K, of the buckets 0 to 3
// (farthest from Self first) of an extended table, as in libtorrent's
// extended routing table.
var extendedFactors = [...]int{16, 8, 4, 2}

// bucketLimit returns the size of bucket i.
func (t *kbucketTable) bucketLimit(i int) int {
	if t.cfg.Extended && i < len(extendedFactors) {
		return t.cfg.K * extendedFactors[i]
	}
	return t.cfg.K
}

// newBucket returns an empty bucket i.
func (t *kbucketTable) newBucket(i int, changed time.Time) *bucket {
	limit := t.bucketLimit(i)
	return &bucket{entries: make([]Entry, 0, min(limit, t.cfg.K)), changed: changed, limit: limit}
}

// index returns the number of the bucket whose range holds id.
func (t *kbucketTable) index(id krpc.ID) int {
	return min(t.cfg.Self.CommonPrefixLen(id), len(t.buckets)-1)
}

func find(es []Entry, id krpc.ID) int {
	for i := range es {
		if es[i].ID == id {
			return i
		}
	}
	return -1
}

func (t *kbucketTable) bad(e *Entry) bool { return e.Failures >= t.cfg.MaxFailures }

// ipRoom reports whether bucket b can take another entry with the IP of
// addr, ignoring entry skip (-1: none). If not, it also returns the index of
// a bad entry with that IP, or -1.
func (t *kbucketTable) ipRoom(b *bucket, addr netip.AddrPort, skip int) (ok bool, badSameIP int) {
	if t.cfg.IPsPerBucket < 0 {
		return true, -1
	}
	count, badSameIP := 0, -1
	for i := range b.entries {
		if i != skip && sameIP(b.entries[i].Addr, addr) {
			count++
			if badSameIP < 0 && t.bad(&b.entries[i]) {
				badSameIP = i
			}
		}
	}
	return count < t.cfg.IPsPerBucket, badSameIP
}

// Update implements Table. Rule for a known ID at a new address: the entry
// moves to the new address only if it is not good and the event is direct
// contact (Replied or Queried) from the new address; its history then
// starts afresh. Otherwise Update returns Rejected with ReasonAddrConflict.
func (t *kbucketTable) Update(n krpc.NodeInfo, ev Event) UpdateResult {
	if r := t.cfg.check(n, ev); r != ReasonNone {
		return reject(r)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.cfg.Now()
	bi := t.index(n.ID)
	if i := find(t.buckets[bi].entries, n.ID); i >= 0 {
		return t.updateEntry(t.buckets[bi], i, n, ev, now)
	}
	before := len(t.buckets)
	for len(t.buckets[bi].entries) >= t.buckets[bi].limit && bi == len(t.buckets)-1 && len(t.buckets) < numBits {
		t.split(now)
		bi = t.index(n.ID)
	}
	res := t.insert(t.buckets[bi], n, ev, now)
	if len(t.buckets) > before {
		// Splitting may have made room for pending candidates.
		for _, b := range t.buckets[before-1:] {
			t.fill(b, now)
		}
	}
	return res
}

// updateEntry handles Update of the existing entry b.entries[i].
func (t *kbucketTable) updateEntry(b *bucket, i int, n krpc.NodeInfo, ev Event, now time.Time) UpdateResult {
	e := b.entries[i]
	if e.Addr != n.Addr {
		if ev == Reported || e.state(now, &t.cfg) == Good {
			return reject(ReasonAddrConflict)
		}
		if ok, _ := t.ipRoom(b, n.Addr, i); !ok {
			return reject(ReasonIPLimit)
		}
		e = Entry{NodeInfo: n, FirstSeen: now}
	}
	e.observe(ev, now)
	b.entries[i] = e
	if ev != Reported {
		b.changed = now
	}
	if len(b.pending) > 0 && len(b.entries) >= b.limit && t.allGood(b, now) {
		b.pending = b.pending[:0] // every pinged node answered
	}
	return UpdateResult{Outcome: Updated}
}

func (t *kbucketTable) allGood(b *bucket, now time.Time) bool {
	for i := range b.entries {
		if b.entries[i].state(now, &t.cfg) != Good {
			return false
		}
	}
	return true
}

// insert handles Update of a node that is not an entry of its bucket b.
func (t *kbucketTable) insert(b *bucket, n krpc.NodeInfo, ev Event, now time.Time) UpdateResult {
	var e Entry
	pi := find(b.pending, n.ID)
	if pi >= 0 {
		e = b.pending[pi]
		if e.Addr != n.Addr {
			if ev == Reported || e.state(now, &t.cfg) == Good {
				return reject(ReasonAddrConflict)
			}
			e = Entry{NodeInfo: n, FirstSeen: now}
		}
		e.observe(ev, now)
		b.pending[pi] = e
	} else {
		e = newEntry(n, ev, now)
	}

	if ok, badSameIP := t.ipRoom(b, e.Addr, -1); !ok {
		if badSameIP < 0 {
			return reject(ReasonIPLimit)
		}
		t.put(b, badSameIP, e, pi, now)
		return UpdateResult{Outcome: Added}
	}
	if len(b.entries) < b.limit {
		t.put(b, -1, e, pi, now)
		return UpdateResult{Outcome: Added}
	}
	worst := -1
	for i := range b.entries {
		if t.bad(&b.entries[i]) && (worst < 0 || b.entries[i].LastSeen.Before(b.entries[worst].LastSeen)) {
			worst = i
		}
	}
	if worst >= 0 {
		t.put(b, worst, e, pi, now)
		return UpdateResult{Outcome: Added}
	}
	var ping []Entry
	for i := range b.entries {
		if b.entries[i].state(now, &t.cfg) == Questionable {
			ping = append(ping, b.entries[i])
		}
	}
	if len(ping) == 0 {
		b.pending = b.pending[:0] // a bucket of good nodes needs no candidates
		return reject(ReasonFull)
	}
	slices.SortFunc(ping, func(a, b Entry) int { return a.LastSeen.Compare(b.LastSeen) })
	if pi < 0 {
		t.addPending(b, e, now)
	}
	return UpdateResult{Outcome: NeedPing, Ping: ping}
}

// put stores e in bucket b, replacing entry at (or appending if at < 0), and
// removes pending candidate pi (if pi >= 0).
func (t *kbucketTable) put(b *bucket, at int, e Entry, pi int, now time.Time) {
	if pi >= 0 {
		b.pending = slices.Delete(b.pending, pi, pi+1)
	}
	if at < 0 {
		b.entries = append(b.entries, e)
		t.n++
	} else {
		b.entries[at] = e
	}
	b.changed = now
}

// better reports whether candidate a should be preferred to candidate b:
// a good candidate beats a questionable one, then the one seen last wins.
func (t *kbucketTable) better(a, b *Entry, now time.Time) bool {
	sa, sb := a.state(now, &t.cfg), b.state(now, &t.cfg)
	if sa != sb {
		return sa < sb
	}
	return a.LastSeen.After(b.LastSeen)
}

// addPending adds e to the pending candidates of b, evicting the worst one
// if the cache is full and e is better.
func (t *kbucketTable) addPending(b *bucket, e Entry, now time.Time) {
	if len(b.pending) < t.cfg.K {
		b.pending = append(b.pending, e)
		return
	}
	worst := 0
	for i := 1; i < len(b.pending); i++ {
		if t.better(&b.pending[worst], &b.pending[i], now) {
			worst = i
		}
	}
	if t.better(&e, &b.pending[worst], now) {
		b.pending[worst] = e
	}
}

// bestPending returns the index of the best pending candidate of b that is
// not bad and fits the IP limit once entry skip (-1: none) is gone, or -1.
func (t *kbucketTable) bestPending(b *bucket, skip int, now time.Time) int {
	best := -1
	for i := range b.pending {
		c := &b.pending[i]
		if t.bad(c) {
			continue
		}
		if ok, _ := t.ipRoom(b, c.Addr, skip); !ok {
			continue
		}
		if best < 0 || t.better(c, &b.pending[best], now) {
			best = i
		}
	}
	return best
}

// fill moves the best pending candidates of b into it while it has room.
func (t *kbucketTable) fill(b *bucket, now time.Time) {
	for len(b.entries) < b.limit {
		j := t.bestPending(b, -1, now)
		if j < 0 {
			return
		}
		t.put(b, -1, b.pending[j], j, now)
	}
}

// split divides the last bucket: entries sharing at least len(buckets)
// leading bits with Self move to a new last bucket. In an extended table
// the new bucket may be smaller than the old one: the entries over its
// limit, the worst first, become its candidates.
func (t *kbucketTable) split(now time.Time) {
	depth := len(t.buckets)
	old := t.buckets[depth-1]
	nb := t.newBucket(depth, old.changed)
	deeper := func(e *Entry) bool { return t.cfg.Self.CommonPrefixLen(e.ID) >= depth }
	keep := old.entries[:0]
	for _, e := range old.entries {
		if deeper(&e) {
			nb.entries = append(nb.entries, e)
		} else {
			keep = append(keep, e)
		}
	}
	clear(old.entries[len(keep):cap(old.entries)])
	old.entries = keep
	keepP := old.pending[:0]
	for _, e := range old.pending {
		if deeper(&e) {
			nb.pending = append(nb.pending, e)
		} else {
			keepP = append(keepP, e)
		}
	}
	clear(old.pending[len(keepP):cap(old.pending)])
	old.pending = keepP
	if len(nb.entries) > nb.limit {
		slices.SortStableFunc(nb.entries, func(a, b Entry) int { return t.cmpBetter(&a, &b, now) })
		for _, e := range nb.entries[nb.limit:] {
			if !t.bad(&e) && find(nb.pending, e.ID) < 0 {
				t.addPending(nb, e, now)
			}
		}
		clear(nb.entries[nb.limit:])
		nb.entries = nb.entries[:nb.limit]
	}
	t.buckets = append(t.buckets, nb)
	t.recount()
}

// recount sets n from the buckets.
func (t *kbucketTable) recount() {
	t.n = 0
	for _, b := range t.buckets {
		t.n += len(b.entries)
	}
}

// cmpBetter orders entries best first (see better).
func (t *kbucketTable) cmpBetter(a, b *Entry, now time.Time) int {
	switch {
	case t.better(a, b, now):
		return -1
	case t.better(b, a, now):
		return 1
	}
	return 0
}

// Failed implements Table.
func (t *kbucketTable) Failed(n krpc.NodeInfo) {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.buckets[t.index(n.ID)]
	if i := find(b.entries, n.ID); i >= 0 {
		e := &b.entries[i]
		if e.Addr != n.Addr {
			return
		}
		e.Failures++
		if t.bad(e) {
			now := t.cfg.Now()
			if j := t.bestPending(b, i, now); j >= 0 {
				t.put(b, i, b.pending[j], j, now)
			}
		}
		return
	}
	if i := find(b.pending, n.ID); i >= 0 && b.pending[i].Addr == n.Addr {
		b.pending[i].Failures++
		if t.bad(&b.pending[i]) {
			b.pending = slices.Delete(b.pending, i, i+1)
		}
	}
}

// Remove implements Table.
func (t *kbucketTable) Remove(id krpc.ID) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.buckets[t.index(id)]
	if j := find(b.pending, id); j >= 0 {
		b.pending = slices.Delete(b.pending, j, j+1)
	}
	i := find(b.entries, id)
	if i < 0 {
		return false
	}
	b.entries = slices.Delete(b.entries, i, i+1)
	t.n--
	t.fill(b, t.cfg.Now())
	return true
}

// Closest implements Table.
func (t *kbucketTable) Closest(target krpc.ID, n int) []Entry {
	if n <= 0 {
		return nil
	}
	return t.AppendClosest(make([]Entry, 0, n+t.cfg.K), target, n)
}

// AppendClosest implements Table. It visits buckets in order of distance
// to the target and stops once it has n candidates from whole buckets, so
// it looks at O(n + K·log) entries rather than all of them.
func (t *kbucketTable) AppendClosest(dst []Entry, target krpc.ID, n int) []Entry {
	return t.appendClosest(dst, target, n, false)
}

// AppendClosestReplied implements Table.
func (t *kbucketTable) AppendClosestReplied(dst []Entry, target krpc.ID, n int) []Entry {
	return t.appendClosest(dst, target, n, true)
}

// appendClosest is AppendClosest, of the entries that have replied and
// failed nothing since only when replied is set. Buckets are taken whole, in order of distance, and
// counted after the filter, so the n nearest that pass it are all seen.
func (t *kbucketTable) appendClosest(dst []Entry, target krpc.ID, n int, replied bool) []Entry {
	if n <= 0 {
		return dst
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	start := len(dst)
	add := func(b *bucket) {
		for i := range b.entries {
			e := &b.entries[i]
			if !t.bad(e) && (!replied || (!e.LastReply.IsZero() && e.Failures == 0)) {
				dst = append(dst, *e)
			}
		}
	}
	// With c the bucket of target: bucket c matches target on more leading
	// bits than any other; all buckets after c are next (tied on the first
	// differing bit, so they are taken together); then c-1, c-2, ..., 0.
	c := t.index(target)
	add(t.buckets[c])
	if len(dst)-start < n {
		for _, b := range t.buckets[c+1:] {
			add(b)
		}
	}
	for i := c - 1; i >= 0 && len(dst)-start < n; i-- {
		add(t.buckets[i])
	}
	out := dst[start:]
	slices.SortFunc(out, func(a, b Entry) int { return cmpDistance(&target, &a.ID, &b.ID) })
	if len(out) > n {
		clear(out[n:])
		dst = dst[:start+n]
	}
	return dst
}

// Get implements Table.
func (t *kbucketTable) Get(id krpc.ID) (Entry, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	b := t.buckets[t.index(id)]
	if i := find(b.entries, id); i >= 0 {
		return b.entries[i], true
	}
	return Entry{}, false
}

// Len implements Table.
func (t *kbucketTable) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.n
}

// Each implements Table.
func (t *kbucketTable) Each(f func(Entry) bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, b := range t.buckets {
		for _, e := range b.entries {
			if !f(e) {
				return
			}
		}
	}
}

// SetSelf implements Table.
func (t *kbucketTable) SetSelf(self krpc.ID) {
	if self.IsZero() {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if self == t.cfg.Self {
		return
	}
	now := t.cfg.Now()
	var es, ps []Entry
	for _, b := range t.buckets {
		es = append(es, b.entries...)
		ps = append(ps, b.pending...)
	}
	// Good entries first, then the most recently seen, so that the best
	// get the room when the new buckets cannot hold them all.
	slices.SortStableFunc(es, func(a, b Entry) int { return t.cmpBetter(&a, &b, now) })
	t.cfg.Self = self
	t.buckets = []*bucket{t.newBucket(0, now)}
	t.n = 0
	for _, e := range append(es, ps...) {
		t.place(e, now)
	}
}

// place stores e, history and all, where Update would put a new node with
// its ID: in its bucket if there is room (splitting the last bucket as
// needed), among the bucket's candidates otherwise.
func (t *kbucketTable) place(e Entry, now time.Time) {
	if e.ID == t.cfg.Self {
		return
	}
	bi := t.index(e.ID)
	for len(t.buckets[bi].entries) >= t.buckets[bi].limit && bi == len(t.buckets)-1 && len(t.buckets) < numBits {
		t.split(now)
		bi = t.index(e.ID)
	}
	b := t.buckets[bi]
	if ok, _ := t.ipRoom(b, e.Addr, -1); ok && len(b.entries) < b.limit && !t.bad(&e) {
		t.put(b, -1, e, -1, now)
		return
	}
	if !t.bad(&e) {
		t.addPending(b, e, now)
	}
}

// Refresh implements Table: one target per bucket unchanged for
// RefreshAfter. A bucket changes when a node is added to it or replaced in
// it, and when one of its nodes replies to us or queries us.
func (t *kbucketTable) Refresh() []krpc.ID {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.cfg.Now()
	var out []krpc.ID
	last := len(t.buckets) - 1
	for i, b := range t.buckets {
		if now.Sub(b.changed) >= t.cfg.RefreshAfter {
			target := krpc.RandomIDAtDepth(t.cfg.Self, i)
			if i == last { // the last bucket holds every deeper ID too
				target = krpc.RandomIDWithPrefix(t.cfg.Self, i)
			}
			out = append(out, target)
			b.changed = now
		}
	}
	return out
}
