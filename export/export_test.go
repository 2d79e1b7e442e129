package export_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lightdht/lightdht/db"
	"github.com/lightdht/lightdht/export"
	"github.com/lightdht/lightdht/internal/exporttest"
	"github.com/lightdht/lightdht/internal/pgtest"
	"github.com/lightdht/lightdht/krpc"
	"github.com/lightdht/lightdht/observe"
)

var t0 = time.UnixMilli(1_700_000_000_000)

func TestMain(m *testing.M) { pgtest.Main(m) }

func hour(h int) time.Time { return t0.Add(time.Duration(h) * time.Hour) }

func node(i int, addr string) krpc.NodeInfo {
	var id krpc.ID
	id[0], id[18], id[19] = 0xcd, byte(i>>8), byte(i)
	return krpc.NodeInfo{ID: id, Addr: netip.MustParseAddrPort(addr)}
}

func ih(i int) krpc.ID {
	var x krpc.ID
	x[0], x[19] = 0x11, byte(i)
	return x
}

// scripted writes a database with a row in every exported table and,
// in every nullable column, both a NULL and a value: three crawls (the
// last never ended), visits of every outcome and discount, neighbours,
// sessions opened and closed, a visit outside any run, peers, samples,
// BEP 44 items got and put, and ip_info with known and unknown IPs. It
// returns the file's path.
func scripted(t *testing.T) string {
	t.Helper()
	return scriptedAt(t, filepath.Join(t.TempDir(), "scripted.db"))
}

// scriptedAt writes the scripted database at path: a file, or a
// postgres:// URL.
func scriptedAt(t *testing.T, path string) string {
	t.Helper()
	d, err := db.Open(path, db.Options{Reports: true, Neighbours: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	a, b, c := node(1, "1.0.0.1:6881"), node(2, "1.0.0.2:6881"), node(3, "[2001:db8::3]:6881")
	bogon, e := node(4, "10.0.0.4:6881"), node(5, "1.0.0.5:7000")
	f := node(6, "1.0.0.6:6881") // listed only by a, once a is discounted
	sight := func(n krpc.NodeInfo, at time.Time, src observe.Source, version string, rtt time.Duration) {
		d.Observe(observe.Sighting{Node: n, Time: at, Source: src, Version: version, RTT: rtt, SecureID: true})
	}
	visit := func(v observe.Visit) { d.RecordVisit(v) }
	replied := func(n krpc.NodeInfo, at time.Time, version string) observe.Visit {
		return observe.Visit{Node: n, Time: at, Outcome: observe.OutcomeReplied, Queries: 1, RTT: 1234 * time.Microsecond, Version: version}
	}
	listed := func(reporter, n krpc.NodeInfo, at time.Time) {
		d.Observe(observe.Sighting{Node: n, Time: at, Source: observe.SourceReported, Reporter: reporter, Method: krpc.MethodFindNode})
	}

	// A visit outside any run (library use): crawl NULL.
	d.RecordVisit(observe.Visit{Node: e, Time: t0, Outcome: observe.OutcomeReplied, Queries: 1})
	r1, err := d.StartRun(db.RunInfo{Started: hour(0), Config: map[string]any{"rate": 250}, ProgramVersion: "test",
		Bootstrap: []string{"127.0.0.1:6881"}, Vantage: "127.0.0.1:6881", Host: "lab"})
	if err != nil {
		t.Fatal(err)
	}
	sight(a, hour(0), observe.SourceReply, "LT\x01\x02", 1500*time.Microsecond)
	sight(b, hour(0), observe.SourceReply, "", 0)
	listed(a, b, hour(0))
	listed(a, c, hour(0))
	listed(b, bogon, hour(0))
	listed(a, f, hour(0))
	sight(c, hour(0), observe.SourceTimeout, "", 0)
	visit(observe.Visit{Node: a, Time: hour(0), Outcome: observe.OutcomeReplied, Queries: 2, RTT: 1500 * time.Microsecond,
		Version: "LT\x01\x02", BEP51: observe.BEP51Yes, Num: 40, Interval: 60, Discounted: observe.DiscountImplausible})
	visit(observe.Visit{Node: f, Time: hour(0), Outcome: observe.OutcomeNotQueried, Skipped: observe.SkipDiscounted})
	visit(observe.Visit{Node: b, Time: hour(0), Outcome: observe.OutcomeError, ErrorCode: 204, Queries: 1, RTT: 900 * time.Microsecond})
	visit(observe.Visit{Node: c, Time: hour(0), Outcome: observe.OutcomeTimeout, Queries: 3})
	visit(observe.Visit{Node: bogon, Time: hour(0), Outcome: observe.OutcomeNotQueried, Skipped: observe.SkipBogon})
	if err := d.EndRun(r1, db.RunCounts{Ended: hour(0).Add(time.Minute), NodesFound: 4, NodesReplied: 2, QueriesSent: 6, SizeEstimate: 1234.5678}); err != nil {
		t.Fatal(err)
	}

	r2, err := d.StartRun(db.RunInfo{Started: hour(1)})
	if err != nil {
		t.Fatal(err)
	}
	sight(a, hour(1), observe.SourceTimeout, "", 0)
	sight(e, hour(1), observe.SourceReply, "UT\x00\x07", 2345678*time.Nanosecond)
	listed(e, a, hour(1))
	visit(observe.Visit{Node: a, Time: hour(1), Outcome: observe.OutcomeTimeout, Queries: 2})
	ve := replied(e, hour(1), "UT\x00\x07")
	ve.Discounted = observe.DiscountDeadContacts // the a it listed timed out
	visit(ve)
	visit(replied(b, hour(1), "LT\x01\x02"))
	if err := d.EndRun(r2, db.RunCounts{Ended: hour(1).Add(time.Minute), NodesFound: 3, NodesReplied: 2}); err != nil {
		t.Fatal(err)
	}

	// A run that never ended.
	if _, err := d.StartRun(db.RunInfo{Started: hour(2), Kind: "revisit"}); err != nil {
		t.Fatal(err)
	}
	visit(replied(a, hour(2), "LT\x01\x02"))
	visit(observe.Visit{Node: c, Time: hour(2), Outcome: observe.OutcomeReplied, Queries: 1, ReadOnly: true})
	if err := d.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}

	// The library's own observations: peers, samples, items, infohashes.
	d.RecordPeer(ih(1), netip.MustParseAddrPort("1.2.3.4:51413"), "get_peers", hour(3))
	d.Observe(observe.Sighting{Node: e, Time: hour(3), Source: observe.SourceQuery, Method: krpc.MethodAnnouncePeer,
		Infohash: ih(2), Peer: netip.MustParseAddrPort("1.0.0.5:6000")})
	d.RecordSample(a, hour(3), 40, 60, []krpc.ID{ih(3), ih(4)})
	d.RecordSample(a, hour(4), 41, 0, nil)
	d.Observe(observe.Sighting{Node: b, Time: hour(3), Source: observe.SourceQuery, Method: krpc.MethodGet, Item: ih(5)})
	d.Observe(observe.Sighting{Node: b, Time: hour(3), Source: observe.SourceQuery, Method: krpc.MethodPut, Item: ih(6),
		ItemMutable: true, ItemSeq: 7})
	if _, err := d.Enrich(context.Background(), func(ip netip.Addr) (db.IPInfo, bool, error) {
		switch ip.String() {
		case "1.0.0.1":
			return db.IPInfo{Country: "DE", ASN: 3320, Org: "Telekom"}, true, nil
		case "1.0.0.2":
			return db.IPInfo{ASN: 64500}, true, nil
		}
		return db.IPInfo{}, false, nil
	}, false); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func openRO(t *testing.T, path string) *sql.DB {
	t.Helper()
	q, err := db.OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

// orderBy is each table's order, written out here rather than taken from
// the package, so that the test checks the order the package promises.
var orderBy = map[string]string{
	"crawl_runs": "id", "nodes": "ref", "sessions": "id", "neighbours": "crawl, node, neighbour",
	"versions": "ref", "vantages": "ref", "visit_outcomes": "outcome", "visit_skips": "skipped", "visit_discounts": "discounted",
	"reports":    "reporter_id, reporter_ip, reporter_port, reported_id, reported_ip, reported_port",
	"infohashes": "infohash", "peers": "infohash, ip, port", "items": "target", "ip_info": "ip",
	"visits":  "crawl, node, time, outcome, error_code, skipped, queries, rtt_us, version, read_only, bep51, num, interval_s, id_changed, addr_changed, vantage, discounted",
	"samples": "node_id, ip, port, time, num, interval_s, samples_count",
}

// want is a table as the database gives it: the column names of SELECT *
// and the rows, each value nil, int64, float64 or string.
type want struct {
	cols []string
	rows [][]any
}

// query reads SELECT * FROM table [WHERE where] in the table's order.
func query(t *testing.T, q *sql.DB, table, where string) want {
	t.Helper()
	s := "SELECT * FROM " + table
	if where != "" {
		s += " WHERE " + where
	}
	// NULLs first, as SQLite sorts them by default and PostgreSQL does not.
	order := strings.ReplaceAll(orderBy[table], ",", " NULLS FIRST,") + " NULLS FIRST"
	rows, err := q.Query(s + " ORDER BY " + order)
	if err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	w := want{cols: cols}
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		for i, v := range vals {
			if b, ok := v.([]byte); ok {
				vals[i] = string(b)
			}
		}
		w.rows = append(w.rows, vals)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return w
}

// declared returns the declared table called name.
func declared(t *testing.T, name string) export.Table {
	t.Helper()
	for _, tb := range export.Tables() {
		if tb.Name == name {
			return tb
		}
	}
	t.Fatalf("no declared table %s", name)
	return export.Table{}
}

// typed converts a database value to the declared type of its column: a
// REAL column may hold an integer in SQLite.
func typed(v any, typ export.Type) any {
	if x, ok := v.(int64); ok && typ == export.Float64 {
		return float64(x)
	}
	return v
}

// compare checks that got holds exactly the database's rows, value for
// value, in order.
// In CSV an empty field stands for both NULL and the empty string.
func compare(t *testing.T, file string, tb export.Table, w want, cols []string, got [][]any) {
	t.Helper()
	if !slices.Equal(cols, w.cols) {
		t.Errorf("%s: columns %v, the table's %v", file, cols, w.cols)
		return
	}
	if len(got) != len(w.rows) {
		t.Errorf("%s: %d rows, the table has %d", file, len(got), len(w.rows))
		return
	}
	for r := range got {
		for i, c := range tb.Columns {
			g, x := got[r][i], typed(w.rows[r][i], c.Type)
			if strings.HasSuffix(file, ".csv") && g == nil && x == "" {
				continue
			}
			if g != x {
				t.Errorf("%s row %d column %s: %#v, the database has %#v", file, r+1, c.Name, g, x)
			}
		}
	}
}

// neverNull are the nullable columns the db package never leaves NULL
// (only files from before migration 4 can have NULLs there).
var neverNull = map[string]bool{"crawl_runs.program_version": true, "crawl_runs.bootstrap": true}

// TestExportHistory exports the whole scripted history in both formats
// and reads every file back: each has the table's columns in order with
// the declared Parquet types, and exactly its rows, value for value,
// NULLs included. The fixture is checked too: every nullable column holds
// both a NULL and a value, so that both paths are exercised.
func TestExportHistory(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { exportHistory(t, scripted(t)) })
	t.Run("postgres", func(t *testing.T) { exportHistory(t, scriptedAt(t, pgtest.Database(t))) })
}

// TestExportStoresAgree: the scripted history exported from SQLite and
// from PostgreSQL gives the same bytes, in both formats, for every
// table that holds no node ref (refs are each store's own numbering;
// TestExportHistory checks those tables against each store's rows).
func TestExportStoresAgree(t *testing.T) {
	sq, pg := openRO(t, scripted(t)), openRO(t, scriptedAt(t, pgtest.Database(t)))
	// ip_info's looked_up is when each export's fixture was enriched.
	refs := map[string]bool{"nodes": true, "visits": true, "sessions": true, "neighbours": true, "ip_info": true}
	for _, format := range []export.Format{export.Parquet, export.CSV} {
		a, b := t.TempDir(), t.TempDir()
		ra, err := export.Export(context.Background(), sq, a, export.Options{Format: format})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := export.Export(context.Background(), pg, b, export.Options{Format: format}); err != nil {
			t.Fatal(err)
		}
		compared := 0
		for _, r := range ra {
			if refs[r.Table] {
				continue
			}
			x, _ := os.ReadFile(r.File)
			y, _ := os.ReadFile(filepath.Join(b, filepath.Base(r.File)))
			if len(x) == 0 || !bytes.Equal(x, y) {
				t.Errorf("%s: SQLite's and PostgreSQL's exports differ (%d and %d bytes)", filepath.Base(r.File), len(x), len(y))
			}
			compared++
		}
		if compared != len(ra)-len(refs) {
			t.Errorf("compared %d tables, want every table without refs", compared)
		}
	}
}

func exportHistory(t *testing.T, path string) {
	q := openRO(t, path)
	for _, format := range []export.Format{export.Parquet, export.CSV} {
		t.Run(string(format), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "out")
			// Row groups of 2 rows: most tables take several.
			res, err := export.Export(context.Background(), q, dir, export.Options{Format: format, RowGroupRows: 2})
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, tb := range export.Tables() {
				names = append(names, tb.Name)
			}
			var got []string
			for _, r := range res {
				got = append(got, r.Table)
			}
			if !slices.Equal(got, names) {
				t.Fatalf("exported %v, want %v", got, names)
			}
			for _, r := range res {
				tb := declared(t, r.Table)
				w := query(t, q, r.Table, "")
				if r.File != filepath.Join(dir, r.Table+"."+string(format)) || r.Rows != int64(len(w.rows)) || len(w.rows) == 0 {
					t.Errorf("result %+v; the table has %d rows", r, len(w.rows))
				}
				if st, err := os.Stat(r.File); err != nil || st.Size() != r.Bytes {
					t.Errorf("result %+v: file %v, %v", r, st, err)
				}
				var cols []string
				var rows [][]any
				if format == export.Parquet {
					var groups int
					cols, rows, groups = exporttest.ReadParquet(t, r.File, tb)
					if wantGroups := (len(w.rows) + 1) / 2; groups != wantGroups {
						t.Errorf("%s: %d row groups of %d rows, want %d", r.File, groups, len(w.rows), wantGroups)
					}
				} else {
					cols, rows = exporttest.ReadCSV(t, r.File, tb)
				}
				compare(t, r.File, tb, w, cols, rows)
				if format == export.Parquet {
					for i, c := range tb.Columns {
						var nulls, vals int
						for _, row := range w.rows {
							if row[i] == nil {
								nulls++
							} else {
								vals++
							}
						}
						if c.Nullable && (nulls == 0 || vals == 0) && !neverNull[r.Table+"."+c.Name] {
							t.Errorf("fixture: %s.%s has %d NULLs and %d values; want both", r.Table, c.Name, nulls, vals)
						}
					}
				}
			}
		})
	}
}

// TestExportCrawl exports crawl 2 of the scripted history: its one
// crawl_runs row, exactly its visits and neighbours, the nodes they name
// and those nodes' ip_info, the versions its visits use, and the code
// tables whole; nothing of the other crawls.
func TestExportCrawl(t *testing.T) {
	q := openRO(t, scripted(t))
	dir := t.TempDir()
	res, err := export.Export(context.Background(), q, dir, export.Options{Crawl: 2})
	if err != nil {
		t.Fatal(err)
	}
	refs := `SELECT node FROM visits WHERE crawl = 2 UNION SELECT node FROM neighbours WHERE crawl = 2
		UNION SELECT neighbour FROM neighbours WHERE crawl = 2`
	where := map[string]string{
		"crawl_runs": "id = 2",
		"visits":     "crawl = 2",
		"neighbours": "crawl = 2",
		"nodes":      "ref IN (" + refs + ")",
		"ip_info":    "ip IN (SELECT ip FROM nodes WHERE ref IN (" + refs + "))",
		"versions":   "ref IN (SELECT version FROM visits WHERE crawl = 2)",
		"vantages":   "ref IN (SELECT vantage FROM visits WHERE crawl = 2)",
	}
	var got []string
	for _, r := range res {
		got = append(got, r.Table)
		tb := declared(t, r.Table)
		if !tb.InCrawl() {
			t.Errorf("table %s in a crawl export", r.Table)
		}
		w := query(t, q, r.Table, where[r.Table])
		cols, rows, _ := exporttest.ReadParquet(t, r.File, tb)
		compare(t, r.File, tb, w, cols, rows)
	}
	wantTables := []string{"crawl_runs", "nodes", "visits", "neighbours", "versions", "vantages", "visit_outcomes", "visit_skips",
		"visit_discounts", "ip_info"}
	if !slices.Equal(got, wantTables) {
		t.Errorf("crawl export wrote %v, want %v", got, wantTables)
	}
	// The scripted crawl 2: three visits and one neighbour pair, of three
	// nodes; the whole table holds more of each.
	_, visits, _ := exporttest.ReadParquet(t, filepath.Join(dir, "visits.parquet"), declared(t, "visits"))
	for _, v := range visits {
		if v[0] != int64(2) {
			t.Errorf("visit of crawl %v in the export of crawl 2", v[0])
		}
	}
	_, runs, _ := exporttest.ReadParquet(t, filepath.Join(dir, "crawl_runs.parquet"), declared(t, "crawl_runs"))
	_, nodes, _ := exporttest.ReadParquet(t, filepath.Join(dir, "nodes.parquet"), declared(t, "nodes"))
	_, neigh, _ := exporttest.ReadParquet(t, filepath.Join(dir, "neighbours.parquet"), declared(t, "neighbours"))
	var all int
	q.QueryRow("SELECT count(*) FROM visits").Scan(&all)
	if len(visits) != 3 || len(runs) != 1 || runs[0][0] != int64(2) || len(nodes) != 3 || len(neigh) != 1 || all <= 3 {
		t.Errorf("crawl 2: %d visits (of %d), %d runs %v, %d nodes, %d neighbours; want 3, 1 run 2, 3, 1",
			len(visits), all, len(runs), runs, len(nodes), len(neigh))
	}
}

// TestExportStable: two exports of the same database are equal byte for
// byte, in both formats, and a second export into the same folder is
// refused unless Overwrite is set, before any file is touched.
func TestExportStable(t *testing.T) {
	q := openRO(t, scripted(t))
	for _, format := range []export.Format{export.Parquet, export.CSV} {
		a, b := t.TempDir(), t.TempDir()
		ra, err := export.Export(context.Background(), q, a, export.Options{Format: format})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := export.Export(context.Background(), q, b, export.Options{Format: format}); err != nil {
			t.Fatal(err)
		}
		for _, r := range ra {
			x, _ := os.ReadFile(r.File)
			y, _ := os.ReadFile(filepath.Join(b, filepath.Base(r.File)))
			if len(x) == 0 || !bytes.Equal(x, y) {
				t.Errorf("%s: two exports differ (%d and %d bytes)", r.File, len(x), len(y))
			}
		}
		// Mark one file: a refused export must leave it as it is.
		marked := filepath.Join(a, "visits."+string(format))
		if err := os.WriteFile(marked, []byte("mine"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err = export.Export(context.Background(), q, a, export.Options{Format: format})
		if !errors.Is(err, export.ErrExists) {
			t.Errorf("export over existing files: %v, want ErrExists", err)
		}
		if x, _ := os.ReadFile(marked); string(x) != "mine" {
			t.Errorf("a refused export changed %s", marked)
		}
		if _, err := export.Export(context.Background(), q, a, export.Options{Format: format, Overwrite: true}); err != nil {
			t.Errorf("export with Overwrite: %v", err)
		}
		if x, _ := os.ReadFile(marked); string(x) == "mine" {
			t.Errorf("Overwrite left %s as it was", marked)
		}
		entries, _ := os.ReadDir(a)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".") {
				t.Errorf("temporary file %s left behind", e.Name())
			}
		}
	}
}

// TestExportOptionErrors: an unknown table, a table outside a crawl
// export, a crawl that does not exist and an unknown format are refused
// with errors that name them, and write nothing.
func TestExportOptionErrors(t *testing.T) {
	q := openRO(t, scripted(t))
	cases := []struct {
		name string
		opts export.Options
		is   error
		want string
	}{
		{"unknown table", export.Options{Tables: []string{"visits", "vistis"}}, export.ErrUnknownTable, `"vistis"`},
		{"table outside a crawl", export.Options{Crawl: 1, Tables: []string{"peers"}}, export.ErrUnknownTable, `"peers" in a crawl export`},
		{"no such crawl", export.Options{Crawl: 99}, export.ErrNoCrawl, "crawl 99"},
		{"bad format", export.Options{Format: "xlsx"}, nil, `unknown format "xlsx"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "out")
			_, err := export.Export(context.Background(), q, dir, c.opts)
			if err == nil || (c.is != nil && !errors.Is(err, c.is)) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want %v containing %q", err, c.is, c.want)
			}
			if _, err := os.Stat(dir); err == nil {
				t.Errorf("%s created by a refused export", dir)
			}
		})
	}
	// The tables named are written, and only those.
	res, err := export.Export(context.Background(), q, t.TempDir(), export.Options{Tables: []string{"samples", "nodes"}})
	if err != nil || len(res) != 2 || res[0].Table != "nodes" || res[1].Table != "samples" {
		t.Errorf("export of nodes and samples: %v, %v", res, err)
	}
}

// TestSchemaMismatch changes a table of a copy of the database in each
// way a migration could, and checks that the export stops with a
// *SchemaError naming the table and the column, before writing any file.
func TestSchemaMismatch(t *testing.T) {
	src := openRO(t, scripted(t))
	cases := []struct {
		name, sql     string
		table, column string
		want          string
	}{
		{"extra column", "ALTER TABLE visits ADD COLUMN probe TEXT", "visits", "probe", "not declared"},
		{"missing column", "DROP VIEW nodes_by_asn; ALTER TABLE ip_info DROP COLUMN org", "ip_info", "org", "not in the database"},
		{"other type", `PRAGMA legacy_alter_table = ON; CREATE TABLE skips2 (skipped INTEGER PRIMARY KEY, name BLOB NOT NULL);
			INSERT INTO skips2 SELECT * FROM visit_skips; DROP TABLE visit_skips; ALTER TABLE skips2 RENAME TO visit_skips`,
			"visit_skips", "name", `declared string, the database has type "BLOB"`},
		{"NULL in a NOT NULL column", `PRAGMA legacy_alter_table = ON; CREATE TABLE outcomes2 (outcome INTEGER PRIMARY KEY, name TEXT);
			INSERT INTO outcomes2 SELECT * FROM visit_outcomes; INSERT INTO outcomes2 VALUES (9, NULL);
			DROP TABLE visit_outcomes; ALTER TABLE outcomes2 RENAME TO visit_outcomes`,
			"visit_outcomes", "name", "NULL in row 5"},
		{"missing table", "DROP VIEW nodes_by_country; DROP VIEW nodes_by_asn; DROP TABLE ip_info", "ip_info", "", "cannot read it"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "changed.db")
			if _, err := src.Exec("VACUUM INTO ?", path); err != nil {
				t.Fatal(err)
			}
			rw, err := sql.Open("sqlite3", path)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := rw.Exec(c.sql); err != nil {
				t.Fatal(err)
			}
			rw.Close()
			dir := t.TempDir()
			_, err = export.Export(context.Background(), openRO(t, path), dir, export.Options{})
			var se *export.SchemaError
			if !errors.As(err, &se) || se.Table != c.table || se.Column != c.column || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want a SchemaError of %s.%s containing %q", err, c.table, c.column, c.want)
			}
			if !strings.Contains(err.Error(), "table "+c.table) || !strings.Contains(err.Error(), c.column) {
				t.Errorf("error %q does not name the table and the column", err)
			}
			// A column checked up front stops the export before any file; a
			// NULL is found while the table's file is written, and that file
			// is not left behind.
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if strings.HasPrefix(e.Name(), c.table+".") || strings.HasPrefix(e.Name(), ".") {
					t.Errorf("%s written by an export that failed on %s", e.Name(), c.table)
				}
			}
			if c.column != "" && c.want != "NULL in row 5" && len(entries) != 0 {
				t.Errorf("%d files written before the schema error", len(entries))
			}
		})
	}
}

// TestTablesDeclared: the declaration is well formed: every table has
// columns with distinct names and known types, and orders its rows by
// declared columns.
func TestTablesDeclared(t *testing.T) {
	for _, tb := range export.Tables() {
		seen := map[string]bool{}
		for _, c := range tb.Columns {
			if seen[c.Name] || (c.Type != export.Int64 && c.Type != export.Float64 && c.Type != export.String) {
				t.Errorf("%s.%s: duplicate or of type %v", tb.Name, c.Name, c.Type)
			}
			seen[c.Name] = true
		}
		for _, o := range tb.OrderBy {
			if !seen[o] {
				t.Errorf("%s orders by %s, not a column", tb.Name, o)
			}
		}
		if len(tb.OrderBy) == 0 {
			t.Errorf("%s has no order", tb.Name)
		}
	}
	if got := fmt.Sprint(export.Int64, export.Float64, export.String); got != "int64 float64 string" {
		t.Errorf("Type.String: %q", got)
	}
}
