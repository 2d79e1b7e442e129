package db

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/lightdht/lightdht/krpc"
	"github.com/lightdht/lightdht/observe"
)

// item is one entry of the queue: a data item (sighting, peer or sample)
// or, with req set, a request to the writer.
type item struct {
	kind   itemKind
	s      observe.Sighting // kindSighting; kindPeer uses Infohash, Peer, Time and Method (the source)
	sample *sampleItem      // kindSample
	visit  *observe.Visit   // kindVisit
	req    *request
}

type itemKind uint8

const (
	kindSighting itemKind = iota
	kindPeer
	kindSample
	kindVisit
)

// request asks the writer to commit its batch, then run fn (if any) and
// send the result on done.
type request struct {
	fn   func(*writer) error
	done chan error
}

type sampleItem struct {
	node      krpc.NodeInfo
	t         int64
	num       int
	intervalS int
	samples   []krpc.ID
}

// Observe records a sighting. It implements observe.Observer. A zero
// s.Time is taken as time.Now(). Observe blocks while the queue is full,
// unless Options.Shed is set; after Close it only counts the sighting as
// shed.
func (d *DB) Observe(s observe.Sighting) {
	if s.Time.IsZero() {
		s.Time = time.Now()
	}
	d.enqueue(context.Background(), item{kind: kindSighting, s: s})
}

// NonBlocking returns an Observer for a node's packet path, where
// Observe runs on the goroutine that reads the socket: its Observe never
// waits. When the queue is full it drops the sighting and counts it in
// Stats().Shed, whatever Options.Shed says, so that a slow disk costs
// sightings rather than stalling the node. DB.Observe itself waits for
// room unless Options.Shed is set (back-pressure), which suits the
// crawler: it would rather slow down than lose what it saw.
func (d *DB) NonBlocking() observe.Observer { return nonBlocking{d} }

type nonBlocking struct{ d *DB }

func (n nonBlocking) Observe(s observe.Sighting) {
	if s.Time.IsZero() {
		s.Time = time.Now()
	}
	n.d.put(context.Background(), item{kind: kindSighting, s: s}, true)
}

// RecordPeer records that peer (a BitTorrent endpoint, not a DHT node)
// was given for infohash, from source: by convention "get_peers" for a
// peer from a get_peers reply. Peers stored by incoming announce_peer
// queries come from Observe with source "announce". A zero t is
// time.Now(). Queueing is as for Observe.
func (d *DB) RecordPeer(infohash krpc.ID, peer netip.AddrPort, source string, t time.Time) {
	if t.IsZero() {
		t = time.Now()
	}
	d.enqueue(context.Background(), item{kind: kindPeer, s: observe.Sighting{
		Infohash: infohash, Peer: peer, Method: source, Time: t,
	}})
}

// RecordSample records a BEP 51 sample_infohashes reply from node: one
// samples row, and each infohash counted in infohashes.via_sample. num and
// intervalS are the reply's "num" and "interval" fields. A zero t is
// time.Now(). samples is copied. Queueing is as for Observe.
func (d *DB) RecordSample(node krpc.NodeInfo, t time.Time, num, intervalS int, samples []krpc.ID) {
	if t.IsZero() {
		t = time.Now()
	}
	d.enqueue(context.Background(), item{kind: kindSample, sample: &sampleItem{
		node: node, t: t.UnixMilli(), num: num, intervalS: intervalS,
		samples: append([]krpc.ID(nil), samples...),
	}})
}

// Aggregation keys and values: a batch folds repeated sightings of one key
// into one row before it reaches SQLite.

type nodeKey struct {
	id   krpc.ID
	addr netip.AddrPort
}

type nodeAgg struct {
	key         nodeKey
	first, last int64
	firstSource observe.Source
	times       int64
	replies     int64
	timeouts    int64
	queriesRecv int64
	lastReply   int64 // valid if replies > 0
	rtt         time.Duration
	version     string // raw; "" for none
	versionSeen int64
	bep42       bool // SecureID of the latest sighting
	readOnly    bool
}

type reportKey struct {
	reporter, reported nodeKey
}

type countAgg struct {
	first, last, count int64
}

type reportAgg struct {
	key reportKey
	countAgg
}

// itemAgg is a BEP 44 item's sightings within a batch.
type itemAgg struct {
	target      krpc.ID
	first, last int64
	puts, gets  int64
	mutable     bool
	seq         int64 // highest stored seq; -1 when none seen
	lastPut     int64 // 0: no put in the batch
	putter      nodeKey
}

type ihAgg struct {
	ih                         krpc.ID
	first, last                int64
	sample, getPeers, announce int64
}

type peerKey struct {
	ih   krpc.ID
	addr netip.AddrPort
}

type peerAgg struct {
	key    peerKey
	source string // source of the earliest sighting
	countAgg
}

// batch is the items folded since the last commit, and then the
// statement arguments built from them. The writer has two: while the
// committer goroutine writes one, the collector goroutine fills the other.
type batch struct {
	reports    bool // Options.Reports
	neighbours bool // Options.Neighbours

	n       int // data items in the batch
	nodeIdx map[nodeKey]int
	nodes   []nodeAgg
	repIdx  map[reportKey]int
	reps    []reportAgg
	ihIdx   map[krpc.ID]int
	ihs     []ihAgg
	itemIdx map[krpc.ID]int
	items   []itemAgg
	peerIdx map[peerKey]int
	peers   []peerAgg
	samples []*sampleItem

	// Visits, in time order once prepared; visitSeenID and
	// visitSeenAddr number their groups (see prepareVisitArgs).
	visits        []observe.Visit
	visitSeenID   map[krpc.ID]int
	visitSeenAddr map[netip.AddrPort]int
	visitGroups   int
	visitOutcomes [5]int64 // visits by observe.Outcome

	// Built by prepare: one argument list per table, and the text of
	// every ID, IP and version in it, in one string.
	nodeArgs, repArgs, ihArgs, peerArgs, sampleArgs, itemArgs []any
	visitArgs, nbrArgs                                        []any
	text                                                      texts
	times                                                     timeBoxes

	req *request // answered once the batch is committed; nil if none
}

func newBatch(opts *Options) *batch {
	return &batch{
		reports:       opts.Reports,
		neighbours:    opts.Neighbours,
		visitSeenID:   make(map[krpc.ID]int),
		visitSeenAddr: make(map[netip.AddrPort]int),
		nodeIdx:       make(map[nodeKey]int),
		repIdx:        make(map[reportKey]int),
		ihIdx:         make(map[krpc.ID]int),
		itemIdx:       make(map[krpc.ID]int),
		peerIdx:       make(map[peerKey]int),
	}
}

// writer is the state of the writer goroutines: the collector (run)
// folds queued items into a batch; the committer (commitLoop) owns the
// backend (the dedicated connection and its statements), commits
// batches and runs requests.
type writer struct {
	d    *DB
	opts Options
	be   backend
	cur  runState // the open run (committer)

	flushErr error // failed commits since the last Flush request (committer)
}

// runState is the run that visits and neighbours go to.
type runState struct {
	id      int64    // crawl_runs.id; 0 for none
	vantage int64    // vantages.ref of this writer's vantage in it; 0 for none
	counts  [5]int64 // the run's visits this writer committed, by observe.Outcome
}

// norm strips what the database does not key on: IPv4-mapping and zones.
func norm(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port())
}

// run is the collector goroutine: it folds queued items into the current
// batch and hands it to the committer when it holds BatchSize items, when
// its oldest item is FlushInterval old, on a request, and when the queue
// is closed. Hand-over is double-buffered: the collector fills batch N+1
// while the committer writes batch N, and waits for batch N to be written
// before it hands over N+1. So it never waits longer than one commit, and
// a request reaches the committer after every item queued before it.
func (w *writer) run() {
	d := w.d
	todo := make(chan *batch, 1) // to the committer, in queue order
	free := make(chan *batch, 2) // committed batches, back to the collector
	free <- newBatch(&w.opts)
	cur := newBatch(&w.opts)
	go w.commitLoop(todo, free)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var timerC <-chan time.Time // nil while the batch is empty
	handOver := func(req *request) {
		timer.Stop()
		timerC = nil
		if cur.n == 0 && req == nil {
			return
		}
		cur.req = req
		cur.prepare()
		todo <- cur
		cur = <-free
		cur.reset()
	}
	for {
		select {
		case it, ok := <-d.q:
			if !ok {
				if cur.n > 0 {
					cur.prepare()
					todo <- cur
				}
				close(todo) // the committer closes d.done when it is through
				return
			}
			if r := it.req; r != nil {
				handOver(r)
				continue
			}
			cur.add(&it)
			if cur.n == 1 {
				timer.Reset(w.opts.FlushInterval)
				timerC = timer.C
			}
			if cur.n >= w.opts.BatchSize {
				handOver(nil)
			}
		case <-timerC:
			handOver(nil)
		}
	}
}

// commitLoop is the committer goroutine: it commits each batch from todo,
// answers its request, and returns the batch on free. When todo is closed
// it closes the connection and d.done.
func (w *writer) commitLoop(todo <-chan *batch, free chan<- *batch) {
	d := w.d
	defer close(d.done)
	for b := range todo {
		w.commit(b)
		if r := b.req; r != nil {
			b.req = nil
			if r.fn == nil {
				r.done <- w.flushErr
				w.flushErr = nil
			} else {
				r.done <- r.fn(w)
			}
		}
		free <- b
	}
	w.be.close()
}

// add folds one data item into the batch.
func (b *batch) add(it *item) {
	b.n++
	switch it.kind {
	case kindSighting:
		b.addSighting(&it.s)
	case kindPeer:
		b.addPeer(it.s.Infohash, it.s.Peer, it.s.Method, it.s.Time.UnixMilli())
	case kindSample:
		b.samples = append(b.samples, it.sample)
		for _, ih := range it.sample.samples {
			b.ih(ih, it.sample.t).sample++
		}
	case kindVisit:
		b.addVisit(it.visit)
	}
}

func (b *batch) addSighting(s *observe.Sighting) {
	t := s.Time.UnixMilli()
	k := nodeKey{s.Node.ID, norm(s.Node.Addr)}
	i, ok := b.nodeIdx[k]
	if !ok {
		i = len(b.nodes)
		b.nodeIdx[k] = i
		b.nodes = append(b.nodes, nodeAgg{key: k, first: t, last: t, firstSource: s.Source})
	}
	a := &b.nodes[i]
	if t < a.first {
		a.first, a.firstSource = t, s.Source
	}
	if t >= a.last {
		a.last, a.bep42 = t, s.SecureID
	}
	a.times++
	switch s.Source {
	case observe.SourceReply:
		if a.replies == 0 || t >= a.lastReply {
			a.lastReply, a.rtt = t, s.RTT
		}
		a.replies++
	case observe.SourceTimeout:
		a.timeouts++
	case observe.SourceQuery:
		a.queriesRecv++
	case observe.SourceReported:
		if (b.reports || b.neighbours) && s.Reporter.Addr.IsValid() {
			rk := reportKey{nodeKey{s.Reporter.ID, norm(s.Reporter.Addr)}, k}
			j, ok := b.repIdx[rk]
			if !ok {
				j = len(b.reps)
				b.repIdx[rk] = j
				b.reps = append(b.reps, reportAgg{key: rk, countAgg: countAgg{first: t, last: t}})
			}
			b.reps[j].add(t)
		}
	}
	if s.Version != "" && (a.version == "" || t >= a.versionSeen) {
		a.version, a.versionSeen = s.Version, t
	}
	a.readOnly = a.readOnly || s.ReadOnly
	if !s.Item.IsZero() {
		b.item(s, k, t)
	}
	if !s.Infohash.IsZero() {
		h := b.ih(s.Infohash, t)
		switch s.Method {
		case krpc.MethodGetPeers:
			h.getPeers++
		case krpc.MethodAnnouncePeer:
			h.announce++
		}
		if s.Peer.IsValid() {
			b.addPeer(s.Infohash, s.Peer, "announce", t)
		}
	}
}

func (c *countAgg) add(t int64) {
	c.first = min(c.first, t)
	c.last = max(c.last, t)
	c.count++
}

// ih returns the batch's entry for infohash ih, updating its times.
// item records an incoming get or an accepted put of a BEP 44 item.
func (b *batch) item(s *observe.Sighting, from nodeKey, t int64) {
	i, ok := b.itemIdx[s.Item]
	if !ok {
		i = len(b.items)
		b.itemIdx[s.Item] = i
		b.items = append(b.items, itemAgg{target: s.Item, first: t, last: t, seq: -1})
	}
	a := &b.items[i]
	a.first, a.last = min(a.first, t), max(a.last, t)
	if s.Method != krpc.MethodPut {
		a.gets++
		return
	}
	a.puts++
	if s.ItemMutable {
		a.mutable = true
		a.seq = max(a.seq, s.ItemSeq)
	}
	if t >= a.lastPut {
		a.lastPut, a.putter = t, from
	}
}

func (b *batch) ih(ih krpc.ID, t int64) *ihAgg {
	i, ok := b.ihIdx[ih]
	if !ok {
		i = len(b.ihs)
		b.ihIdx[ih] = i
		b.ihs = append(b.ihs, ihAgg{ih: ih, first: t, last: t})
	}
	h := &b.ihs[i]
	h.first = min(h.first, t)
	h.last = max(h.last, t)
	return h
}

func (b *batch) addPeer(ih krpc.ID, peer netip.AddrPort, source string, t int64) {
	k := peerKey{ih, norm(peer)}
	i, ok := b.peerIdx[k]
	if !ok {
		i = len(b.peers)
		b.peerIdx[k] = i
		b.peers = append(b.peers, peerAgg{key: k, source: source, countAgg: countAgg{first: t, last: t}})
	}
	p := &b.peers[i]
	if t < p.first {
		p.source = source
	}
	p.add(t)
}

// reset empties the batch for reuse.
func (b *batch) reset() {
	b.n = 0
	clear(b.nodeIdx)
	clear(b.repIdx)
	clear(b.ihIdx)
	clear(b.itemIdx)
	b.items = b.items[:0]
	clear(b.peerIdx)
	b.nodes = b.nodes[:0]
	b.reps = b.reps[:0]
	b.ihs = b.ihs[:0]
	b.peers = b.peers[:0]
	clear(b.samples)
	b.samples = b.samples[:0]
	b.visits = b.visits[:0]
	clear(b.visitSeenID)
	clear(b.visitSeenAddr)
	b.visitGroups = 0
	b.visitOutcomes = [5]int64{}
	for _, a := range []*[]any{&b.nodeArgs, &b.repArgs, &b.ihArgs, &b.peerArgs, &b.sampleArgs, &b.itemArgs, &b.visitArgs, &b.nbrArgs} {
		clear(*a)
		*a = (*a)[:0]
	}
	b.text.reset()
	b.req = nil
}

// texts collects the text arguments of a batch in one buffer, then hands
// them out, in the same order, as substrings of one string: one
// allocation per batch instead of one per value.
type texts struct {
	buf  []byte
	ends []int
	s    string
	next int
}

func (t *texts) reset() {
	t.buf, t.ends, t.s, t.next = t.buf[:0], t.ends[:0], "", 0
}

func (t *texts) mark() { t.ends = append(t.ends, len(t.buf)) }

func (t *texts) id(id krpc.ID) {
	t.buf = hex.AppendEncode(t.buf, id[:])
	t.mark()
}

func (t *texts) ip(a netip.Addr) {
	if a.IsValid() {
		t.buf = a.AppendTo(t.buf)
	} else {
		t.buf = append(t.buf, a.String()...)
	}
	t.mark()
}

func (t *texts) version(v string) {
	t.buf = appendPrintableVersion(t.buf, v)
	t.mark()
}

// seal ends collection; take then returns the texts in order.
func (t *texts) seal() { t.s = string(t.buf) }

func (t *texts) take() string {
	start := 0
	if t.next > 0 {
		start = t.ends[t.next-1]
	}
	end := t.ends[t.next]
	t.next++
	return t.s[start:end]
}

// The arguments are boxed in interfaces, which allocates for most int64
// values. Ports and times repeat a lot: they are boxed once.

// portValues holds every port boxed as an int64.
var portValues = sync.OnceValue(func() []any {
	v := make([]any, 1<<16)
	for i := range v {
		v[i] = int64(i)
	}
	return v
})

// timeBoxes caches boxed times (Unix milliseconds): the items of a batch
// come from a short span of time, so its times repeat.
type timeBoxes [1024]struct {
	t int64
	v any
}

func (c *timeBoxes) box(t int64) any {
	e := &c[uint64(t)%uint64(len(c))]
	if e.v == nil || e.t != t {
		e.t, e.v = t, t
	}
	return e.v
}

// prepare sorts the batch and builds the statements' arguments. Key
// order: each row lands next to the previous one in the B-tree, whose
// pages are then still in the CPU caches. (The index maps are stale
// after sorting; the batch is reset before it is filled again.)
func (b *batch) prepare() {
	slices.SortFunc(b.nodes, func(x, y nodeAgg) int {
		if c := bytes.Compare(x.key.id[:], y.key.id[:]); c != 0 {
			return c
		}
		return x.key.addr.Compare(y.key.addr)
	})
	t := &b.text
	// Pass 1: the texts, in the order pass 2 takes them.
	for i := range b.nodes {
		a := &b.nodes[i]
		t.id(a.key.id)
		t.ip(a.key.addr.Addr())
		if a.version != "" {
			t.version(a.version)
		}
	}
	for i := range b.reps {
		r := &b.reps[i]
		t.id(r.key.reporter.id)
		t.ip(r.key.reporter.addr.Addr())
		t.id(r.key.reported.id)
		t.ip(r.key.reported.addr.Addr())
	}
	for i := range b.ihs {
		t.id(b.ihs[i].ih)
	}
	for i := range b.peers {
		p := &b.peers[i]
		t.id(p.key.ih)
		t.ip(p.key.addr.Addr())
	}
	for _, s := range b.samples {
		t.id(s.node.ID)
		t.ip(norm(s.node.Addr).Addr())
	}
	for i := range b.items {
		it := &b.items[i]
		t.id(it.target)
		if it.lastPut != 0 {
			t.id(it.putter.id)
			t.ip(it.putter.addr.Addr())
		}
	}
	b.prepareVisitTexts()
	t.seal()
	// Pass 2: the arguments.
	ports, tb := portValues(), &b.times
	args := b.nodeArgs
	for i := range b.nodes {
		a := &b.nodes[i]
		args = append(args, t.take(), t.take(), ports[a.key.addr.Port()],
			tb.box(a.first), tb.box(a.last), a.times, a.firstSource.String())
		if a.replies > 0 {
			args = append(args, tb.box(a.lastReply))
		} else {
			args = append(args, nil)
		}
		args = append(args, a.replies, a.timeouts, a.replies+a.timeouts, a.queriesRecv)
		if a.replies > 0 && a.rtt > 0 {
			args = append(args, float64(a.rtt)/float64(time.Millisecond))
		} else {
			args = append(args, nil)
		}
		if a.version != "" {
			args = append(args, t.take(), tb.box(a.versionSeen))
		} else {
			args = append(args, nil, nil)
		}
		args = append(args, a.bep42, a.readOnly)
	}
	b.nodeArgs = args
	args = b.repArgs
	for i := range b.reps {
		r := &b.reps[i]
		args = append(args,
			t.take(), t.take(), ports[r.key.reporter.addr.Port()],
			t.take(), t.take(), ports[r.key.reported.addr.Port()],
			tb.box(r.first), tb.box(r.last), r.count)
	}
	b.repArgs = args
	if b.neighbours {
		// The first six of each report row: reporter and reported.
		nbr := b.nbrArgs
		for i := 0; i < len(args); i += 9 {
			nbr = append(nbr, args[i:i+6]...)
		}
		b.nbrArgs = nbr
	}
	args = b.ihArgs
	for i := range b.ihs {
		h := &b.ihs[i]
		args = append(args, t.take(), tb.box(h.first), tb.box(h.last), h.sample, h.getPeers, h.announce)
	}
	b.ihArgs = args
	args = b.peerArgs
	for i := range b.peers {
		p := &b.peers[i]
		args = append(args, t.take(), t.take(), ports[p.key.addr.Port()], tb.box(p.first), tb.box(p.last), p.source, p.count)
	}
	b.peerArgs = args
	args = b.sampleArgs
	for _, s := range b.samples {
		args = append(args, t.take(), t.take(), int64(s.node.Addr.Port()),
			s.t, int64(s.num), int64(s.intervalS), int64(len(s.samples)))
	}
	b.sampleArgs = args
	args = b.itemArgs
	for i := range b.items {
		it := &b.items[i]
		args = append(args, t.take(), it.mutable)
		if it.seq >= 0 {
			args = append(args, it.seq)
		} else {
			args = append(args, nil)
		}
		args = append(args, tb.box(it.first), tb.box(it.last), it.puts, it.gets)
		if it.lastPut != 0 {
			args = append(args, tb.box(it.lastPut), t.take(), t.take(), ports[it.putter.addr.Port()])
		} else {
			args = append(args, nil, nil, nil, nil)
		}
	}
	b.itemArgs = args
	b.prepareVisitArgs()
}

// commit writes the batch in one transaction. A failed batch is
// counted in Stats (Errors, Lost) and remembered for the next Flush.
func (w *writer) commit(b *batch) {
	if b.n == 0 {
		return
	}
	d := w.d
	if w.opts.flushHook != nil {
		w.opts.flushHook()
	}
	start := time.Now()
	err := w.be.write(b, &w.cur)
	d.lastFlush.Store(int64(time.Since(start)))
	n := uint64(b.n)
	if err != nil {
		err = &Error{Op: "flush", Path: d.path, Err: err}
		d.errs.Add(1)
		d.lost.Add(n)
		d.lastErr.Store(&err)
		w.flushErr = errors.Join(w.flushErr, err)
		return
	}
	d.batches.Add(1)
	d.written.Add(n)
	if w.cur.id != 0 {
		for o, c := range b.visitOutcomes {
			w.cur.counts[o] += c
		}
	}
}

// printableVersion renders a "v" client version for the version column:
// four bytes whose first two are printable ASCII become those two
// characters and the hex of the last two ("UT" 0x01 0x02 -> "UT0102");
// other all-printable-ASCII strings are kept; anything else becomes "0x"
// and its hex.
func printableVersion(v string) string {
	return string(appendPrintableVersion(nil, v))
}

// appendPrintableVersion appends printableVersion(v) to buf.
func appendPrintableVersion(buf []byte, v string) []byte {
	printable := func(c byte) bool { return c > ' ' && c < 0x7f }
	if len(v) == 4 && printable(v[0]) && printable(v[1]) {
		buf = append(buf, v[:2]...)
		return hex.AppendEncode(buf, []byte(v[2:]))
	}
	for i := 0; i < len(v); i++ {
		if !printable(v[i]) {
			buf = append(buf, "0x"...)
			return hex.AppendEncode(buf, []byte(v))
		}
	}
	return append(buf, v...)
}
