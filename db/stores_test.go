package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/lightdht/lightdht/internal/pgtest"
	"github.com/lightdht/lightdht/krpc"
	"github.com/lightdht/lightdht/observe"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// eachStore runs fn once on a new SQLite file and once on a new
// PostgreSQL database, as subtests named sqlite and postgres.
func eachStore(t *testing.T, fn func(t *testing.T, dsn string)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, filepath.Join(t.TempDir(), "nodes.db")) })
	t.Run("postgres", func(t *testing.T) { fn(t, pgtest.Database(t)) })
}

func openDSN(t *testing.T, dsn string, opts Options) *DB {
	t.Helper()
	d, err := Open(dsn, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// storeDump is every table and view of a store, as the rows of one
// query each, with nodes named by (id, ip, port) instead of their ref:
// refs are surrogate keys, numbered by each store in its own way.
var storeDump = []struct{ name, query string }{
	{"nodes", `SELECT id, ip, port, first_seen, last_seen, times_seen, first_source, last_reply, replies, timeouts,
		queries_sent, queries_received, last_rtt_ms, version, version_seen, bep42_valid, read_only FROM nodes ORDER BY id, ip, port`},
	{"reports", "SELECT * FROM reports ORDER BY 1, 2, 3, 4, 5, 6"},
	{"infohashes", "SELECT * FROM infohashes ORDER BY infohash"},
	{"peers", "SELECT * FROM peers ORDER BY 1, 2, 3"},
	{"samples", "SELECT * FROM samples ORDER BY 1, 2, 3, 4"},
	{"items", "SELECT * FROM items ORDER BY target"},
	{"crawl_runs", `SELECT id, started, ended, config, program_version, bootstrap, nodes_found, nodes_replied, infohashes,
		queries_sent, sightings_shed, size_estimate, kind, vantage, host, visits, neighbours,
		visits_replied, visits_error, visits_timeout, visits_not_queried FROM crawl_runs ORDER BY id`},
	{"versions", "SELECT ref, version FROM versions ORDER BY ref"},
	{"vantages", "SELECT ref, host, address FROM vantages ORDER BY ref"},
	{"visit_outcomes", "SELECT * FROM visit_outcomes ORDER BY 1"},
	{"visit_skips", "SELECT * FROM visit_skips ORDER BY 1"},
	{"visit_discounts", "SELECT * FROM visit_discounts ORDER BY 1"},
	{"visits", `SELECT v.crawl, n.id, n.ip, n.port, v.time, v.outcome, v.error_code, v.skipped, v.queries, v.rtt_us,
		v.version, v.read_only, v.bep51, v.num, v.interval_s, v.id_changed, v.addr_changed, v.vantage, v.discounted
		FROM visits v JOIN nodes n ON n.ref = v.node ORDER BY v.crawl, v.time, n.id, n.ip, n.port`},
	{"neighbours", `SELECT x.crawl, a.id, a.ip, a.port, b.id, b.ip, b.port FROM neighbours x
		JOIN nodes a ON a.ref = x.node JOIN nodes b ON b.ref = x.neighbour ORDER BY 1, 2, 3, 4, 5, 6, 7`},
	{"sessions", `SELECT s.id, n.id, n.ip, n.port, s.started, s.last_answered, s.visits, s.failed, s.failed_streak,
		s.failed_since, s.state, s.closed, s.close_reason FROM sessions s JOIN nodes n ON n.ref = s.node ORDER BY s.id`},
	{"address_nodes", `SELECT a.ip, a.port, n.id, a.time FROM address_nodes a JOIN nodes n ON n.ref = a.node ORDER BY 1, 2`},
	{"ip_info", "SELECT ip, country, asn, org FROM ip_info ORDER BY ip"},
	{"live_nodes", "SELECT id, ip, port, replies FROM live_nodes ORDER BY 1, 2, 3"},
	{"client_versions", "SELECT * FROM client_versions ORDER BY version"},
	{"ids_per_ip", "SELECT * FROM ids_per_ip ORDER BY ip"},
	{"ips_per_id", "SELECT * FROM ips_per_id ORDER BY id"},
	{"bep42_violators", "SELECT id, ip, port FROM bep42_violators ORDER BY 1, 2, 3"},
	{"visit_details", `SELECT crawl, id, ip, port, time, outcome, error_code, skipped, queries, rtt_ms, version, read_only,
		bep51, num, interval_s, id_changed, addr_changed, discounted FROM visit_details ORDER BY crawl, time, id, ip, port`},
	{"crawl_sequence", "SELECT * FROM crawl_sequence ORDER BY crawl"},
	{"crawl_answering", `SELECT c.crawl, n.id, n.ip, n.port FROM crawl_answering c JOIN nodes n ON n.ref = c.node ORDER BY 1, 2, 3, 4`},
	{"crawl_node_classes", `SELECT c.crawl, n.id, n.ip, n.port, c.class, c.seen_once FROM crawl_node_classes c
		JOIN nodes n ON n.ref = c.node ORDER BY 1, 2, 3, 4`},
	{"crawl_churn", "SELECT * FROM crawl_churn ORDER BY crawl"},
	{"crawl_totals", "SELECT * FROM crawl_totals ORDER BY crawl"},
	{"crawl_clients", "SELECT * FROM crawl_clients ORDER BY crawl, version"},
	{"session_lengths", `SELECT session, id, ip, port, started, last_answered, seconds, visits, failed, state, close_reason
		FROM session_lengths ORDER BY session`},
	{"nodes_by_country", "SELECT * FROM nodes_by_country ORDER BY country"},
	{"nodes_by_asn", "SELECT * FROM nodes_by_asn ORDER BY asn, org"},
	{"vantage_nodes", `SELECT v.vantage, n.id, n.ip, n.port, v.visits, v.answered FROM vantage_nodes v
		JOIN nodes n ON n.ref = v.node ORDER BY 1, 2, 3, 4`},
	{"vantage_gaps", `SELECT n.id, n.ip, n.port, g.answered_from, g.silent_from, g.answered, g.silent_visits
		FROM vantage_gaps g JOIN nodes n ON n.ref = g.node ORDER BY 1, 2, 3, 4, 5`},
	{"vantage_comparison", "SELECT * FROM vantage_comparison ORDER BY 1, 2"},
}

// dumpRows runs query and renders each row as one line. Numbers are
// rendered by value, so that an integer or float is the same text from
// either driver.
func dumpRows(t *testing.T, q *sql.DB, query string) []string {
	t.Helper()
	rows, err := q.Query(query)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	var out []string
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		fields := make([]string, len(vals))
		for i, v := range vals {
			switch x := v.(type) {
			case nil:
				fields[i] = "NULL"
			case []byte:
				fields[i] = "'" + string(x) + "'"
			case string:
				fields[i] = "'" + x + "'"
			case float64:
				fields[i] = strconv.FormatFloat(x, 'g', -1, 64)
			case bool: // a store that gave a boolean where the other gives 0/1 would differ here
				fields[i] = fmt.Sprintf("bool(%v)", x)
			default:
				fields[i] = fmt.Sprint(x)
			}
		}
		out = append(out, strings.Join(fields, " "))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// recordEverything writes, into d, something for every table: a scripted
// crawl history (TestHistoryScripted's four runs, with discounted
// reporters and a node skipped for them), a revisit run from a second
// vantage, sightings of every source with reports and neighbours,
// infohashes, peers, samples, BEP 44 items, and enrichment.
func recordEverything(t *testing.T, d *DB) {
	t.Helper()
	a := ni(1, "1.0.0.1:6881")
	b := ni(2, "1.0.0.2:6881")
	b2 := ni(22, "1.0.0.2:6881")
	c := ni(3, "1.0.0.3:6881")
	c2 := ni(3, "1.0.0.3:7000")
	dn := ni(4, "10.0.0.4:6881")
	e := ni(5, "1.0.0.5:6881")
	v6 := ni(6, "[2001:db8::6]:6881")
	g := ni(7, "1.0.0.7:6881") // not queried in run 3: as if only e, discounted, listed it
	hour := func(h int) time.Time { return at(int64(h) * 3600_000) }

	run(t, d, hour(0), replied(a, hour(0)), replied(b, hour(0)), replied(c, hour(0)), skipped(dn, hour(0), observe.SkipBogon))
	r2, err := d.StartRun(RunInfo{Started: hour(1), Vantage: "127.0.0.1:6881", Host: "test", Config: map[string]int{"rate": 100},
		ProgramVersion: "test", Bootstrap: []string{"127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	// Run 2 also lists neighbours (reports) and sees the other sources.
	d.Observe(observe.Sighting{Node: b2, Time: hour(1), Source: observe.SourceReported, Reporter: a, SecureID: true})
	d.Observe(observe.Sighting{Node: c2, Time: hour(1), Source: observe.SourceReported, Reporter: a})
	d.Observe(observe.Sighting{Node: v6, Time: hour(1), Source: observe.SourceReply, RTT: 12 * time.Millisecond,
		Version: "UT\x01\x02", ReadOnly: true})
	d.Observe(observe.Sighting{Node: v6, Time: hour(1).Add(time.Second), Source: observe.SourceQuery, Method: krpc.MethodGetPeers,
		Infohash: krpc.ID{0xaa}})
	d.Observe(observe.Sighting{Node: a, Time: hour(1), Source: observe.SourceQuery, Method: krpc.MethodAnnouncePeer,
		Infohash: krpc.ID{0xbb}, Peer: netip.MustParseAddrPort("192.0.2.9:51413")})
	d.Observe(observe.Sighting{Node: a, Time: hour(1), Source: observe.SourceQuery, Method: krpc.MethodPut,
		Item: krpc.ID{0xcc}, ItemMutable: true, ItemSeq: 7})
	d.Observe(observe.Sighting{Node: b2, Time: hour(1), Source: observe.SourceQuery, Method: krpc.MethodGet, Item: krpc.ID{0xcc}})
	d.Observe(observe.Sighting{Node: e, Time: hour(1), Source: observe.SourceTimeout})
	d.RecordPeer(krpc.ID{0xbb}, netip.MustParseAddrPort("[2001:db8::9]:6881"), "get_peers", hour(1))
	d.RecordSample(a, hour(1), 42, 60, []krpc.ID{{0xaa}, {0xdd}})
	// a listed b2 and c2; its reply was found implausible.
	ra := replied(a, hour(1))
	ra.Discounted = observe.DiscountImplausible
	for _, v := range []observe.Visit{ra, replied(b2, hour(1)), replied(c2, hour(1)),
		skipped(dn, hour(1), observe.SkipBogon), replied(v6, hour(1))} {
		src := observe.SourceReply
		if v.Outcome == observe.OutcomeNotQueried {
			src = observe.SourceReported
		}
		d.Observe(observe.Sighting{Node: v.Node, Time: v.Time, Source: src})
		d.RecordVisit(v)
	}
	if err := d.EndRun(r2, RunCounts{Ended: hour(1).Add(time.Minute), NodesFound: 6, NodesReplied: 4, QueriesSent: 9,
		SizeEstimate: 1234.5}); err != nil {
		t.Fatal(err)
	}
	re := replied(e, hour(2))
	re.Discounted = observe.DiscountDeadContacts
	run(t, d, hour(2), timedOut(a, hour(2)), re, skipped(dn, hour(2), observe.SkipBogon),
		skipped(g, hour(2), observe.SkipDiscounted))
	run(t, d, hour(3), replied(a, hour(3)), skipped(dn, hour(3), observe.SkipBogon))

	// A revisit from a second vantage: a answers, c2 does not.
	rv, err := d.StartRun(RunInfo{Started: hour(4), Kind: "revisit", Vantage: "127.0.0.2:6881", Host: "other"})
	if err != nil {
		t.Fatal(err)
	}
	d.RecordVisit(replied(a, hour(4)))
	d.RecordVisit(timedOut(c2, hour(4)))
	d.RecordVisit(observe.Visit{Node: e, Time: hour(4), Outcome: observe.OutcomeError, ErrorCode: 204, Queries: 1,
		BEP51: observe.BEP51Yes, Num: 10, Interval: 300})
	if err := d.EndRun(rv, RunCounts{Ended: hour(4).Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Enrich(context.Background(), func(ip netip.Addr) (IPInfo, bool, error) {
		if ip.Is6() {
			return IPInfo{}, false, nil
		}
		return IPInfo{Country: "NL", ASN: 64500 + uint32(ip.As4()[3]%2), Org: "Example"}, true, nil
	}, false); err != nil {
		t.Fatal(err)
	}
	flush(t, d)
}

// TestStoresAgree: the same history, written to SQLite and to
// PostgreSQL, reads back the same from every table and view, and the
// views say what the script says.
func TestStoresAgree(t *testing.T) {
	dumps := map[string]map[string][]string{}
	eachStore(t, func(t *testing.T, dsn string) {
		d := openDSN(t, dsn, Options{Reports: true, Neighbours: true})
		recordEverything(t, d)
		dump := map[string][]string{}
		for _, q := range storeDump {
			dump[q.name] = dumpRows(t, d.SQL(), q.query)
		}
		dumps[t.Name()] = dump

		// The script's own expectations, on each store (crawl 3 never
		// got answers from dn and g).
		want := []string{"1 3 0 3 0 2 1", "2 4 1 3 2 3 1", "3 1 0 1 4 1 2", "4 1 0 1 1 0 1"}
		var got []string
		for _, r := range dump["crawl_churn"] {
			f := strings.Fields(r)
			got = append(got, strings.Join(append(f[:1:1], f[2:]...), " ")) // without started
		}
		if !slices.Equal(got, want) {
			t.Errorf("crawl_churn:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		for _, name := range []string{"reports", "infohashes", "peers", "samples", "items", "neighbours",
			"sessions", "ip_info", "nodes_by_asn", "vantage_gaps", "vantage_comparison", "bep42_violators"} {
			if len(dump[name]) == 0 {
				t.Errorf("%s is empty: the script writes rows there", name)
			}
		}
		if g := dump["vantage_gaps"]; len(g) != 1 || !strings.HasPrefix(g[0], "'"+id(3).String()+"' '1.0.0.3' 7000 1 2 ") {
			t.Errorf("vantage_gaps = %q, want c2 answered from vantage 1 and silent from 2", g)
		}
		revisit, err := d.NodesToRevisit(context.Background(), at(0))
		if err != nil {
			t.Fatal(err)
		}
		var lines []string
		for _, s := range revisit {
			lines = append(lines, fmt.Sprintf("%v %v %d", s.Node.Addr, s.Up, s.Since.Sub(t0).Milliseconds()))
		}
		slices.Sort(lines)
		dump["NodesToRevisit"] = lines
	})
	sq, pg := dumps["TestStoresAgree/sqlite"], dumps["TestStoresAgree/postgres"]
	if sq == nil || pg == nil {
		return // a store was skipped
	}
	for _, q := range append(storeDump, struct{ name, query string }{name: "NodesToRevisit"}) {
		if !slices.Equal(sq[q.name], pg[q.name]) {
			t.Errorf("%s differs:\nsqlite:\n%s\npostgres:\n%s", q.name, strings.Join(sq[q.name], "\n"), strings.Join(pg[q.name], "\n"))
		}
	}
}

// TestVisitDiscounts: on each store, a discounted reporter's visit and a
// visit skipped because only discounted nodes listed its node read back
// with their codes' names, through the code tables and visit_details; a
// trusted reporter's visit has no discount (NULL). The code tables name
// every value observe has, as its String methods do.
func TestVisitDiscounts(t *testing.T) {
	eachStore(t, func(t *testing.T, dsn string) {
		d := openDSN(t, dsn, Options{})
		dead, implausible, plain := ni(1, "1.0.0.1:6881"), ni(2, "1.0.0.2:6881"), ni(3, "1.0.0.3:6881")
		listed := ni(4, "1.0.0.4:6881")
		vd, vi := replied(dead, at(1)), replied(implausible, at(2))
		vd.Discounted, vi.Discounted = observe.DiscountDeadContacts, observe.DiscountImplausible
		run(t, d, at(0), vd, vi, replied(plain, at(3)), skipped(listed, at(4), observe.SkipDiscounted))
		flush(t, d)
		q := d.SQL()

		got := dumpRows(t, q, `SELECT n.ip, v.outcome, v.skipped, s.name, v.discounted, dc.name
			FROM visits v JOIN nodes n ON n.ref = v.node
			LEFT JOIN visit_skips s ON s.skipped = v.skipped
			LEFT JOIN visit_discounts dc ON dc.discounted = v.discounted
			ORDER BY n.ip`)
		want := []string{
			"'1.0.0.1' 1 NULL NULL 2 'dead_contacts'",
			"'1.0.0.2' 1 NULL NULL 1 'implausible'",
			"'1.0.0.3' 1 NULL NULL NULL NULL",
			"'1.0.0.4' 4 4 'discounted' NULL NULL",
		}
		if !slices.Equal(got, want) {
			t.Errorf("visits with their codes' names:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		got = dumpRows(t, q, "SELECT ip, outcome, skipped, discounted FROM visit_details ORDER BY ip")
		want = []string{
			"'1.0.0.1' 'replied' NULL 'dead_contacts'",
			"'1.0.0.2' 'replied' NULL 'implausible'",
			"'1.0.0.3' 'replied' NULL NULL",
			"'1.0.0.4' 'not_queried' 'discounted' NULL",
		}
		if !slices.Equal(got, want) {
			t.Errorf("visit_details:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}

		// A code added to observe without a migration would show here.
		var skips, discounts []string
		for s := observe.SkipBogon; s.String() != "unknown"; s++ {
			skips = append(skips, fmt.Sprintf("%d '%s'", s, s))
		}
		for x := observe.DiscountImplausible; x.String() != "unknown"; x++ {
			discounts = append(discounts, fmt.Sprintf("%d '%s'", x, x))
		}
		if got := dumpRows(t, q, "SELECT skipped, name FROM visit_skips ORDER BY 1"); !slices.Equal(got, skips) {
			t.Errorf("visit_skips = %q, observe has %q", got, skips)
		}
		if got := dumpRows(t, q, "SELECT discounted, name FROM visit_discounts ORDER BY 1"); !slices.Equal(got, discounts) {
			t.Errorf("visit_discounts = %q, observe has %q", got, discounts)
		}
	})
}

// TestPostgresOpen: a PostgreSQL database gets the schema once, however
// often it is opened; one whose schema is newer is refused; a server
// that is not there is a clear error naming the URL without its
// password.
func TestPostgresOpen(t *testing.T) {
	dsn := pgtest.Database(t)
	for range 2 {
		d := openDSN(t, dsn, Options{})
		if n := count(t, d.SQL(), "SELECT count(*) FROM schema_migrations"); n != int64(PostgresSchemaVersion()) {
			t.Fatalf("%d migrations recorded, want %d", n, PostgresSchemaVersion())
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
	}
	d := openDSN(t, dsn, Options{})
	if _, err := d.SQL().Exec("INSERT INTO nodes (id, ip, port, first_seen, last_seen, times_seen, first_source, bep42_valid) VALUES ('x', 'y', 1, 0, 0, 0, 'z', 0)"); err == nil {
		t.Error("a write through SQL() succeeded; it is read-only")
	}
	d.Close()

	// A later lightdht wrote this database.
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), "INSERT INTO schema_migrations VALUES ($1, 0)", PostgresSchemaVersion()+1); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dsn, Options{}); !errors.Is(err, ErrSchemaTooNew) {
		t.Errorf("Open of a newer schema: %v, want ErrSchemaTooNew", err)
	}

	_, err = Open("postgres://lightdht:secret@127.0.0.1:1/none?sslmode=disable&connect_timeout=5", Options{})
	var e *Error
	if !errors.As(err, &e) || e.Op != "open" || strings.Contains(err.Error(), "secret") || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("Open of an absent server: %v; want an open error naming the address, without the password", err)
	}
}

// TestPostgresConcurrentWriters: two DBs write the same nodes and
// reports into one PostgreSQL database at once, in opposite orders:
// every sighting of both is counted, none lost or counted twice.
func TestPostgresConcurrentWriters(t *testing.T) {
	dsn := pgtest.Database(t)
	const nodes, rounds = 2000, 10
	ds := []*DB{openDSN(t, dsn, Options{BatchSize: 500, Reports: true}), openDSN(t, dsn, Options{BatchSize: 500, Reports: true})}
	done := make(chan error, len(ds))
	for w, d := range ds {
		go func() {
			for r := range rounds {
				for i := range nodes {
					k := i
					if w == 1 {
						k = nodes - 1 - i // the other writer goes the other way
					}
					n := ni(k, fmt.Sprintf("198.51.%d.%d:6881", k/250, k%250))
					d.Observe(observe.Sighting{Node: n, Time: at(int64(r*nodes + i)), Source: observe.SourceReported,
						Reporter: ni(nodes+k%7, "203.0.113.1:1")})
				}
			}
			done <- d.Flush(context.Background())
		}()
	}
	for range ds {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	q := ds[0].SQL()
	if n := count(t, q, "SELECT count(*) FROM nodes WHERE times_seen = $1", 2*rounds); n != nodes {
		t.Errorf("%d nodes seen %d times, want all %d", n, 2*rounds, nodes)
	}
	if n := count(t, q, "SELECT sum(count) FROM reports"); n != 2*rounds*nodes {
		t.Errorf("reports count %d sightings, want %d", n, 2*rounds*nodes)
	}
	for _, d := range ds {
		if st := d.Stats(); st.Lost != 0 || st.Errors != 0 {
			t.Errorf("stats %+v: a batch failed", st)
		}
	}
}

// TestPostgresDeadlockRetried: a batch that PostgreSQL aborts to break a
// deadlock is written again, and nothing of it is lost or counted twice.
// Another session holds the batch's infohash row and then asks for its
// node row, which the batch's transaction took first (nodes are folded
// before infohashes): the server aborts the batch's transaction, the one
// that has waited longest, and the writer tries the batch again once the
// other session commits.
func TestPostgresDeadlockRetried(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.Database(t)
	d := openDSN(t, dsn, Options{})
	ih := id(99)
	sighting := observe.Sighting{Node: ni(1, "198.51.100.1:6881"), Time: at(10), Source: observe.SourceQuery,
		Method: krpc.MethodGetPeers, Infohash: ih}
	d.Observe(sighting)
	if err := d.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	other, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	tx, err := other.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	var otherPID int
	for _, q := range []string{
		// This session must not be the one that detects the deadlock.
		"SET LOCAL deadlock_timeout = '10min'",
		"UPDATE infohashes SET via_sample = via_sample",
	} {
		if _, err := tx.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&otherPID); err != nil {
		t.Fatal(err)
	}

	sighting.Time = at(20)
	d.Observe(sighting)
	flushed := make(chan error, 1)
	go func() { flushed <- d.Flush(ctx) }()
	// The writer now holds the node's row and waits for the infohash's.
	deadline := time.Now().Add(hangGuard)
	for {
		var waiting int
		if err := other.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid <> $1 AND wait_event_type = 'Lock'",
			otherPID).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the writer never waited for the infohash's row")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Returns once the server has aborted the writer's transaction.
	if _, err := tx.Exec(ctx, "UPDATE nodes SET times_seen = times_seen"); err != nil {
		t.Fatalf("the other session's update: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-flushed; err != nil {
		t.Fatalf("flush after the deadlock: %v", err)
	}
	q := d.SQL()
	if n := count(t, q, "SELECT times_seen FROM nodes"); n != 2 {
		t.Errorf("node seen %d times, want 2", n)
	}
	if n := count(t, q, "SELECT via_get_peers FROM infohashes"); n != 2 {
		t.Errorf("infohash counted %d times, want 2", n)
	}
	if st := d.Stats(); st.Lost != 0 || st.Errors != 0 {
		t.Errorf("stats %+v: the batch was not written again", st)
	}
}

// TestNodesInPrefix: NodesInPrefix returns the nodes whose ID begins
// with the prefix (to the bit), seen at or after the time given, those
// that answered first and then the most recently seen, up to the limit,
// in both stores.
func TestNodesInPrefix(t *testing.T) {
	eachStore(t, func(t *testing.T, dsn string) {
		d := openDSN(t, dsn, Options{})
		// A prefix of 5 bits: 0xa8 = 10101 000, so IDs beginning 0xa8 to
		// 0xaf are in it, 0xa7 and 0xb0 outside.
		mk := func(first byte, last byte, addr string) krpc.NodeInfo {
			var id krpc.ID
			id[0], id[krpc.IDLen-1] = first, last
			return krpc.NodeInfo{ID: id, Addr: netip.MustParseAddrPort(addr)}
		}
		inOld := mk(0xa8, 1, "1.0.0.1:6881")     // seen before the crawl
		inListed := mk(0xaf, 2, "1.0.0.2:6881")  // listed, seen at 20
		inAnswer := mk(0xa9, 3, "1.0.0.3:6881")  // answered, at 10
		inListed2 := mk(0xab, 4, "1.0.0.4:6881") // listed, seen at 30
		below, above := mk(0xa7, 5, "1.0.0.5:6881"), mk(0xb0, 6, "1.0.0.6:6881")
		d.Observe(observe.Sighting{Node: inOld, Time: at(0), Source: observe.SourceReported})
		d.Observe(observe.Sighting{Node: inAnswer, Time: at(10), Source: observe.SourceReply, RTT: time.Millisecond})
		for _, s := range []struct {
			n  krpc.NodeInfo
			ms int64
		}{{inListed, 20}, {inListed2, 30}, {below, 30}, {above, 30}} {
			d.Observe(observe.Sighting{Node: s.n, Time: at(s.ms), Source: observe.SourceReported})
		}
		flush(t, d)
		var prefix krpc.ID
		prefix[0] = 0xa8 | 0x03 // bits past the prefix are ignored
		got, err := d.NodesInPrefix(context.Background(), prefix, 5, at(5), 10)
		if err != nil {
			t.Fatal(err)
		}
		if want := []krpc.NodeInfo{inAnswer, inListed2, inListed}; !slices.Equal(got, want) {
			t.Fatalf("NodesInPrefix = %v, want %v", got, want)
		}
		if got, err := d.NodesInPrefix(context.Background(), prefix, 5, at(5), 2); err != nil || len(got) != 2 {
			t.Fatalf("limit 2: %v, %v", got, err)
		}
		if _, err := d.NodesInPrefix(context.Background(), prefix, 161, at(5), 2); err == nil {
			t.Fatal("a prefix of 161 bits accepted")
		}
	})
}
