package db

import (
	"context"
	"database/sql"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lightdht/lightdht/krpc"
	"github.com/lightdht/lightdht/observe"
)

// replied, timedOut and skipped are visits of one kind.
func replied(n krpc.NodeInfo, t time.Time) observe.Visit {
	return observe.Visit{Node: n, Time: t, Outcome: observe.OutcomeReplied, Queries: 1, RTT: 1500 * time.Microsecond, Version: "LT\x01\x02"}
}

func timedOut(n krpc.NodeInfo, t time.Time) observe.Visit {
	return observe.Visit{Node: n, Time: t, Outcome: observe.OutcomeTimeout, Queries: 2}
}

func skipped(n krpc.NodeInfo, t time.Time, why observe.Skip) observe.Visit {
	return observe.Visit{Node: n, Time: t, Outcome: observe.OutcomeNotQueried, Skipped: why}
}

// run records one run of the given visits, each after a sighting of its
// node as a crawl would make, and returns the run's id.
func run(t *testing.T, d *DB, start time.Time, visits ...observe.Visit) int64 {
	t.Helper()
	id, err := d.StartRun(RunInfo{Started: start, Vantage: "127.0.0.1:6881", Host: "test"})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range visits {
		src := observe.SourceReply
		switch v.Outcome {
		case observe.OutcomeTimeout:
			src = observe.SourceTimeout
		case observe.OutcomeNotQueried:
			src = observe.SourceReported
		}
		d.Observe(observe.Sighting{Node: v.Node, Time: v.Time, Source: src})
		d.RecordVisit(v)
	}
	if err := d.EndRun(id, RunCounts{Ended: start.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	return id
}

// strs runs a query whose rows are one text each and returns them.
func strs(t *testing.T, q *sql.DB, query string, args ...any) []string {
	t.Helper()
	rows, err := q.Query(query, args...)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestHistoryScripted records four runs of a scripted history and checks
// every visit, session and class against it:
//   - a: answers in runs 1 and 2, times out in 3, answers in 4 (two
//     sessions, the first closed by the timeout);
//   - b: answers in run 1; in run 2 its address answers with another ID,
//     b2 (b's session closed as id_changed, b2's visit flagged);
//   - c: answers in run 1; in run 2 its ID answers from another port, c2
//     (c's session closed as addr_changed, c2's visit flagged);
//   - d: listed in every run, never queried (a bogon), never answering;
//   - e: answers in run 3 only (seen once).
func TestHistoryScripted(t *testing.T) {
	d, _ := openT(t, Options{})
	a := ni(1, "1.0.0.1:6881")
	b := ni(2, "1.0.0.2:6881")
	b2 := ni(22, "1.0.0.2:6881") // b's address, another ID
	c := ni(3, "1.0.0.3:6881")
	c2 := ni(3, "1.0.0.3:7000") // c's ID, another port
	dn := ni(4, "10.0.0.4:6881")
	e := ni(5, "1.0.0.5:6881")
	hour := func(h int) time.Time { return at(int64(h) * 3600_000) }

	r1 := run(t, d, hour(0), replied(a, hour(0)), replied(b, hour(0)), replied(c, hour(0)), skipped(dn, hour(0), observe.SkipBogon))
	r2 := run(t, d, hour(1), replied(a, hour(1)), replied(b2, hour(1)), replied(c2, hour(1)), skipped(dn, hour(1), observe.SkipBogon))
	r3 := run(t, d, hour(2), timedOut(a, hour(2)), replied(e, hour(2)), skipped(dn, hour(2), observe.SkipBogon))
	r4 := run(t, d, hour(3), replied(a, hour(3)), skipped(dn, hour(3), observe.SkipBogon))
	q := d.SQL()

	// Every visit, in order, with its flags.
	got := strs(t, q, `SELECT printf('%d %s:%d %s %s %d%d', crawl, ip, port, outcome, coalesce(skipped, '-'), id_changed, addr_changed)
		FROM visit_details ORDER BY crawl, time, ip, port`)
	want := []string{
		fmt.Sprintf("%d 1.0.0.1:6881 replied - 00", r1),
		fmt.Sprintf("%d 1.0.0.2:6881 replied - 00", r1),
		fmt.Sprintf("%d 1.0.0.3:6881 replied - 00", r1),
		fmt.Sprintf("%d 10.0.0.4:6881 not_queried bogon 00", r1),
		fmt.Sprintf("%d 1.0.0.1:6881 replied - 00", r2),
		fmt.Sprintf("%d 1.0.0.2:6881 replied - 10", r2),
		fmt.Sprintf("%d 1.0.0.3:7000 replied - 01", r2),
		fmt.Sprintf("%d 10.0.0.4:6881 not_queried bogon 00", r2),
		fmt.Sprintf("%d 1.0.0.1:6881 timeout - 00", r3),
		fmt.Sprintf("%d 1.0.0.5:6881 replied - 00", r3),
		fmt.Sprintf("%d 10.0.0.4:6881 not_queried bogon 00", r3),
		fmt.Sprintf("%d 1.0.0.1:6881 replied - 00", r4),
		fmt.Sprintf("%d 10.0.0.4:6881 not_queried bogon 00", r4),
	}
	if !slices.Equal(got, want) {
		t.Errorf("visits:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if v := strs(t, q, "SELECT printf('%s %.1f', version, rtt_ms) FROM visit_details WHERE crawl = ? AND port = 6881 AND ip = '1.0.0.1'", r1); !slices.Equal(v, []string{"LT0102 1.5"}) {
		t.Errorf("version and RTT of a's first visit = %v, want [LT0102 1.5]", v)
	}

	// Sessions: start, last answered, visits, failed, state, reason.
	got = strs(t, q, `SELECT printf('%s:%d %d %d %d %d %s %s', ip, port, (started - ?1) / 3600000, (last_answered - ?1) / 3600000,
			visits, failed, state, coalesce(close_reason, '-'))
		FROM session_lengths ORDER BY session`, t0.UnixMilli())
	want = []string{
		"1.0.0.1:6881 0 1 3 1 closed timeout",
		"1.0.0.2:6881 0 0 1 0 closed id_changed",
		"1.0.0.3:6881 0 0 1 0 closed addr_changed",
		"1.0.0.2:6881 1 1 1 0 open -",
		"1.0.0.3:7000 1 1 1 0 open -",
		"1.0.0.5:6881 2 2 1 0 open -",
		"1.0.0.1:6881 3 3 1 0 open -",
	}
	if !slices.Equal(got, want) {
		t.Errorf("sessions:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// Classes per crawl.
	got = strs(t, q, `SELECT printf('%d %s:%d %s %d', c.crawl, n.ip, n.port, c.class, c.seen_once)
		FROM crawl_node_classes c JOIN nodes n ON n.ref = c.node ORDER BY c.crawl, n.ip, n.port, n.id`)
	want = []string{
		fmt.Sprintf("%d 1.0.0.1:6881 entered 0", r1),
		fmt.Sprintf("%d 1.0.0.2:6881 entered 1", r1),
		fmt.Sprintf("%d 1.0.0.3:6881 entered 1", r1),
		fmt.Sprintf("%d 10.0.0.4:6881 never_answered 0", r1),
		fmt.Sprintf("%d 1.0.0.1:6881 stayed 0", r2),
		fmt.Sprintf("%d 1.0.0.2:6881 left 0", r2),    // b
		fmt.Sprintf("%d 1.0.0.2:6881 entered 1", r2), // b2
		fmt.Sprintf("%d 1.0.0.3:6881 left 0", r2),
		fmt.Sprintf("%d 1.0.0.3:7000 entered 1", r2),
		fmt.Sprintf("%d 10.0.0.4:6881 never_answered 0", r2),
		fmt.Sprintf("%d 1.0.0.1:6881 left 0", r3),
		fmt.Sprintf("%d 1.0.0.2:6881 left 0", r3),
		fmt.Sprintf("%d 1.0.0.3:7000 left 0", r3),
		fmt.Sprintf("%d 1.0.0.5:6881 entered 1", r3),
		fmt.Sprintf("%d 10.0.0.4:6881 never_answered 0", r3),
		fmt.Sprintf("%d 1.0.0.1:6881 entered 0", r4),
		fmt.Sprintf("%d 1.0.0.5:6881 left 0", r4),
		fmt.Sprintf("%d 10.0.0.4:6881 never_answered 0", r4),
	}
	// b2 sorts after b by ID within the same address.
	if !slices.Equal(got, want) {
		t.Errorf("classes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	got = strs(t, q, `SELECT printf('%d %d %d %d %d %d %d', crawl, answering, stayed, entered, left, seen_once, never_answered)
		FROM crawl_churn ORDER BY crawl`)
	want = []string{
		fmt.Sprintf("%d 3 0 3 0 2 1", r1),
		fmt.Sprintf("%d 3 1 2 2 2 1", r2),
		fmt.Sprintf("%d 1 0 1 3 1 1", r3),
		fmt.Sprintf("%d 1 0 1 1 0 1", r4),
	}
	if !slices.Equal(got, want) {
		t.Errorf("crawl_churn:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// The crawl record: vantage, visits flag and totals by outcome.
	got = strs(t, q, `SELECT printf('%d %s %s %s %d %d %d %d %d', id, kind, vantage, host, visits,
		visits_replied, visits_error, visits_timeout, visits_not_queried) FROM crawl_runs ORDER BY id`)
	want = []string{
		fmt.Sprintf("%d crawl 127.0.0.1:6881 test 1 3 0 0 1", r1),
		fmt.Sprintf("%d crawl 127.0.0.1:6881 test 1 3 0 0 1", r2),
		fmt.Sprintf("%d crawl 127.0.0.1:6881 test 1 1 0 1 1", r3),
		fmt.Sprintf("%d crawl 127.0.0.1:6881 test 1 1 0 0 1", r4),
	}
	if !slices.Equal(got, want) {
		t.Errorf("crawl_runs:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := strs(t, q, "SELECT printf('%d %s %d', crawl, version, nodes) FROM crawl_clients ORDER BY crawl"); len(got) != 4 || got[0] != fmt.Sprintf("%d LT0102 3", r1) {
		t.Errorf("crawl_clients = %v", got)
	}
}

// TestSessionFailuresTolerated: with SessionFailures 2, one timed-out
// visit between two answered ones leaves the session open (and counted
// as failed); two in a row close it.
func TestSessionFailuresTolerated(t *testing.T) {
	d, _ := openT(t, Options{SessionFailures: 2})
	a := ni(1, "1.0.0.1:6881")
	for _, v := range []observe.Visit{
		replied(a, at(0)), timedOut(a, at(1000)), replied(a, at(2000)), timedOut(a, at(3000)), timedOut(a, at(4000)),
	} {
		d.RecordVisit(v)
	}
	flush(t, d)
	got := strs(t, d.SQL(), `SELECT printf('%d %d %d %d %s %s %d', started - ?1, last_answered - ?1, visits, failed,
		state, close_reason, failed_since - ?1) FROM sessions`, t0.UnixMilli())
	if want := []string{"0 2000 5 3 closed timeout 3000"}; !slices.Equal(got, want) {
		t.Errorf("sessions = %v, want %v", got, want)
	}
	// Outside a run, visits have no crawl.
	if n := count(t, d.SQL(), "SELECT count(*) FROM visits WHERE crawl IS NULL"); n != 5 {
		t.Errorf("%d visits without a crawl, want 5", n)
	}
}

// TestVisitsInOneBatch: a node visited several times within one batch
// (a revisit run) gets its visits taken in time order, queued out of
// order: one session of three visits, then a closed one.
func TestVisitsInOneBatch(t *testing.T) {
	d, _ := openT(t, Options{FlushInterval: time.Hour})
	a := ni(1, "1.0.0.1:6881")
	for _, v := range []observe.Visit{replied(a, at(2000)), replied(a, at(0)), replied(a, at(1000)), timedOut(a, at(3000))} {
		d.RecordVisit(v)
	}
	flush(t, d)
	got := strs(t, d.SQL(), `SELECT printf('%d %d %d %s', started - ?1, last_answered - ?1, visits, state) FROM sessions`, t0.UnixMilli())
	if want := []string{"0 2000 4 closed"}; !slices.Equal(got, want) {
		t.Errorf("sessions = %v, want %v", got, want)
	}
	if n := count(t, d.SQL(), "SELECT count(*) FROM visits"); n != 4 {
		t.Errorf("%d visits, want 4", n)
	}
}

// TestVisitWithoutSighting: a visit whose node has no row yet (its
// sightings shed) gets a bare node row rather than being lost.
func TestVisitWithoutSighting(t *testing.T) {
	d, _ := openT(t, Options{})
	d.RecordVisit(replied(ni(7, "1.0.0.7:6881"), at(5)))
	d.RecordVisit(observe.Visit{Node: krpc.NodeInfo{Addr: netip.MustParseAddrPort("1.0.0.8:6881")}, Outcome: observe.OutcomeReplied})
	flush(t, d)
	got := strs(t, d.SQL(), "SELECT printf('%s %d %s', ip, times_seen, first_source) FROM nodes")
	if want := []string{"1.0.0.7 0 reply"}; !slices.Equal(got, want) {
		t.Errorf("nodes = %v, want %v (a zero ID is no visit)", got, want)
	}
	if n := count(t, d.SQL(), "SELECT count(*) FROM visits v JOIN nodes n ON n.ref = v.node"); n != 1 {
		t.Errorf("%d visits joined to their node, want 1", n)
	}
}

// TestNeighbours: with Neighbours on and Reports off, each run keeps who
// listed whom, once per pair, and nothing is kept outside a run.
func TestNeighbours(t *testing.T) {
	d, _ := openT(t, Options{Neighbours: true})
	r, x, y := ni(1, "1.0.0.1:6881"), ni(2, "1.0.0.2:6881"), ni(3, "1.0.0.3:6881")
	listed := func(n krpc.NodeInfo, ms int64) {
		d.Observe(observe.Sighting{Node: n, Time: at(ms), Source: observe.SourceReported, Reporter: r})
	}
	listed(x, 0) // outside a run
	for i := range 2 {
		id, err := d.StartRun(RunInfo{Started: at(int64(i) * 1000)})
		if err != nil {
			t.Fatal(err)
		}
		d.Observe(observe.Sighting{Node: r, Time: at(int64(i) * 1000), Source: observe.SourceReply})
		listed(x, int64(i)*1000+1)
		listed(x, int64(i)*1000+2)
		if i == 1 {
			listed(y, int64(i)*1000+3)
		}
		if err := d.EndRun(id, RunCounts{}); err != nil {
			t.Fatal(err)
		}
	}
	got := strs(t, d.SQL(), `SELECT printf('%d %s %s', b.crawl, n.ip, m.ip) FROM neighbours b
		JOIN nodes n ON n.ref = b.node JOIN nodes m ON m.ref = b.neighbour ORDER BY b.crawl, m.ip`)
	if want := []string{"1 1.0.0.1 1.0.0.2", "2 1.0.0.1 1.0.0.2", "2 1.0.0.1 1.0.0.3"}; !slices.Equal(got, want) {
		t.Errorf("neighbours = %v, want %v", got, want)
	}
	if n := count(t, d.SQL(), "SELECT count(*) FROM reports"); n != 0 {
		t.Errorf("%d reports rows with Reports off", n)
	}
	if n := count(t, d.SQL(), "SELECT count(*) FROM crawl_runs WHERE neighbours = 1"); n != 2 {
		t.Errorf("%d runs marked as recording neighbours, want 2", n)
	}
}

// TestUpgradeFromV3 opens a file written by schema version 3 (the last
// without history), with nodes and a crawl run in it: the data survive,
// each node gets a ref, and the old run says it has no visits.
func TestUpgradeFromV3(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v3.db")
	writeOldSchema(t, path, 3,
		`INSERT INTO nodes (id, ip, port, first_seen, last_seen, times_seen, first_source, replies, bep42_valid, version)
			VALUES ('`+id(2).String()+`', '1.2.3.5', 6881, 20, 30, 3, 'reply', 1, 1, 'LT0102')`,
		`INSERT INTO nodes (id, ip, port, first_seen, last_seen, times_seen, first_source, replies, bep42_valid)
			VALUES ('`+id(1).String()+`', '1.2.3.4', 6881, 10, 40, 5, 'reported', 0, 0)`,
		`INSERT INTO crawl_runs (started, ended, nodes_found, nodes_replied) VALUES (5, 50, 2, 1)`,
		`INSERT INTO reports (reporter_id, reporter_ip, reporter_port, reported_id, reported_ip, reported_port, first_seen, last_seen, count)
			VALUES ('`+id(2).String()+`', '1.2.3.5', 6881, '`+id(1).String()+`', '1.2.3.4', 6881, 20, 20, 1)`,
	)

	d := openUpgraded(t, path)
	q := d.SQL()
	// Refs in first-seen order; every column kept.
	got := strs(t, q, "SELECT printf('%d %s %d %d %d %s %s', ref, ip, first_seen, last_seen, times_seen, first_source, coalesce(version, '-')) FROM nodes ORDER BY ref")
	if want := []string{"1 1.2.3.4 10 40 5 reported -", "2 1.2.3.5 20 30 3 reply LT0102"}; !slices.Equal(got, want) {
		t.Errorf("nodes after upgrade = %v, want %v", got, want)
	}
	if n := count(t, q, "SELECT count(*) FROM live_nodes"); n != 1 {
		t.Errorf("live_nodes = %d, want 1", n)
	}
	if n := count(t, q, "SELECT count(*) FROM reports"); n != 1 {
		t.Errorf("reports = %d, want 1", n)
	}
	got = strs(t, q, "SELECT printf('%s %d %d', kind, visits, visits_replied IS NULL) FROM crawl_runs")
	if want := []string{"crawl 0 1"}; !slices.Equal(got, want) {
		t.Errorf("old run = %v, want %v (no visits)", got, want)
	}
	if n := count(t, q, "SELECT count(*) FROM crawl_sequence"); n != 0 {
		t.Errorf("crawl_sequence lists %d runs without visits", n)
	}
	// New sightings of an old node update its row, keeping its ref.
	d.Observe(observe.Sighting{Node: ni(1, "1.2.3.4:6881"), Time: time.UnixMilli(60), Source: observe.SourceReply})
	d.RecordVisit(replied(ni(1, "1.2.3.4:6881"), time.UnixMilli(60)))
	flush(t, d)
	if got := strs(t, q, "SELECT printf('%d %d %d', ref, replies, last_seen) FROM nodes WHERE ip = '1.2.3.4'"); !slices.Equal(got, []string{"1 1 60"}) {
		t.Errorf("old node after a new reply = %v, want [1 1 60]", got)
	}
	if n := count(t, q, "SELECT count(*) FROM visits WHERE node = 1"); n != 1 {
		t.Errorf("visits of the old node = %d, want 1", n)
	}
}

// TestUpgradeFromV6 opens a file written by schema version 6 (the last
// without discounts), with a visit in it: the old visit has no discount,
// visit_details, made again by the migration, still lists it, and new
// visits record theirs.
func TestUpgradeFromV6(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v6.db")
	writeOldSchema(t, path, 6,
		`INSERT INTO nodes (id, ip, port, first_seen, last_seen, times_seen, first_source, bep42_valid)
			VALUES ('`+id(1).String()+`', '1.2.3.4', 6881, 10, 10, 1, 'reported', 0)`,
		`INSERT INTO visits (crawl, node, time, outcome, skipped, queries, read_only, bep51, id_changed, addr_changed)
			VALUES (NULL, 1, 10, 4, 3, 0, 0, 0, 0, 0)`,
	)
	d := openUpgraded(t, path)
	q := d.SQL()
	d.RecordVisit(observe.Visit{Node: ni(1, "1.2.3.4:6881"), Time: time.UnixMilli(20), Outcome: observe.OutcomeReplied,
		Queries: 1, Discounted: observe.DiscountDeadContacts})
	flush(t, d)
	got := strs(t, q, "SELECT printf('%d %s %s %s', time, outcome, coalesce(skipped, '-'), coalesce(discounted, '-')) FROM visit_details ORDER BY time")
	if want := []string{"10 not_queried unreached -", "20 replied - dead_contacts"}; !slices.Equal(got, want) {
		t.Errorf("visit_details after upgrade = %v, want %v", got, want)
	}
}

// TestNodesToRevisit: open sessions come back up since their start;
// nodes whose session timed out recently come back down since the
// failure; older failures, replaced nodes and silent nodes do not.
func TestNodesToRevisit(t *testing.T) {
	d, _ := openT(t, Options{})
	up, down, old := ni(1, "1.0.0.1:6881"), ni(2, "1.0.0.2:6881"), ni(3, "1.0.0.3:6881")
	moved, movedTo := ni(4, "1.0.0.4:6881"), ni(4, "1.0.0.4:7000")
	silent := ni(5, "1.0.0.5:6881")
	for _, v := range []observe.Visit{
		replied(up, at(1000)), replied(up, at(5000)),
		replied(down, at(1000)), timedOut(down, at(6000)),
		replied(old, at(0)), timedOut(old, at(100)),
		replied(moved, at(1000)), replied(movedTo, at(2000)),
		timedOut(silent, at(3000)),
	} {
		d.RecordVisit(v)
	}
	d.RecordSample(up, at(5000), 10, 60, nil)
	flush(t, d)
	got, err := d.NodesToRevisit(context.Background(), at(1000))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, s := range got {
		lines = append(lines, fmt.Sprintf("%v %v %d %v", s.Node.Addr, s.Up, s.Since.Sub(t0).Milliseconds(), s.BEP51))
	}
	slices.Sort(lines)
	want := []string{"1.0.0.1:6881 true 1000 true", "1.0.0.2:6881 false 6000 false", "1.0.0.4:7000 true 2000 false"}
	if !slices.Equal(lines, want) {
		t.Errorf("NodesToRevisit = %v, want %v", lines, want)
	}
}

// openUpgraded opens the file an old schema was written to, which
// migrates it, and checks that every migration is recorded; the DB is
// closed when t ends.
func openUpgraded(t *testing.T, path string) *DB {
	t.Helper()
	d, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if got := versions(t, d.SQL()); !slices.Equal(got, wantVersions()) {
		t.Errorf("after upgrade schema_migrations = %v, want %v", got, wantVersions())
	}
	return d
}

// writeOldSchema creates a file at path with the migrations up to
// version only, as an older lightdht wrote it, and runs stmts on it.
func writeOldSchema(t *testing.T, path string, version int, stmts ...string) {
	t.Helper()
	raw, err := sql.Open("sqlite3", dsn(path, "_journal_mode=WAL&_txlock=immediate"))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	ctx := context.Background()
	conn, err := raw.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := migrate(ctx, conn, version); err != nil {
		t.Fatal(err)
	}
	for i, q := range stmts {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatalf("statement %d: %v", i, err)
		}
	}
}
