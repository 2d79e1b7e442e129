package main

import (
	"database/sql"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lightdht/lightdht/internal/pgtest"
)

// answeredIn reports whether test node n answered in run.
func answeredIn(t *testing.T, d *sql.DB, run int64, id, addr string) bool {
	t.Helper()
	ap := netip.MustParseAddrPort(addr)
	return scalar[int](t, d, `SELECT count(*) FROM visit_details WHERE crawl = $1 AND id = $2 AND ip = $3 AND port = $4
		AND outcome IN ('replied', 'error')`, run, id, ap.Addr().String(), ap.Port()) > 0
}

// TestCrawlHistory crawls two test networks together (12 and 8 nodes),
// stops the second, and crawls again: crawl_churn and crawl_node_classes
// report the stopped network's nodes as left and the other's as stayed,
// node by node. A single-pass revisit then finds the stopped nodes down
// and closes their sessions, and extends the others'. It runs on a
// SQLite file and on a PostgreSQL database: crawl, revisit, report and
// stats work on either.
func TestCrawlHistory(t *testing.T) {
	t.Parallel()
	t.Run("sqlite", func(t *testing.T) {
		crawlHistory(t, filepath.Join(t.TempDir(), "history.db"), "127.23.0.1", "127.24.0.1")
	})
	t.Run("postgres", func(t *testing.T) { crawlHistory(t, pgtest.Database(t), "127.23.1.1", "127.24.1.1") })
}

func crawlHistory(t *testing.T, path, ipA, ipB string) {
	a := startTestnet(t, 12, ipA)
	b, stopB := startStoppableTestnet(t, 8, ipB)
	boot := a.Bootstrap + "," + b.Bootstrap
	crawl := func() crawlSummary {
		return decode[crawlSummary](t, ok(t, nil, "crawl", "--testnet", "--bootstrap", boot, "--db", path, "--json",
			"--idle", queryWait.String()))
	}
	s1 := crawl()
	stopB()
	s2 := crawl()
	if s1.Run != 1 || s2.Run != 2 {
		t.Fatalf("runs %d and %d, want 1 and 2", s1.Run, s2.Run)
	}
	d := openDB(t, path)

	// The crawler can miss a node that few tables hold (see
	// TestCrawlTestnet): the classes are checked node by node against
	// what each crawl's visits say, and the misses are bounded.
	var stayed, entered, left, foundA1, foundB1 int
	want := map[string]string{} // "id addr" -> class in crawl 2
	for _, n := range a.Nodes {
		in1, in2 := answeredIn(t, d, 1, n.ID, n.Addr), answeredIn(t, d, 2, n.ID, n.Addr)
		if in1 {
			foundA1++
		}
		switch {
		case in1 && in2:
			stayed++
			want[n.ID+" "+n.Addr] = "stayed"
		case in2:
			entered++
			want[n.ID+" "+n.Addr] = "entered"
		case in1:
			t.Errorf("node %s of the running network answered in crawl 1 only", n.Addr)
		}
	}
	for _, n := range b.Nodes {
		if answeredIn(t, d, 2, n.ID, n.Addr) {
			t.Errorf("node %s of the stopped network answered in crawl 2", n.Addr)
		}
		if answeredIn(t, d, 1, n.ID, n.Addr) {
			foundB1++
			left++
			want[n.ID+" "+n.Addr] = "left"
		}
	}
	if foundA1 < 11 || foundB1 < 7 || stayed < 10 {
		t.Errorf("crawl 1 found %d of 12 and %d of 8 nodes; %d stayed", foundA1, foundB1, stayed)
	}
	var gotStayed, gotEntered, gotLeft, answering int
	if err := d.QueryRow(`SELECT stayed, entered, "left", answering FROM crawl_churn WHERE crawl = 2`).
		Scan(&gotStayed, &gotEntered, &gotLeft, &answering); err != nil {
		t.Fatal(err)
	}
	if gotStayed != stayed || gotEntered != entered || gotLeft != left || answering != stayed+entered {
		t.Errorf("crawl_churn for crawl 2: stayed %d, entered %d, left %d, answering %d; want %d, %d, %d, %d",
			gotStayed, gotEntered, gotLeft, answering, stayed, entered, left, stayed+entered)
	}
	rows, err := d.Query(`SELECT n.id, n.ip, n.port, c.class FROM crawl_node_classes c JOIN nodes n ON n.ref = c.node
		WHERE c.crawl = 2 AND c.class != 'never_answered'`)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for rows.Next() {
		var id, ip, class string
		var port uint16
		if err := rows.Scan(&id, &ip, &port, &class); err != nil {
			t.Fatal(err)
		}
		got[id+" "+netip.AddrPortFrom(netip.MustParseAddr(ip), port).String()] = class
	}
	rows.Close()
	for k, w := range want {
		if got[k] != w {
			t.Errorf("node %s: class %q in crawl 2, want %q", k, got[k], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("crawl 2 classes %v, want %v", got, want)
	}
	// Both crawls recorded visits, with their vantage.
	if n := scalar[int](t, d, "SELECT count(*) FROM crawl_runs WHERE visits = 1 AND vantage LIKE '127.0.0.1:%' AND ended IS NOT NULL"); n != 2 {
		t.Errorf("%d crawl runs with visits, a loopback vantage and an end, want 2", n)
	}

	// One pass of revisits: the running network's nodes answer, the
	// stopped one's time out. Crawl 2 did not visit the stopped nodes
	// (it never heard of them), so their sessions were still open.
	open := scalar[int](t, d, "SELECT count(*) FROM sessions WHERE state = 'open'")
	rs := decode[revisitSummary](t, ok(t, nil, "revisit", "--testnet", "--db", path, "--rounds", "1",
		"--timeout", "500ms", "--json"))
	if rs.Run != 3 || rs.Nodes != open || rs.Visits != open || rs.Interrupted {
		t.Errorf("revisit summary %+v, want run 3 visiting the %d nodes with open sessions once", rs, open)
	}
	for _, n := range b.Nodes {
		ap := netip.MustParseAddrPort(n.Addr)
		if want[n.ID+" "+n.Addr] != "left" {
			continue
		}
		if st := scalar[string](t, d, `SELECT s.state || ' ' || coalesce(s.close_reason, '') FROM sessions s JOIN nodes n ON n.ref = s.node
			WHERE n.id = $1 AND n.ip = $2 AND n.port = $3 ORDER BY s.id DESC LIMIT 1`, n.ID, ap.Addr().String(), ap.Port()); st != "closed timeout" {
			t.Errorf("stopped node %s: latest session %q after the revisit, want closed by a timeout", n.Addr, st)
		}
	}
	if n := scalar[int](t, d, "SELECT count(*) FROM visits WHERE crawl = 3 AND outcome = 1"); n != stayed+entered {
		t.Errorf("%d answered revisits, want the running network's %d", n, stayed+entered)
	}
	if k := scalar[string](t, d, "SELECT kind FROM crawl_runs WHERE id = 3"); k != "revisit" {
		t.Errorf("run 3 is of kind %q", k)
	}
	// The report of the history: one page with the crawl's figures.
	out := filepath.Join(t.TempDir(), "report.html")
	if got := ok(t, nil, "report", "--db", path, "--out", out); !strings.Contains(got, "report written to "+out) {
		t.Errorf("report said %q", got)
	}
	page, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(page), "<h2>Crawl 2</h2>") || strings.Count(string(page), "<svg") < 5 {
		t.Errorf("the report of the test crawls lacks crawl 2 or its plots (%d bytes)", len(page))
	}
	// stats says the same.
	st := decode[statsResult](t, ok(t, nil, "stats", "--db", path, "--json"))
	if h := st.History; h == nil || h.Visits != scalar[int64](t, d, "SELECT count(*) FROM visits") || h.CrawlsVisited != 3 ||
		h.SessionsOpen != int64(scalar[int](t, d, "SELECT count(*) FROM sessions WHERE state = 'open'")) ||
		st.LastRun == nil || st.LastRun.Kind != "revisit" {
		t.Errorf("stats history %+v, last run %+v", st.History, st.LastRun)
	}
}
