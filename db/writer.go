package db

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/lightdht/lightdht"
	"github.com/lightdht/lightdht/krpc"
)

// item is one entry of the queue: a data item (sighting, peer or sample)
// or, with req set, a request to the writer.
type item struct {
	kind   itemKind
	s      lightdht.Sighting // kindSighting; kindPeer uses Infohash, Peer, Time and Method (the source)
	sample *sampleItem       // kindSample
	req    *request
}

type itemKind uint8

const (
	kindSighting itemKind = iota
	kindPeer
	kindSample
)

// request asks the writer to commit its batch, then run fn (if any) and
// send the result on done.
type request struct {
	fn   func(*sql.Conn) error
	done chan error
}

type sampleItem struct {
	node      krpc.NodeInfo
	t         int64
	num       int
	intervalS int
	samples   []krpc.ID
}

// Observe records a sighting. It implements lightdht.Observer. A zero
// s.Time is taken as time.Now(). Observe blocks while the queue is full,
// unless Options.Shed is set; after Close it only counts the sighting as
// shed.
func (d *DB) Observe(s lightdht.Sighting) {
	if s.Time.IsZero() {
		s.Time = time.Now()
	}
	d.enqueue(context.Background(), item{kind: kindSighting, s: s})
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
	d.enqueue(context.Background(), item{kind: kindPeer, s: lightdht.Sighting{
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
	firstSource lightdht.Source
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

// writer is the state of the writer goroutine: the batch and the prepared
// statements on its dedicated connection.
type writer struct {
	d    *DB
	conn *sql.Conn
	opts Options

	nodesU, reportsU, ihU, peersU, samplesU *upsert

	n        int // data items in the batch
	nodeIdx  map[nodeKey]int
	nodes    []nodeAgg
	repIdx   map[reportKey]int
	reps     []reportAgg
	ihIdx    map[krpc.ID]int
	ihs      []ihAgg
	peerIdx  map[peerKey]int
	peers    []peerAgg
	samples  []*sampleItem
	flushErr error // failed commits since the last Flush request
}

// norm strips what the database does not key on: IPv4-mapping and zones.
func norm(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port())
}

func newWriter(conn *sql.Conn, opts Options) (*writer, error) {
	w := &writer{
		conn:    conn,
		opts:    opts,
		nodeIdx: make(map[nodeKey]int),
		repIdx:  make(map[reportKey]int),
		ihIdx:   make(map[krpc.ID]int),
		peerIdx: make(map[peerKey]int),
	}
	var err error
	prep := func(table string, cols []string, conflict, set string) *upsert {
		if err != nil {
			return nil
		}
		var u *upsert
		u, err = newUpsert(conn, table, cols, conflict, set)
		return u
	}
	w.nodesU = prep("nodes", []string{
		"id", "ip", "port", "first_seen", "last_seen", "times_seen", "first_source",
		"last_reply", "replies", "timeouts", "queries_sent", "queries_received",
		"last_rtt_ms", "version", "version_seen", "bep42_valid", "read_only",
	}, "id, ip, port", `
		first_source = CASE WHEN excluded.first_seen < first_seen THEN excluded.first_source ELSE first_source END,
		first_seen = min(first_seen, excluded.first_seen),
		last_seen = max(last_seen, excluded.last_seen),
		times_seen = times_seen + excluded.times_seen,
		last_rtt_ms = CASE WHEN excluded.last_reply IS NOT NULL AND (last_reply IS NULL OR excluded.last_reply >= last_reply)
			THEN excluded.last_rtt_ms ELSE last_rtt_ms END,
		last_reply = max(coalesce(last_reply, excluded.last_reply), coalesce(excluded.last_reply, last_reply)),
		replies = replies + excluded.replies,
		timeouts = timeouts + excluded.timeouts,
		queries_sent = queries_sent + excluded.queries_sent,
		queries_received = queries_received + excluded.queries_received,
		version = CASE WHEN excluded.version IS NOT NULL AND (version_seen IS NULL OR excluded.version_seen >= version_seen)
			THEN excluded.version ELSE version END,
		version_seen = CASE WHEN excluded.version IS NOT NULL AND (version_seen IS NULL OR excluded.version_seen >= version_seen)
			THEN excluded.version_seen ELSE version_seen END,
		bep42_valid = CASE WHEN excluded.last_seen >= last_seen THEN excluded.bep42_valid ELSE bep42_valid END,
		read_only = max(read_only, excluded.read_only)`)
	w.reportsU = prep("reports", []string{
		"reporter_id", "reporter_ip", "reporter_port", "reported_id", "reported_ip", "reported_port",
		"first_seen", "last_seen", "count",
	}, "reporter_id, reporter_ip, reporter_port, reported_id, reported_ip, reported_port", `
		first_seen = min(first_seen, excluded.first_seen),
		last_seen = max(last_seen, excluded.last_seen),
		count = count + excluded.count`)
	w.ihU = prep("infohashes", []string{
		"infohash", "first_seen", "last_seen", "via_sample", "via_get_peers", "via_announce",
	}, "infohash", `
		first_seen = min(first_seen, excluded.first_seen),
		last_seen = max(last_seen, excluded.last_seen),
		via_sample = via_sample + excluded.via_sample,
		via_get_peers = via_get_peers + excluded.via_get_peers,
		via_announce = via_announce + excluded.via_announce`)
	w.peersU = prep("peers", []string{
		"infohash", "ip", "port", "first_seen", "last_seen", "source", "count",
	}, "infohash, ip, port", `
		source = CASE WHEN excluded.first_seen < first_seen THEN excluded.source ELSE source END,
		first_seen = min(first_seen, excluded.first_seen),
		last_seen = max(last_seen, excluded.last_seen),
		count = count + excluded.count`)
	w.samplesU = prep("samples", []string{
		"node_id", "ip", "port", "time", "num", "interval_s", "samples_count",
	}, "", "")
	if err != nil {
		w.closeStmts()
		return nil, err
	}
	return w, nil
}

// run is the writer goroutine: it collects queued items into the batch and
// commits it when it holds BatchSize items, when its oldest item is
// FlushInterval old, on a request, and when the queue is closed.
func (w *writer) run() {
	d := w.d
	defer close(d.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var timerC <-chan time.Time // nil while the batch is empty
	commit := func() {
		timer.Stop()
		timerC = nil
		w.commit()
	}
	for {
		select {
		case it, ok := <-d.q:
			if !ok {
				commit()
				w.closeStmts()
				w.conn.Close()
				return
			}
			if r := it.req; r != nil {
				commit()
				if r.fn == nil {
					r.done <- w.flushErr
					w.flushErr = nil
				} else {
					r.done <- r.fn(w.conn)
				}
				continue
			}
			w.add(&it)
			if w.n == 1 {
				timer.Reset(w.opts.FlushInterval)
				timerC = timer.C
			}
			if w.n >= w.opts.BatchSize {
				commit()
			}
		case <-timerC:
			commit()
		}
	}
}

// add folds one data item into the batch.
func (w *writer) add(it *item) {
	w.n++
	switch it.kind {
	case kindSighting:
		w.addSighting(&it.s)
	case kindPeer:
		w.addPeer(it.s.Infohash, it.s.Peer, it.s.Method, it.s.Time.UnixMilli())
	case kindSample:
		w.samples = append(w.samples, it.sample)
		for _, ih := range it.sample.samples {
			w.ih(ih, it.sample.t).sample++
		}
	}
}

func (w *writer) addSighting(s *lightdht.Sighting) {
	t := s.Time.UnixMilli()
	k := nodeKey{s.Node.ID, norm(s.Node.Addr)}
	i, ok := w.nodeIdx[k]
	if !ok {
		i = len(w.nodes)
		w.nodeIdx[k] = i
		w.nodes = append(w.nodes, nodeAgg{key: k, first: t, last: t, firstSource: s.Source})
	}
	a := &w.nodes[i]
	if t < a.first {
		a.first, a.firstSource = t, s.Source
	}
	if t >= a.last {
		a.last, a.bep42 = t, s.SecureID
	}
	a.times++
	switch s.Source {
	case lightdht.SourceReply:
		if a.replies == 0 || t >= a.lastReply {
			a.lastReply, a.rtt = t, s.RTT
		}
		a.replies++
	case lightdht.SourceTimeout:
		a.timeouts++
	case lightdht.SourceQuery:
		a.queriesRecv++
	case lightdht.SourceReported:
		if w.opts.Reports && s.Reporter.Addr.IsValid() {
			rk := reportKey{nodeKey{s.Reporter.ID, norm(s.Reporter.Addr)}, k}
			j, ok := w.repIdx[rk]
			if !ok {
				j = len(w.reps)
				w.repIdx[rk] = j
				w.reps = append(w.reps, reportAgg{key: rk, countAgg: countAgg{first: t, last: t}})
			}
			w.reps[j].add(t)
		}
	}
	if s.Version != "" && (a.version == "" || t >= a.versionSeen) {
		a.version, a.versionSeen = s.Version, t
	}
	a.readOnly = a.readOnly || s.ReadOnly
	if !s.Infohash.IsZero() {
		h := w.ih(s.Infohash, t)
		switch s.Method {
		case krpc.MethodGetPeers:
			h.getPeers++
		case krpc.MethodAnnouncePeer:
			h.announce++
		}
		if s.Peer.IsValid() {
			w.addPeer(s.Infohash, s.Peer, "announce", t)
		}
	}
}

func (c *countAgg) add(t int64) {
	c.first = min(c.first, t)
	c.last = max(c.last, t)
	c.count++
}

// ih returns the batch's entry for infohash ih, updating its times.
func (w *writer) ih(ih krpc.ID, t int64) *ihAgg {
	i, ok := w.ihIdx[ih]
	if !ok {
		i = len(w.ihs)
		w.ihIdx[ih] = i
		w.ihs = append(w.ihs, ihAgg{ih: ih, first: t, last: t})
	}
	h := &w.ihs[i]
	h.first = min(h.first, t)
	h.last = max(h.last, t)
	return h
}

func (w *writer) addPeer(ih krpc.ID, peer netip.AddrPort, source string, t int64) {
	k := peerKey{ih, norm(peer)}
	i, ok := w.peerIdx[k]
	if !ok {
		i = len(w.peers)
		w.peerIdx[k] = i
		w.peers = append(w.peers, peerAgg{key: k, source: source, countAgg: countAgg{first: t, last: t}})
	}
	p := &w.peers[i]
	if t < p.first {
		p.source = source
	}
	p.add(t)
}

// commit writes the batch in one immediate transaction and empties it. A
// failed batch is counted in Stats (Errors, Lost) and remembered for the
// next Flush.
func (w *writer) commit() {
	if w.n == 0 {
		return
	}
	d := w.d
	if w.opts.flushHook != nil {
		w.opts.flushHook()
	}
	start := time.Now()
	err := w.write()
	d.lastFlush.Store(int64(time.Since(start)))
	n := uint64(w.n)
	w.reset()
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
}

func (w *writer) reset() {
	w.n = 0
	clear(w.nodeIdx)
	clear(w.repIdx)
	clear(w.ihIdx)
	clear(w.peerIdx)
	w.nodes = w.nodes[:0]
	w.reps = w.reps[:0]
	w.ihs = w.ihs[:0]
	w.peers = w.peers[:0]
	clear(w.samples)
	w.samples = w.samples[:0]
	for _, u := range []*upsert{w.nodesU, w.reportsU, w.ihU, w.peersU, w.samplesU} {
		u.clear() // after a failed write
	}
}

func (w *writer) write() (err error) {
	ctx := context.Background() // no Done channel: the driver starts no watcher goroutine
	if _, err := w.conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			w.conn.ExecContext(ctx, "ROLLBACK")
		}
	}()
	// Key order: each row lands next to the previous one in the B-tree,
	// whose pages are then still in the CPU caches. (The index maps are
	// stale after sorting; the batch is reset after write.)
	slices.SortFunc(w.nodes, func(a, b nodeAgg) int {
		if c := bytes.Compare(a.key.id[:], b.key.id[:]); c != 0 {
			return c
		}
		return a.key.addr.Compare(b.key.addr)
	})
	for i := range w.nodes {
		a := &w.nodes[i]
		u := w.nodesU
		u.args = append(u.args, a.key.id.String(), a.key.addr.Addr().String(), int64(a.key.addr.Port()),
			a.first, a.last, a.times, a.firstSource.String())
		if a.replies > 0 {
			u.args = append(u.args, a.lastReply)
		} else {
			u.args = append(u.args, nil)
		}
		u.args = append(u.args, a.replies, a.timeouts, a.replies+a.timeouts, a.queriesRecv)
		if a.replies > 0 && a.rtt > 0 {
			u.args = append(u.args, float64(a.rtt)/float64(time.Millisecond))
		} else {
			u.args = append(u.args, nil)
		}
		if a.version != "" {
			u.args = append(u.args, printableVersion(a.version), a.versionSeen)
		} else {
			u.args = append(u.args, nil, nil)
		}
		u.args = append(u.args, a.bep42, a.readOnly)
		if err := u.row(); err != nil {
			return err
		}
	}
	for i := range w.reps {
		r := &w.reps[i]
		u := w.reportsU
		u.args = append(u.args,
			r.key.reporter.id.String(), r.key.reporter.addr.Addr().String(), int64(r.key.reporter.addr.Port()),
			r.key.reported.id.String(), r.key.reported.addr.Addr().String(), int64(r.key.reported.addr.Port()),
			r.first, r.last, r.count)
		if err := u.row(); err != nil {
			return err
		}
	}
	for i := range w.ihs {
		h := &w.ihs[i]
		u := w.ihU
		u.args = append(u.args, h.ih.String(), h.first, h.last, h.sample, h.getPeers, h.announce)
		if err := u.row(); err != nil {
			return err
		}
	}
	for i := range w.peers {
		p := &w.peers[i]
		u := w.peersU
		u.args = append(u.args, p.key.ih.String(), p.key.addr.Addr().String(), int64(p.key.addr.Port()),
			p.first, p.last, p.source, p.count)
		if err := u.row(); err != nil {
			return err
		}
	}
	for _, s := range w.samples {
		u := w.samplesU
		a := norm(s.node.Addr)
		u.args = append(u.args, s.node.ID.String(), a.Addr().String(), int64(a.Port()),
			s.t, int64(s.num), int64(s.intervalS), int64(len(s.samples)))
		if err := u.row(); err != nil {
			return err
		}
	}
	for _, u := range []*upsert{w.nodesU, w.reportsU, w.ihU, w.peersU, w.samplesU} {
		if err := u.finish(); err != nil {
			return err
		}
	}
	_, err = w.conn.ExecContext(ctx, "COMMIT")
	return err
}

func (w *writer) closeStmts() {
	for _, u := range []*upsert{w.nodesU, w.reportsU, w.ihU, w.peersU, w.samplesU} {
		if u != nil {
			u.close()
		}
	}
}

// printableVersion renders a "v" client version for the version column:
// four bytes whose first two are printable ASCII become those two
// characters and the hex of the last two ("UT" 0x01 0x02 -> "UT0102");
// other all-printable-ASCII strings are kept; anything else becomes "0x"
// and its hex.
func printableVersion(v string) string {
	printable := func(c byte) bool { return c > ' ' && c < 0x7f }
	if len(v) == 4 && printable(v[0]) && printable(v[1]) {
		return v[:2] + hex.EncodeToString([]byte(v[2:]))
	}
	for i := 0; i < len(v); i++ {
		if !printable(v[i]) {
			return "0x" + hex.EncodeToString([]byte(v))
		}
	}
	return v
}

// chunkRows is how many rows one multi-row INSERT carries: fewer calls
// through database/sql and cgo per row.
const chunkRows = 64

// upsert is an INSERT ... ON CONFLICT DO UPDATE prepared twice on the
// writer's connection: for chunkRows rows and for one. Rows are appended
// to args and sent a chunk at a time.
type upsert struct {
	cols      int
	many, one *sql.Stmt
	args      []any
}

func newUpsert(conn *sql.Conn, table string, cols []string, conflict, set string) (*upsert, error) {
	u := &upsert{cols: len(cols)}
	var err error
	if u.many, err = conn.PrepareContext(context.Background(), upsertSQL(table, cols, conflict, set, chunkRows)); err != nil {
		return nil, err
	}
	if u.one, err = conn.PrepareContext(context.Background(), upsertSQL(table, cols, conflict, set, 1)); err != nil {
		u.many.Close()
		return nil, err
	}
	u.args = make([]any, 0, chunkRows*len(cols))
	return u, nil
}

func upsertSQL(table string, cols []string, conflict, set string, rows int) string {
	var b strings.Builder
	b.WriteString("INSERT INTO " + table + " (" + strings.Join(cols, ", ") + ") VALUES ")
	row := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", ") + ")"
	for i := range rows {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(row)
	}
	if conflict != "" {
		b.WriteString(" ON CONFLICT (" + conflict + ") DO UPDATE SET " + set)
	}
	return b.String()
}

// row is called after each row appended to args; it sends a full chunk.
func (u *upsert) row() error {
	if len(u.args) < chunkRows*u.cols {
		return nil
	}
	_, err := u.many.Exec(u.args...)
	u.clear()
	return err
}

// finish sends the rows left in args one at a time.
func (u *upsert) finish() error {
	defer u.clear()
	for i := 0; i < len(u.args); i += u.cols {
		if _, err := u.one.Exec(u.args[i : i+u.cols]...); err != nil {
			return err
		}
	}
	return nil
}

func (u *upsert) clear() {
	clear(u.args)
	u.args = u.args[:0]
}

func (u *upsert) close() {
	u.many.Close()
	u.one.Close()
}
