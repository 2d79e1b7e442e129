package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lightdht/lightdht/krpc"
	"github.com/lightdht/lightdht/observe"
)

var t0 = time.UnixMilli(1_700_000_000_000)

func at(ms int64) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func ms(off int64) int64 { return t0.UnixMilli() + off }

// hangGuard bounds the tests' waits on real time: it only stops a hung
// run, and a loaded machine stays well within it.
const hangGuard = time.Minute

func id(i int) krpc.ID {
	var x krpc.ID
	x[0], x[1], x[2], x[19] = 0xab, byte(i>>16), byte(i>>8), byte(i)
	return x
}

func ni(i int, addr string) krpc.NodeInfo {
	return krpc.NodeInfo{ID: id(i), Addr: netip.MustParseAddrPort(addr)}
}

func openT(t *testing.T, opts Options) (*DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "nodes.db")
	d, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, path
}

func flush(t *testing.T, d *DB) {
	t.Helper()
	if err := d.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func count(t *testing.T, q *sql.DB, query string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := q.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func versions(t *testing.T, q *sql.DB) []int {
	t.Helper()
	rows, err := q.Query("SELECT version FROM schema_migrations ORDER BY version")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var vs []int
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		vs = append(vs, v)
	}
	return vs
}

func wantVersions() []int {
	var vs []int
	for i := range SchemaVersion() {
		vs = append(vs, i+1)
	}
	return vs
}

func TestOpenFresh(t *testing.T) {
	if SchemaVersion() < 2 {
		t.Fatalf("SchemaVersion() = %d, want >= 2", SchemaVersion())
	}
	d, _ := openT(t, Options{})
	if got := versions(t, d.SQL()); !slices.Equal(got, wantVersions()) {
		t.Errorf("schema_migrations = %v, want %v", got, wantVersions())
	}
	var mode string
	var page int
	if err := d.SQL().QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal", mode, err)
	}
	if err := d.SQL().QueryRow("PRAGMA page_size").Scan(&page); err != nil || page != 16384 {
		t.Errorf("page_size = %d, %v; want 16384", page, err)
	}
	for _, v := range []string{"live_nodes", "client_versions", "ids_per_ip", "ips_per_id", "bep42_violators"} {
		count(t, d.SQL(), "SELECT count(*) FROM "+v)
	}
	// The read handle is read-only.
	if _, err := d.SQL().Exec("DELETE FROM nodes"); err == nil {
		t.Error("write through SQL() succeeded")
	}
}

// TestUpgradeFromV1 opens a file that has only migration 1 and data in it.
func TestUpgradeFromV1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v1.db")
	writeOldSchema(t, path, 1, `INSERT INTO nodes (id, ip, port, first_seen, last_seen, times_seen,
		first_source, replies, bep42_valid) VALUES ('`+id(1).String()+`', '1.2.3.4', 6881, 1, 2, 3, 'reply', 1, 1)`)

	d := openUpgraded(t, path)
	if n := count(t, d.SQL(), "SELECT count(*) FROM live_nodes WHERE id = ?", id(1).String()); n != 1 {
		t.Errorf("live_nodes has %d rows for the v1 node, want 1", n)
	}
}

func TestFutureSchemaRefused(t *testing.T) {
	d, path := openT(t, Options{})
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := sql.Open("sqlite3", dsn(path, ""))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec("INSERT INTO schema_migrations VALUES (?, 0)", SchemaVersion()+1); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	_, err = Open(path, Options{})
	var e *Error
	if !errors.Is(err, ErrSchemaTooNew) || !errors.As(err, &e) || e.Op != "migrate" || e.Path != path {
		t.Fatalf("Open of a future schema: %v, want *Error{Op: migrate} wrapping ErrSchemaTooNew", err)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(garbage, []byte(strings.Repeat("this is not SQLite\n", 500)), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Open(garbage, Options{})
	var e *Error
	if !errors.As(err, &e) || e.Op != "open" || e.Path != garbage || !strings.Contains(err.Error(), "file is not a database") {
		t.Errorf("Open(garbage) = %v, want *Error{Op: open} saying file is not a database", err)
	}

	missing := filepath.Join(dir, "no", "such", "dir", "x.db")
	_, err = Open(missing, Options{})
	if !errors.As(err, &e) || e.Op != "open" || e.Path != missing || !strings.Contains(err.Error(), "unable to open") {
		t.Errorf("Open(missing dir) = %v, want *Error{Op: open} saying unable to open", err)
	}
}

type nodeRow struct {
	FirstSeen, LastSeen, TimesSeen int64
	FirstSource                    string
	LastReply                      sql.NullInt64
	Replies, Timeouts, Sent, Recvd int64
	RTT                            sql.NullFloat64
	Version                        sql.NullString
	VersionSeen                    sql.NullInt64
	BEP42, ReadOnly                int64
}

func getNode(t *testing.T, q *sql.DB, id krpc.ID, ip string, port int) nodeRow {
	t.Helper()
	var r nodeRow
	err := q.QueryRow(`SELECT first_seen, last_seen, times_seen, first_source, last_reply, replies, timeouts,
		queries_sent, queries_received, last_rtt_ms, version, version_seen, bep42_valid, read_only
		FROM nodes WHERE id = ? AND ip = ? AND port = ?`, id.String(), ip, port).Scan(
		&r.FirstSeen, &r.LastSeen, &r.TimesSeen, &r.FirstSource, &r.LastReply, &r.Replies, &r.Timeouts,
		&r.Sent, &r.Recvd, &r.RTT, &r.Version, &r.VersionSeen, &r.BEP42, &r.ReadOnly)
	if err != nil {
		t.Fatalf("node %v %s:%d: %v", id, ip, port, err)
	}
	return r
}

func TestNodeUpsert(t *testing.T) {
	d, _ := openT(t, Options{Reports: true})
	n := ni(1, "198.51.100.1:6881")
	mapped := krpc.NodeInfo{ID: n.ID, Addr: netip.MustParseAddrPort("[::ffff:198.51.100.1]:6881")}
	r1, r2 := ni(100, "203.0.113.1:1000"), ni(101, "203.0.113.2:1000")
	obs := func(s observe.Sighting) { d.Observe(s) }

	// Batch 1.
	obs(observe.Sighting{Node: n, Time: at(100), Source: observe.SourceReported, Reporter: r1, SecureID: true})
	obs(observe.Sighting{Node: n, Time: at(200), Source: observe.SourceReply, RTT: 30 * time.Millisecond,
		Version: "UT\x01\x02", ReadOnly: true, SecureID: true})
	obs(observe.Sighting{Node: n, Time: at(300), Source: observe.SourceTimeout, SecureID: true})
	flush(t, d)
	r := getNode(t, d.SQL(), n.ID, "198.51.100.1", 6881)
	if r.TimesSeen != 3 || r.FirstSource != "reported" || r.Replies != 1 || r.Timeouts != 1 || r.Sent != 2 ||
		r.RTT.Float64 != 30 || r.Version.String != "UT0102" || r.ReadOnly != 1 || r.BEP42 != 1 {
		t.Fatalf("after batch 1: %+v", r)
	}

	// Batch 2: older reply and version do not replace newer ones; an
	// earlier query becomes first_source; the latest SecureID wins.
	obs(observe.Sighting{Node: n, Time: at(150), Source: observe.SourceReply, RTT: 99 * time.Millisecond,
		Version: "XX\x00\x01", SecureID: true})
	obs(observe.Sighting{Node: n, Time: at(50), Source: observe.SourceQuery, Version: "LT\x02\x00", SecureID: true})
	obs(observe.Sighting{Node: n, Time: at(400), Source: observe.SourceReported, Reporter: r1, SecureID: false})
	flush(t, d)

	// Batch 3: the latest reply within the batch wins, whatever the
	// arrival order; an IPv4-mapped address is the same node.
	obs(observe.Sighting{Node: n, Time: at(500), Source: observe.SourceReply, RTT: 10 * time.Millisecond, SecureID: true})
	obs(observe.Sighting{Node: n, Time: at(600), Source: observe.SourceReply, RTT: 20 * time.Millisecond,
		Version: "AB\x00\x02", SecureID: false})
	obs(observe.Sighting{Node: n, Time: at(550), Source: observe.SourceReply, RTT: 40 * time.Millisecond,
		Version: "CD\x00\x03", SecureID: true})
	obs(observe.Sighting{Node: mapped, Time: at(60), Source: observe.SourceReported, Reporter: r2, SecureID: true})
	flush(t, d)

	r = getNode(t, d.SQL(), n.ID, "198.51.100.1", 6881)
	want := nodeRow{
		FirstSeen: ms(50), LastSeen: ms(600), TimesSeen: 10, FirstSource: "query",
		LastReply: sql.NullInt64{Int64: ms(600), Valid: true},
		Replies:   5, Timeouts: 1, Sent: 6, Recvd: 1,
		RTT:         sql.NullFloat64{Float64: 20, Valid: true},
		Version:     sql.NullString{String: "AB0002", Valid: true},
		VersionSeen: sql.NullInt64{Int64: ms(600), Valid: true},
		BEP42:       0, ReadOnly: 1,
	}
	if r != want {
		t.Errorf("node row\n got %+v\nwant %+v", r, want)
	}
	if n := count(t, d.SQL(), "SELECT count(*) FROM nodes"); n != 1 {
		t.Errorf("%d node rows, want 1", n)
	}

	var first, last, cnt int64
	err := d.SQL().QueryRow(`SELECT first_seen, last_seen, count FROM reports WHERE reporter_id = ? AND reporter_ip = ?
		AND reporter_port = 1000 AND reported_id = ? AND reported_ip = '198.51.100.1' AND reported_port = 6881`,
		r1.ID.String(), "203.0.113.1", n.ID.String()).Scan(&first, &last, &cnt)
	if err != nil || first != ms(100) || last != ms(400) || cnt != 2 {
		t.Errorf("report r1->n: %d %d %d %v; want %d %d 2", first, last, cnt, err, ms(100), ms(400))
	}
	if n := count(t, d.SQL(), "SELECT count(*) FROM reports"); n != 2 {
		t.Errorf("%d report rows, want 2", n)
	}

	// A never-replying node has NULL last_reply, last_rtt_ms and version.
	d.Observe(observe.Sighting{Node: ni(2, "198.51.100.9:1"), Time: at(1), Source: observe.SourceReported, Reporter: r1})
	flush(t, d)
	if r := getNode(t, d.SQL(), id(2), "198.51.100.9", 1); r.LastReply.Valid || r.RTT.Valid || r.Version.Valid || r.Sent != 0 {
		t.Errorf("reported-only node: %+v", r)
	}
	st := d.Stats()
	if st.Enqueued != 11 || st.Written != 11 || st.Batches != 4 || st.Shed != 0 || st.Errors != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestReportsOffByDefault(t *testing.T) {
	d, _ := openT(t, Options{})
	d.Observe(observe.Sighting{Node: ni(1, "198.51.100.1:1"), Time: at(0), Source: observe.SourceReported,
		Reporter: ni(2, "198.51.100.2:1")})
	flush(t, d)
	if n := count(t, d.SQL(), "SELECT count(*) FROM reports"); n != 0 {
		t.Errorf("%d reports with Options.Reports off", n)
	}
	if n := count(t, d.SQL(), "SELECT count(*) FROM nodes"); n != 1 {
		t.Errorf("%d nodes, want 1", n)
	}
}

func TestInfohashesPeersSamples(t *testing.T) {
	d, _ := openT(t, Options{})
	ih1, ih2 := krpc.ID{1}, krpc.ID{2}
	a, b, c := ni(1, "198.51.100.1:1"), ni(2, "198.51.100.2:2"), ni(3, "198.51.100.3:3")
	p1 := netip.MustParseAddrPort("[::ffff:192.0.2.1]:51413")
	p2 := netip.MustParseAddrPort("[2001:db8::1]:6881")
	q := func(n krpc.NodeInfo, ms int64, method string, peer netip.AddrPort) {
		d.Observe(observe.Sighting{Node: n, Time: at(ms), Source: observe.SourceQuery, Method: method,
			Infohash: ih1, Peer: peer})
	}
	q(a, 0, krpc.MethodGetPeers, netip.AddrPort{})
	q(b, 10, krpc.MethodGetPeers, netip.AddrPort{})
	q(a, 20, krpc.MethodAnnouncePeer, p1)
	d.RecordSample(c, at(5), 100, 60, []krpc.ID{ih1, ih2})
	d.RecordPeer(ih2, p2, "get_peers", at(40))
	flush(t, d)
	q(b, 30, krpc.MethodAnnouncePeer, p1)
	d.RecordPeer(ih2, p2, "get_peers", at(35))
	d.RecordSample(c, at(70), 100, 60, []krpc.ID{ih2})
	flush(t, d)

	type ihRow struct{ first, last, sample, gp, ann int64 }
	get := func(ih krpc.ID) ihRow {
		var r ihRow
		if err := d.SQL().QueryRow(`SELECT first_seen, last_seen, via_sample, via_get_peers, via_announce
			FROM infohashes WHERE infohash = ?`, ih.String()).Scan(&r.first, &r.last, &r.sample, &r.gp, &r.ann); err != nil {
			t.Fatal(err)
		}
		return r
	}
	if got, want := get(ih1), (ihRow{ms(0), ms(30), 1, 2, 2}); got != want {
		t.Errorf("ih1 %+v, want %+v", got, want)
	}
	if got, want := get(ih2), (ihRow{ms(5), ms(70), 2, 0, 0}); got != want {
		t.Errorf("ih2 %+v, want %+v", got, want)
	}

	type peerRow struct {
		first, last, count int64
		source             string
	}
	getPeer := func(ih krpc.ID, ip string, port int) peerRow {
		var r peerRow
		if err := d.SQL().QueryRow(`SELECT first_seen, last_seen, count, source FROM peers
			WHERE infohash = ? AND ip = ? AND port = ?`, ih.String(), ip, port).Scan(&r.first, &r.last, &r.count, &r.source); err != nil {
			t.Fatalf("peer %s:%d: %v", ip, port, err)
		}
		return r
	}
	if got, want := getPeer(ih1, "192.0.2.1", 51413), (peerRow{ms(20), ms(30), 2, "announce"}); got != want {
		t.Errorf("peer p1 %+v, want %+v", got, want)
	}
	if got, want := getPeer(ih2, "2001:db8::1", 6881), (peerRow{ms(35), ms(40), 2, "get_peers"}); got != want {
		t.Errorf("peer p2 %+v, want %+v", got, want)
	}
	if n := count(t, d.SQL(), "SELECT count(*) FROM peers"); n != 2 {
		t.Errorf("%d peers, want 2", n)
	}
	if n := count(t, d.SQL(), `SELECT count(*) FROM samples WHERE node_id = ? AND ip = '198.51.100.3' AND port = 3
		AND num = 100 AND interval_s = 60`, c.ID.String()); n != 2 {
		t.Errorf("%d sample rows for c, want 2", n)
	}
	if n := count(t, d.SQL(), "SELECT sum(samples_count) FROM samples"); n != 3 {
		t.Errorf("samples_count sum %d, want 3", n)
	}
}

func TestViews(t *testing.T) {
	d, _ := openT(t, Options{})
	obs := func(n krpc.NodeInfo, src observe.Source, secure bool, version string) {
		d.Observe(observe.Sighting{Node: n, Time: at(0), Source: src, SecureID: secure, Version: version})
	}
	// Sybil IP: three IDs on 203.0.113.7.
	obs(ni(1, "203.0.113.7:1001"), observe.SourceReply, true, "UT\x01\x02")
	obs(ni(2, "203.0.113.7:1002"), observe.SourceReply, true, "UT\x01\x02")
	obs(ni(3, "203.0.113.7:1003"), observe.SourceReported, true, "")
	// One ID on two IPs.
	obs(ni(4, "198.51.100.1:1"), observe.SourceQuery, true, "LT\x02\x00")
	obs(ni(4, "198.51.100.2:1"), observe.SourceReported, true, "")
	// A BEP 42 violator, and a private and a loopback node with
	// non-conforming IDs that are exempt.
	obs(ni(5, "192.0.2.55:1"), observe.SourceReply, false, "")
	obs(ni(6, "10.1.2.3:1"), observe.SourceReply, false, "")
	obs(ni(7, "[fd00::1]:1"), observe.SourceReported, false, "")
	obs(ni(8, "127.0.0.1:1"), observe.SourceTimeout, false, "")
	obs(ni(9, "[2001:db8::9]:1"), observe.SourceReported, false, "")
	flush(t, d)

	strs := func(query string) []string {
		t.Helper()
		rows, err := d.SQL().Query(query)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			out = append(out, strings.TrimSuffix(strings.TrimPrefix(fmt.Sprint(vals), "["), "]"))
		}
		slices.Sort(out)
		return out
	}
	check := func(query string, want ...string) {
		t.Helper()
		if got := strs(query); !slices.Equal(got, want) {
			t.Errorf("%s\n got %q\nwant %q", query, got, want)
		}
	}
	check("SELECT ip, ids FROM ids_per_ip", "203.0.113.7 3")
	check("SELECT id, ips FROM ips_per_id", id(4).String()+" 2")
	check("SELECT id, ip FROM bep42_violators", id(5).String()+" 192.0.2.55", id(9).String()+" 2001:db8::9")
	check("SELECT id, ip FROM live_nodes", id(1).String()+" 203.0.113.7", id(2).String()+" 203.0.113.7",
		id(5).String()+" 192.0.2.55", id(6).String()+" 10.1.2.3")
	check("SELECT version, nodes, replied FROM client_versions", "LT0200 1 0", "UT0102 2 2")
}

func TestRuns(t *testing.T) {
	d, _ := openT(t, Options{})
	d.Observe(observe.Sighting{Node: ni(1, "198.51.100.1:1"), Time: at(0), Source: observe.SourceReply})
	run, err := d.StartRun(RunInfo{Started: at(0), Config: map[string]int{"k": 8}, ProgramVersion: "v0.1",
		Bootstrap: []string{"router.example:6881"}})
	if err != nil {
		t.Fatal(err)
	}
	// StartRun commits what was queued before it.
	if n := count(t, d.SQL(), "SELECT count(*) FROM nodes"); n != 1 {
		t.Errorf("nodes after StartRun: %d, want 1", n)
	}
	if err := d.EndRun(run, RunCounts{Ended: at(1000), NodesFound: 10, NodesReplied: 5, Infohashes: 3,
		QueriesSent: 20, SightingsShed: 1, SizeEstimate: 2.5e7}); err != nil {
		t.Fatal(err)
	}
	var started, ended, found, replied, ihs, sent, shed int64
	var cfg, pv, boot string
	var size float64
	err = d.SQL().QueryRow(`SELECT started, ended, config, program_version, bootstrap, nodes_found, nodes_replied,
		infohashes, queries_sent, sightings_shed, size_estimate FROM crawl_runs WHERE id = ?`, run).Scan(
		&started, &ended, &cfg, &pv, &boot, &found, &replied, &ihs, &sent, &shed, &size)
	if err != nil {
		t.Fatal(err)
	}
	if started != ms(0) || ended != ms(1000) || cfg != `{"k":8}` || pv != "v0.1" || boot != `["router.example:6881"]` ||
		found != 10 || replied != 5 || ihs != 3 || sent != 20 || shed != 1 || size != 2.5e7 {
		t.Errorf("crawl run row: %d %d %s %s %s %d %d %d %d %d %g", started, ended, cfg, pv, boot, found, replied, ihs, sent, shed, size)
	}
	if err := d.EndRun(run+100, RunCounts{}); err == nil {
		t.Error("EndRun of an unknown run succeeded")
	}
}

func TestCloseIdempotentAndAfterClose(t *testing.T) {
	d, path := openT(t, Options{})
	before := time.Now()
	d.Observe(observe.Sighting{Node: ni(1, "198.51.100.1:1"), Source: observe.SourceReply}) // zero Time: now
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	if err := d.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	d.Observe(observe.Sighting{Node: ni(2, "198.51.100.1:2")})
	d.RecordPeer(krpc.ID{1}, netip.MustParseAddrPort("192.0.2.1:1"), "get_peers", time.Time{})
	if err := d.Flush(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Flush after Close: %v, want ErrClosed", err)
	}
	if _, err := d.StartRun(RunInfo{}); !errors.Is(err, ErrClosed) {
		t.Errorf("StartRun after Close: %v, want ErrClosed", err)
	}
	if st := d.Stats(); st.Shed != 2 || st.Written != 1 || st.Enqueued != 1 {
		t.Errorf("stats after Close: %+v", st)
	}
	r, err := OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var seen int64
	if err := r.QueryRow("SELECT last_seen FROM nodes").Scan(&seen); err != nil || seen < before.UnixMilli() || seen > after.UnixMilli() {
		t.Errorf("zero Time stored as %d (%v), want the time of the Observe call, %d to %d", seen, err, before.UnixMilli(), after.UnixMilli())
	}
}

// TestBackPressureBlocks stalls the writer and checks that Observe waits
// for room instead of dropping. In a synctest bubble, synctest.Wait tells
// when the producer is blocked for good, however long that takes.
func TestBackPressureBlocks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		entered := make(chan struct{}, 1)
		release := make(chan struct{})
		opts := Options{QueueSize: 2, BatchSize: 1, FlushInterval: time.Hour}
		opts.flushHook = func() {
			select {
			case entered <- struct{}{}:
			default:
			}
			<-release
		}
		d, _ := openT(t, opts)
		resume := sync.OnceFunc(func() { close(release) })
		t.Cleanup(resume) // before Close, which waits for the writer
		const n = 50
		done := make(chan struct{})
		go func() {
			for i := range n {
				d.Observe(observe.Sighting{Node: ni(i, "198.51.100.1:1"), Time: at(int64(i)), Source: observe.SourceReply})
			}
			close(done)
		}()
		<-entered
		synctest.Wait() // every other goroutine is blocked
		st := d.Stats()
		select {
		case <-done:
			t.Fatalf("with the writer stalled the producer finished; stats %+v", st)
		default:
		}
		if st.Enqueued > 4 || st.Shed != 0 {
			t.Fatalf("with the writer stalled: stats %+v; want the producer blocked", st)
		}
		resume()
		<-done // a producer blocked for good ends the bubble in a deadlock
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		r, _ := OpenReadOnly(d.Path())
		defer r.Close()
		if got := count(t, r, "SELECT count(*) FROM nodes"); got != n {
			t.Errorf("%d nodes, want %d", got, n)
		}
		if st := d.Stats(); st.Shed != 0 || st.Written != n || st.Batches != n {
			t.Errorf("stats %+v", st)
		}
	})
}

// TestShedCountsExactly: with Shed, every sighting is either written or
// counted as shed. The writer is slow, and its first commit waits until
// more sightings have been offered than the queue and its two batches of
// one hold, so that some are shed however the goroutines are scheduled.
func TestShedCountsExactly(t *testing.T) {
	overrun := make(chan struct{})
	opts := Options{QueueSize: 4, BatchSize: 1, Shed: true}
	opts.flushHook = func() {
		<-overrun
		time.Sleep(time.Millisecond)
	}
	d, _ := openT(t, opts)
	const n = 500
	for i := range n {
		d.Observe(observe.Sighting{Node: ni(i, "198.51.100.1:1"), Time: at(int64(i)), Source: observe.SourceReported})
		if i == opts.QueueSize+2 {
			close(overrun)
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	r, _ := OpenReadOnly(d.Path())
	defer r.Close()
	rows := count(t, r, "SELECT count(*) FROM nodes")
	st := d.Stats()
	if st.Shed == 0 || uint64(rows)+st.Shed != n || st.Written != uint64(rows) || st.Enqueued != uint64(rows) {
		t.Errorf("%d rows, stats %+v: want Shed > 0 and rows + Shed == %d", rows, st, n)
	}
}

// TestConcurrentReader reads the file from a separate read-only pool while
// the writer commits many small batches; neither side may see SQLITE_BUSY.
func TestConcurrentReader(t *testing.T) {
	// The writer's tenth commit waits until a read has completed after it
	// began (or hangGuard has passed), so reads and writes overlap
	// however the goroutines are scheduled.
	const overlapAt = 10
	var reads, commits atomic.Int64
	overlapped := make(chan bool, 1)
	opts := Options{BatchSize: 500, FlushInterval: 5 * time.Millisecond}
	opts.flushHook = func() {
		if commits.Add(1) != overlapAt {
			return
		}
		from, hung := reads.Load(), time.Now().Add(hangGuard)
		for reads.Load() == from && time.Now().Before(hung) {
			time.Sleep(time.Millisecond)
		}
		overlapped <- reads.Load() > from
	}
	d, path := openT(t, opts)
	r, err := OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	r.SetMaxOpenConns(2)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var readErr error
	for range 2 {
		wg.Go(func() {
			last := int64(0)
			for {
				select {
				case <-stop:
					return
				default:
				}
				var n int64
				if err := r.QueryRow("SELECT count(*) FROM nodes").Scan(&n); err != nil {
					readErr = err
					return
				}
				if n < last {
					readErr = fmt.Errorf("count went from %d to %d", last, n)
					return
				}
				last = n
				reads.Add(1)
			}
		})
	}
	const n = 20000
	for i := range n {
		d.Observe(observe.Sighting{Node: ni(i, "198.51.100.1:1"), Time: at(int64(i)), Source: observe.SourceReported})
	}
	flush(t, d)
	close(stop)
	wg.Wait()
	if readErr != nil {
		t.Fatalf("reader: %v", readErr)
	}
	st := d.Stats()
	if st.Errors != 0 || st.Written != n {
		t.Fatalf("writer stats %+v", st)
	}
	if got := count(t, r, "SELECT count(*) FROM nodes"); got != n {
		t.Errorf("%d nodes, want %d", got, n)
	}
	t.Logf("%d reads during %d batches", reads.Load(), st.Batches)
	select {
	case ok := <-overlapped:
		if !ok {
			t.Errorf("test did not overlap reads and writes: no read completed in %v while commit %d waited", hangGuard, overlapAt)
		}
	default:
		t.Errorf("test did not overlap reads and writes: %d batches, want at least %d", st.Batches, overlapAt)
	}
}

func TestPrintableVersion(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"UT\x01\x02", "UT0102"},
		{"LD\x00\x01", "LD0001"},
		{"lt\x0d\x60", "lt0d60"},
		{"abc", "abc"},
		{"\x00\x01\x02\x03", "0x00010203"},
		{"UT\x01", "0x555401"},
	} {
		if got := printableVersion(c.in); got != c.want {
			t.Errorf("printableVersion(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// TestItems: BEP 44 gets and accepted puts become one row per target, with
// counts, the highest seq and the latest putter, across batches.
func TestItems(t *testing.T) {
	d, _ := openT(t, Options{})
	target := krpc.ID{9}
	a, b := ni(1, "198.51.100.1:1"), ni(2, "198.51.100.2:2")
	obs := func(n krpc.NodeInfo, ms int64, method string, seq int64) {
		d.Observe(observe.Sighting{Node: n, Time: at(ms), Source: observe.SourceQuery, Method: method,
			Item: target, ItemMutable: method == krpc.MethodPut, ItemSeq: seq})
	}
	obs(a, 0, krpc.MethodGet, 0)
	obs(a, 10, krpc.MethodPut, 3)
	obs(b, 20, krpc.MethodPut, 5)
	flush(t, d)
	obs(a, 15, krpc.MethodPut, 4) // an older put arriving later: seq and putter stay
	obs(b, 30, krpc.MethodGet, 0)
	flush(t, d)

	var mutable, seq, first, last, puts, gets, lastPut, port int64
	var putterID, putterIP string
	if err := d.SQL().QueryRow(`SELECT mutable, seq, first_seen, last_seen, puts, gets, last_put,
		last_putter_id, last_putter_ip, last_putter_port FROM items WHERE target = ?`, target.String()).
		Scan(&mutable, &seq, &first, &last, &puts, &gets, &lastPut, &putterID, &putterIP, &port); err != nil {
		t.Fatal(err)
	}
	if mutable != 1 || seq != 5 || first != ms(0) || last != ms(30) || puts != 3 || gets != 2 || lastPut != ms(20) ||
		putterID != b.ID.String() || putterIP != "198.51.100.2" || port != 2 {
		t.Errorf("items row: mutable %d seq %d first %d last %d puts %d gets %d last_put %d putter %s %s:%d",
			mutable, seq, first, last, puts, gets, lastPut, putterID, putterIP, port)
	}
}
