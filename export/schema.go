package export

import (
	"fmt"
	"slices"
	"strings"
)

// Type is the type of an exported column: what a reader gets, whichever
// store the rows came from.
type Type uint8

// The column types. Booleans are Int64 0/1 and times Int64 Unix
// milliseconds, as in the database.
const (
	Int64   Type = iota + 1 // Parquet INT64; SQLite INTEGER, PostgreSQL bigint
	Float64                 // Parquet DOUBLE; SQLite REAL, PostgreSQL double precision
	String                  // Parquet BYTE_ARRAY (STRING); SQLite and PostgreSQL TEXT
)

func (t Type) String() string {
	switch t {
	case Int64:
		return "int64"
	case Float64:
		return "float64"
	case String:
		return "string"
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

// accepts reports whether a database column whose driver reports the
// type name dbType may be exported as t without loss. SQLite reports the
// declared type; PostgreSQL (pgx) its type's name in upper case.
func (t Type) accepts(dbType string) bool {
	switch strings.ToUpper(dbType) {
	case "INTEGER", "BIGINT", "INT8", "INT4", "INT2", "INT", "SMALLINT":
		return t == Int64
	case "REAL", "DOUBLE PRECISION", "FLOAT8", "FLOAT4", "DOUBLE":
		return t == Float64
	case "TEXT", "VARCHAR":
		return t == String
	}
	return false
}

// Column is one exported column.
type Column struct {
	Name     string
	Type     Type
	Nullable bool // NULL allowed: an OPTIONAL Parquet column
}

// Table is one exported table: its columns in the order the files have
// them, and the columns its rows are ordered by.
type Table struct {
	Name    string
	Columns []Column
	// OrderBy are the columns that order the rows: the primary key, or
	// every column for a table without one (visits, samples), so that the
	// order is total and two exports are equal.
	OrderBy []string
	// crawl is the WHERE clause that keeps one crawl's rows, with %[1]d
	// for the crawl's id; "" for the tables a crawl export leaves out,
	// "-" for those it takes whole.
	crawl string
}

// InCrawl reports whether a crawl export (Options.Crawl) writes the
// table.
func (t Table) InCrawl() bool { return t.crawl != "" }

func i64(name string) Column  { return Column{Name: name, Type: Int64} }
func i64n(name string) Column { return Column{Name: name, Type: Int64, Nullable: true} }
func f64n(name string) Column { return Column{Name: name, Type: Float64, Nullable: true} }
func str(name string) Column  { return Column{Name: name, Type: String} }
func strn(name string) Column { return Column{Name: name, Type: String, Nullable: true} }

// crawlNodes selects the refs of the nodes a crawl's visits and
// neighbours name.
const crawlNodes = `SELECT "node" FROM "visits" WHERE "crawl" = %[1]d
	UNION SELECT "node" FROM "neighbours" WHERE "crawl" = %[1]d
	UNION SELECT "neighbour" FROM "neighbours" WHERE "crawl" = %[1]d`

// schemaVersion is the SQLite schema version (db.SchemaVersion) that
// tables declares; a database older than it lacks some of its columns.
const schemaVersion = 7

// tables is the declared schema of every exported table, in export
// order, as of schemaVersion (db/migrations). address_nodes and
// schema_migrations are the store's own bookkeeping and are not
// exported.
var tables = []Table{
	{Name: "crawl_runs", OrderBy: []string{"id"}, crawl: `"id" = %[1]d`, Columns: []Column{
		i64("id"), i64("started"), i64n("ended"), strn("config"), strn("program_version"), strn("bootstrap"),
		i64n("nodes_found"), i64n("nodes_replied"), i64n("infohashes"), i64n("queries_sent"), i64n("sightings_shed"),
		f64n("size_estimate"), str("kind"), strn("vantage"), strn("host"), i64("visits"), i64("neighbours"),
		i64n("visits_replied"), i64n("visits_error"), i64n("visits_timeout"), i64n("visits_not_queried"),
	}},
	{Name: "nodes", OrderBy: []string{"ref"}, crawl: `"ref" IN (` + crawlNodes + `)`, Columns: []Column{
		i64("ref"), str("id"), str("ip"), i64("port"), i64("first_seen"), i64("last_seen"), i64("times_seen"),
		str("first_source"), i64n("last_reply"), i64("replies"), i64("timeouts"), i64("queries_sent"),
		i64("queries_received"), f64n("last_rtt_ms"), strn("version"), i64n("version_seen"), i64("bep42_valid"),
		i64("read_only"),
	}},
	{Name: "visits", crawl: `"crawl" = %[1]d`, Columns: []Column{
		i64n("crawl"), i64("node"), i64("time"), i64("outcome"), i64n("error_code"), i64n("skipped"), i64("queries"),
		i64n("rtt_us"), i64n("version"), i64("read_only"), i64("bep51"), i64n("num"), i64n("interval_s"),
		i64("id_changed"), i64("addr_changed"), i64n("vantage"), i64n("discounted"),
	}},
	{Name: "sessions", OrderBy: []string{"id"}, Columns: []Column{
		i64("id"), i64("node"), i64("started"), i64("last_answered"), i64("visits"), i64("failed"),
		i64("failed_streak"), i64n("failed_since"), str("state"), i64n("closed"), strn("close_reason"),
	}},
	{Name: "neighbours", OrderBy: []string{"crawl", "node", "neighbour"}, crawl: `"crawl" = %[1]d`, Columns: []Column{
		i64("crawl"), i64("node"), i64("neighbour"),
	}},
	{Name: "versions", OrderBy: []string{"ref"}, crawl: `"ref" IN (SELECT "version" FROM "visits" WHERE "crawl" = %[1]d)`, Columns: []Column{
		i64("ref"), str("version"),
	}},
	{Name: "vantages", OrderBy: []string{"ref"}, crawl: `"ref" IN (SELECT "vantage" FROM "visits" WHERE "crawl" = %[1]d)`, Columns: []Column{
		i64("ref"), str("host"), str("address"),
	}},
	{Name: "visit_outcomes", OrderBy: []string{"outcome"}, crawl: "-", Columns: []Column{
		i64("outcome"), str("name"),
	}},
	{Name: "visit_skips", OrderBy: []string{"skipped"}, crawl: "-", Columns: []Column{
		i64("skipped"), str("name"),
	}},
	{Name: "visit_discounts", OrderBy: []string{"discounted"}, crawl: "-", Columns: []Column{
		i64("discounted"), str("name"),
	}},
	{Name: "reports", OrderBy: []string{"reporter_id", "reporter_ip", "reporter_port", "reported_id", "reported_ip", "reported_port"}, Columns: []Column{
		str("reporter_id"), str("reporter_ip"), i64("reporter_port"), str("reported_id"), str("reported_ip"),
		i64("reported_port"), i64("first_seen"), i64("last_seen"), i64("count"),
	}},
	{Name: "infohashes", OrderBy: []string{"infohash"}, Columns: []Column{
		str("infohash"), i64("first_seen"), i64("last_seen"), i64("via_sample"), i64("via_get_peers"), i64("via_announce"),
	}},
	{Name: "peers", OrderBy: []string{"infohash", "ip", "port"}, Columns: []Column{
		str("infohash"), str("ip"), i64("port"), i64("first_seen"), i64("last_seen"), str("source"), i64("count"),
	}},
	{Name: "samples", Columns: []Column{
		str("node_id"), str("ip"), i64("port"), i64("time"), i64("num"), i64("interval_s"), i64("samples_count"),
	}},
	{Name: "items", OrderBy: []string{"target"}, Columns: []Column{
		str("target"), i64("mutable"), i64n("seq"), i64("first_seen"), i64("last_seen"), i64("puts"), i64("gets"),
		i64n("last_put"), strn("last_putter_id"), strn("last_putter_ip"), i64n("last_putter_port"),
	}},
	{Name: "ip_info", OrderBy: []string{"ip"}, crawl: `"ip" IN (SELECT "ip" FROM "nodes" WHERE "ref" IN (` + crawlNodes + `))`, Columns: []Column{
		str("ip"), strn("country"), i64n("asn"), strn("org"), i64("looked_up"),
	}},
}

func init() {
	// A table without a key is ordered by all its columns.
	for i := range tables {
		if tables[i].OrderBy == nil {
			for _, c := range tables[i].Columns {
				tables[i].OrderBy = append(tables[i].OrderBy, c.Name)
			}
		}
	}
}

// Tables returns the declared schema of every exported table, in the
// order Export writes them. The result is a copy.
func Tables() []Table {
	out := make([]Table, len(tables))
	for i, t := range tables {
		t.Columns = slices.Clone(t.Columns)
		t.OrderBy = slices.Clone(t.OrderBy)
		out[i] = t
	}
	return out
}

// lookup returns the table called name.
func lookup(name string) (Table, bool) {
	for _, t := range tables {
		if t.Name == name {
			return t, true
		}
	}
	return Table{}, false
}

// column returns the column called name.
func (t Table) column(name string) (Column, bool) {
	for _, c := range t.Columns {
		if c.Name == name {
			return c, true
		}
	}
	return Column{}, false
}

// query is the SELECT that reads the table's rows in order; crawl > 0
// keeps that crawl's.
func (t Table) query(crawl int64) string {
	var b strings.Builder
	b.WriteString("SELECT ")
	for i, c := range t.Columns {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(quote(c.Name))
	}
	b.WriteString(" FROM ")
	b.WriteString(quote(t.Name))
	if crawl > 0 && t.crawl != "-" {
		fmt.Fprintf(&b, " WHERE "+t.crawl, crawl)
	}
	b.WriteString(" ORDER BY ")
	for i, name := range t.OrderBy {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(quote(name))
		// SQLite puts NULLs first and PostgreSQL last unless told.
		if c, _ := t.column(name); c.Nullable {
			b.WriteString(" NULLS FIRST")
		}
	}
	return b.String()
}

// quote makes name an SQL identifier, so that column names such as
// time or count never read as keywords.
func quote(name string) string { return `"` + name + `"` }
