package main

import (
	"database/sql"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lightdht/lightdht/export"
	"github.com/lightdht/lightdht/internal/exporttest"
)

// tableRows reads SELECT * FROM table [WHERE where] in the order the
// export declares, each value nil, int64, float64 or string, converted
// to the declared type of its column.
func tableRows(t *testing.T, d *sql.DB, tb export.Table, where string) (cols []string, out [][]any) {
	t.Helper()
	q := "SELECT * FROM " + tb.Name
	if where != "" {
		q += " WHERE " + where
	}
	rows, err := d.Query(q + " ORDER BY " + strings.Join(tb.OrderBy, ", "))
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	if cols, err = rows.Columns(); err != nil {
		t.Fatal(err)
	}
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
			switch x := v.(type) {
			case []byte:
				vals[i] = string(x)
			case int64:
				if tb.Columns[i].Type == export.Float64 {
					vals[i] = float64(x)
				}
			}
		}
		out = append(out, vals)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return cols, out
}

// In CSV an empty field stands for NULL and for the empty string alike.
func sameRows(t *testing.T, file string, wantCols []string, want [][]any, cols []string, got [][]any) {
	t.Helper()
	if !slices.Equal(cols, wantCols) || len(got) != len(want) {
		t.Errorf("%s: %d rows of %v, the table has %d of %v", file, len(got), cols, len(want), wantCols)
		return
	}
	for r := range got {
		for i := range got[r] {
			g, w := got[r][i], want[r][i]
			if g != w && !(strings.HasSuffix(file, ".csv") && g == nil && w == "") {
				t.Errorf("%s row %d column %s: %#v, the database has %#v", file, r+1, cols[i], g, w)
			}
		}
	}
}

// TestExport crawls a loopback test network twice into a database (with
// neighbours and BEP 51), exports the whole history to Parquet and crawl
// 2 to CSV with the command, and reads every file back: each holds
// exactly its table's rows (crawl 2's, for the crawl export), value for
// value. The printed summary names each file with its rows and size.
func TestExport(t *testing.T) {
	t.Parallel()
	tn := startTestnet(t, 10, "127.60.0.1")
	path := filepath.Join(t.TempDir(), "export.db")
	for range 2 {
		ok(t, nil, "crawl", "--testnet", "--bootstrap", tn.Bootstrap, "--db", path, "--neighbours", "--infohashes",
			"--idle", queryWait.String())
	}
	d := openDB(t, path)
	if n := scalar[int](t, d, "SELECT count(*) FROM visits WHERE crawl = 2 AND outcome = 1"); n < 5 {
		t.Fatalf("crawl 2 has %d answered visits; the test network has 10 nodes", n)
	}

	all := filepath.Join(t.TempDir(), "all")
	sum := decode[exportSummary](t, ok(t, nil, "export", "--db", path, "--out", all, "--json"))
	if len(sum.Files) != len(export.Tables()) || sum.Format != "parquet" {
		t.Fatalf("export summary %+v: want a Parquet file per table (%d)", sum, len(export.Tables()))
	}
	for i, tb := range export.Tables() {
		r := sum.Files[i]
		wantCols, want := tableRows(t, d, tb, "")
		cols, got, _ := exporttest.ReadParquet(t, r.File, tb)
		sameRows(t, r.File, wantCols, want, cols, got)
		if st, err := os.Stat(r.File); r.Table != tb.Name || err != nil || st.Size() != r.Bytes || r.Rows != int64(len(want)) {
			t.Errorf("summary %+v for table %s of %d rows (%v)", r, tb.Name, len(want), err)
		}
	}

	one := filepath.Join(t.TempDir(), "crawl2")
	out := ok(t, nil, "export", "--db", path, "--out", one, "--crawl", "2", "--format", "csv")
	var crawlTables int
	for _, tb := range export.Tables() {
		file := filepath.Join(one, tb.Name+".csv")
		if !tb.InCrawl() {
			if _, err := os.Stat(file); err == nil {
				t.Errorf("%s written by a crawl export", file)
			}
			continue
		}
		crawlTables++
		if !strings.Contains(out, file) {
			t.Errorf("the summary does not name %s:\n%s", file, out)
		}
		cols, got := exporttest.ReadCSV(t, file, tb)
		if tb.Name == "visits" {
			var n int
			for _, v := range got {
				if v[0] != int64(2) {
					t.Errorf("a visit of crawl %v in the export of crawl 2", v[0])
				}
				n++
			}
			if n != scalar[int](t, d, "SELECT count(*) FROM visits WHERE crawl = 2") {
				t.Errorf("%d visits in the export of crawl 2", n)
			}
			wantCols, want := tableRows(t, d, tb, "crawl = 2")
			sameRows(t, file, wantCols, want, cols, got)
		}
		if tb.Name == "neighbours" {
			wantCols, want := tableRows(t, d, tb, "crawl = 2")
			if len(want) == 0 {
				t.Errorf("crawl 2 recorded no neighbours")
			}
			sameRows(t, file, wantCols, want, cols, got)
		}
	}
	if lines := strings.Count(out, "\n"); lines != crawlTables+1 || !strings.HasPrefix(strings.TrimSpace(out), "table") {
		t.Errorf("summary of %d lines for %d tables:\n%s", lines, crawlTables, out)
	}
}

// TestExportErrors: the command's mistakes are one line each, exit 2 for
// usage and 1 for failures, and write nothing.
func TestExportErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "one.db") // one crawl
	tn := startTestnet(t, 3, "127.61.0.1")
	ok(t, nil, "crawl", "--testnet", "--bootstrap", tn.Bootstrap, "--db", path, "--idle", queryWait.String())
	done := filepath.Join(dir, "done")
	ok(t, nil, "export", "--db", path, "--out", done, "--tables", "nodes")
	out := filepath.Join(dir, "out")
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"export", "--db", filepath.Join(dir, "nothing.db"), "--out", out}, 1, "no database at"},
		{[]string{"export", "--db", path}, 2, "export needs --out DIR"},
		{[]string{"export", "--db", path, "--out", out, "--format", "xlsx"}, 2, `bad --format "xlsx": want parquet or csv`},
		{[]string{"export", "--db", path, "--out", out, "--tables", "nodes,vistis"}, 2, `unknown table "vistis": the tables are crawl_runs, nodes`},
		{[]string{"export", "--db", path, "--out", out, "--crawl", "1", "--tables", "peers"}, 2, `"peers" in a crawl export`},
		{[]string{"export", "--db", path, "--out", out, "--crawl", "99"}, 1, "no such crawl: crawl 99 is not in crawl_runs (lightdht stats"},
		{[]string{"export", "--db", path, "--out", out, "--crawl", "-1"}, 2, "--crawl must not be negative"},
		{[]string{"export", "--db", path, "--out", out, "extra"}, 2, "want no arguments"},
		{[]string{"export", "--db", path, "--out", done}, 1, "file exists: " + filepath.Join(done, "nodes.parquet") + " (--force replaces the files)"},
	}
	for _, c := range cases {
		r := exe(t, nil, "", c.args...)
		lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
		if r.code != c.code || !strings.Contains(r.stderr, c.want) || len(lines) != 1 || r.stdout != "" {
			t.Errorf("lightdht %v: exit %d, stderr %q, stdout %q; want exit %d and one line containing %q", c.args, r.code, r.stderr, r.stdout, c.code, c.want)
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("%s created by an export that failed", out)
	}
	if entries, _ := os.ReadDir(done); len(entries) != 1 {
		t.Errorf("the refused export changed %s: %d entries", done, len(entries))
	}
	// --force replaces what is there.
	if s := ok(t, nil, "export", "--db", path, "--out", done, "--force"); !strings.Contains(s, filepath.Join(done, "visits.parquet")) {
		t.Errorf("export --force:\n%s", s)
	}
}
