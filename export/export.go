package export

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Format is a file format Export writes.
type Format string

// The formats.
const (
	Parquet Format = "parquet"
	CSV     Format = "csv"
)

// ParseFormat returns the format called s ("parquet" or "csv").
func ParseFormat(s string) (Format, error) {
	switch f := Format(strings.ToLower(s)); f {
	case Parquet, CSV:
		return f, nil
	}
	return "", fmt.Errorf("export: unknown format %q: want parquet or csv", s)
}

// DefaultRowGroupRows is the default of Options.RowGroupRows: large
// enough that readers skip and compress well, small enough that a row
// group of the widest table stays within a few tens of megabytes.
const DefaultRowGroupRows = 1 << 18

// Options says what Export writes.
type Options struct {
	// Format is the files' format. Empty: Parquet.
	Format Format
	// Crawl, if above zero, exports that crawl (crawl_runs.id) only: the
	// tables for which Table.InCrawl is true, each cut to the crawl's
	// rows. Zero: the whole history.
	Crawl int64
	// Tables names the tables to write, in any order. Empty: every table
	// of the export (Tables, or those in a crawl export).
	Tables []string
	// Overwrite lets Export replace files that exist. Default: it
	// refuses, before writing anything.
	Overwrite bool
	// RowGroupRows bounds the rows of a Parquet row group, and so the
	// memory the writer holds. Zero: DefaultRowGroupRows.
	RowGroupRows int
}

// Result is what Export wrote of one table.
type Result struct {
	Table string `json:"table"`
	Rows  int64  `json:"rows"`
	File  string `json:"file"`
	Bytes int64  `json:"bytes"`
}

// Errors callers test with errors.Is.
var (
	// ErrUnknownTable: a name in Options.Tables is not an exported table,
	// or not one a crawl export writes.
	ErrUnknownTable = errors.New("export: unknown table")
	// ErrNoCrawl: Options.Crawl names no crawl_runs row.
	ErrNoCrawl = errors.New("export: no such crawl")
	// ErrExists: an output file exists and Options.Overwrite is false.
	ErrExists = errors.New("export: file exists")
)

// SchemaError says how a table of the database differs from its
// declaration (Tables): the export stops rather than write a file with a
// column missing or mistyped.
type SchemaError struct {
	Table  string
	Column string // "" when the table itself is missing
	Msg    string
}

func (e *SchemaError) Error() string {
	if e.Column == "" {
		return fmt.Sprintf("export: table %s: %s", e.Table, e.Msg)
	}
	return fmt.Sprintf("export: table %s, column %s: %s", e.Table, e.Column, e.Msg)
}

// Export writes the tables opts selects from q into the folder dir,
// creating it if needed, one file per table named after it (nodes.parquet,
// nodes.csv), and returns what it wrote, in the order of Tables. q is a
// read-only connection to a lightdht database (db.OpenReadOnly); every
// table is read in one read-only transaction, so the files are
// consistent with each other. It checks every selected table against its
// declaration, and that the files can be written, before it writes any.
func Export(ctx context.Context, q *sql.DB, dir string, opts Options) ([]Result, error) {
	if opts.Format == "" {
		opts.Format = Parquet
	}
	if _, err := ParseFormat(string(opts.Format)); err != nil {
		return nil, err
	}
	if opts.Crawl < 0 {
		return nil, fmt.Errorf("%w: crawl %d", ErrNoCrawl, opts.Crawl)
	}
	if opts.RowGroupRows <= 0 {
		opts.RowGroupRows = DefaultRowGroupRows
	}
	sel, err := selectTables(opts)
	if err != nil {
		return nil, err
	}
	tx, err := q.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	defer tx.Rollback()
	if opts.Crawl > 0 {
		var n int64
		if err := tx.QueryRowContext(ctx, fmt.Sprintf(`SELECT count(*) FROM "crawl_runs" WHERE "id" = %d`, opts.Crawl)).Scan(&n); err != nil {
			return nil, fmt.Errorf("export: crawl %d: %w", opts.Crawl, err)
		}
		if n == 0 {
			return nil, fmt.Errorf("%w: crawl %d is not in crawl_runs", ErrNoCrawl, opts.Crawl)
		}
	}
	for _, t := range sel {
		if err := checkSchema(ctx, tx, t); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	if !opts.Overwrite {
		for _, t := range sel {
			p := filepath.Join(dir, t.Name+"."+string(opts.Format))
			if _, err := os.Lstat(p); err == nil {
				return nil, fmt.Errorf("%w: %s", ErrExists, p)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("export: %w", err)
			}
		}
	}
	var res []Result
	for _, t := range sel {
		r, err := writeFile(ctx, tx, dir, t, opts)
		if err != nil {
			return res, err
		}
		res = append(res, r)
	}
	return res, nil
}

// selectTables returns the declared tables opts names, in export order.
func selectTables(opts Options) ([]Table, error) {
	for _, name := range opts.Tables {
		t, ok := lookup(name)
		if !ok {
			names := make([]string, len(tables))
			for i, t := range tables {
				names[i] = t.Name
			}
			return nil, fmt.Errorf("%w %q: the tables are %s", ErrUnknownTable, name, strings.Join(names, ", "))
		}
		if opts.Crawl > 0 && !t.InCrawl() {
			var names []string
			for _, t := range tables {
				if t.InCrawl() {
					names = append(names, t.Name)
				}
			}
			return nil, fmt.Errorf("%w %q in a crawl export: a crawl's tables are %s", ErrUnknownTable, name, strings.Join(names, ", "))
		}
	}
	var sel []Table
	for _, t := range tables {
		if len(opts.Tables) > 0 && !slices.Contains(opts.Tables, t.Name) {
			continue
		}
		if opts.Crawl > 0 && !t.InCrawl() {
			continue
		}
		sel = append(sel, t)
	}
	return sel, nil
}

// checkSchema compares the columns the database has for t, by name and
// declared type, with t's declaration. A query of no rows gives both
// without reading the table, in SQLite and PostgreSQL alike.
func checkSchema(ctx context.Context, tx *sql.Tx, t Table) error {
	rows, err := tx.QueryContext(ctx, "SELECT * FROM "+quote(t.Name)+" WHERE 1 = 0")
	if err != nil {
		return &SchemaError{Table: t.Name, Msg: fmt.Sprintf("cannot read it (%v); is the database older than schema version %d?", err, schemaVersion)}
	}
	defer rows.Close()
	types, err := rows.ColumnTypes()
	if err != nil {
		return fmt.Errorf("export: table %s: %w", t.Name, err)
	}
	seen := map[string]bool{}
	for _, ct := range types {
		name := strings.ToLower(ct.Name())
		seen[name] = true
		c, ok := t.column(name)
		if !ok {
			return &SchemaError{Table: t.Name, Column: name, Msg: "in the database but not declared for the export (a new migration? declare it in package export)"}
		}
		if db := ct.DatabaseTypeName(); !c.Type.accepts(db) {
			return &SchemaError{Table: t.Name, Column: name, Msg: fmt.Sprintf("declared %s, the database has type %q", c.Type, db)}
		}
	}
	for _, c := range t.Columns {
		if !seen[c.Name] {
			return &SchemaError{Table: t.Name, Column: c.Name,
				Msg: fmt.Sprintf("declared for the export but not in the database (is the database older than schema version %d?)", schemaVersion)}
		}
	}
	return rows.Err()
}

// writeFile writes t to its file in dir, through a temporary file renamed
// once complete.
func writeFile(ctx context.Context, tx *sql.Tx, dir string, t Table, opts Options) (Result, error) {
	path := filepath.Join(dir, t.Name+"."+string(opts.Format))
	f, err := os.CreateTemp(dir, "."+t.Name+"-*."+string(opts.Format))
	if err != nil {
		return Result{}, fmt.Errorf("export: %w", err)
	}
	defer os.Remove(f.Name()) // after the rename, a no-op
	var w rowWriter
	switch opts.Format {
	case CSV:
		w = newCSVWriter(f, t)
	default:
		w = newParquetWriter(f, t, opts)
	}
	n, err := stream(ctx, tx, t, opts.Crawl, w)
	if err == nil {
		err = w.close()
	}
	if err == nil {
		// Readable by all, like a file the shell creates: exports are
		// for sharing.
		err = f.Chmod(0o644)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	var se *SchemaError
	switch {
	case errors.As(err, &se):
		return Result{}, err
	case err != nil:
		return Result{}, fmt.Errorf("export: table %s: %w", t.Name, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return Result{}, fmt.Errorf("export: %w", err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return Result{}, fmt.Errorf("export: %w", err)
	}
	return Result{Table: t.Name, Rows: n, File: path, Bytes: st.Size()}, nil
}

// cell holds one value of a row as scanned; the column's type says which
// field is in use.
type cell struct {
	i sql.Null[int64]
	f sql.Null[float64]
	s sql.Null[string]
}

// null reports whether the cell, of a column of type typ, is NULL.
func (c *cell) null(typ Type) bool {
	switch typ {
	case Int64:
		return !c.i.Valid
	case Float64:
		return !c.f.Valid
	}
	return !c.s.Valid
}

// rowWriter is a file format: it takes rows one at a time, the cells in
// the table's column order, and may keep them until close.
type rowWriter interface {
	write(row []cell) error
	close() error
}

// stream reads t's rows in order, one at a time, into w, and returns how
// many it wrote.
func stream(ctx context.Context, tx *sql.Tx, t Table, crawl int64, w rowWriter) (int64, error) {
	rows, err := tx.QueryContext(ctx, t.query(crawl))
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	row := make([]cell, len(t.Columns))
	dest := make([]any, len(t.Columns))
	for i, c := range t.Columns {
		switch c.Type {
		case Int64:
			dest[i] = &row[i].i
		case Float64:
			dest[i] = &row[i].f
		default:
			dest[i] = &row[i].s
		}
	}
	var n int64
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return n, fmt.Errorf("row %d: %w", n+1, err)
		}
		for i, c := range t.Columns {
			if !c.Nullable && row[i].null(c.Type) {
				return n, &SchemaError{Table: t.Name, Column: c.Name,
					Msg: fmt.Sprintf("NULL in row %d, but the column is declared NOT NULL", n+1)}
			}
		}
		if err := w.write(row); err != nil {
			return n, err
		}
		n++
	}
	return n, rows.Err()
}
