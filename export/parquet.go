package export

import (
	"io"
	"reflect"
	"strconv"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
	"github.com/parquet-go/parquet-go/encoding"
)

// schemaOf is the Parquet schema of t: a flat group of its columns in
// the declared order. (parquet.Group would sort them by name.)
func schemaOf(t Table) *parquet.Schema {
	g := make(group, len(t.Columns))
	for i, c := range t.Columns {
		var n parquet.Node
		switch c.Type {
		case Int64:
			n = parquet.Leaf(parquet.Int64Type)
		case Float64:
			n = parquet.Leaf(parquet.DoubleType)
		default:
			n = parquet.String()
		}
		if c.Nullable {
			n = parquet.Optional(n)
		}
		g[i] = &field{Node: n, name: c.Name}
	}
	return parquet.NewSchema(t.Name, g)
}

// group is a Parquet group whose fields keep the order given.
type group []parquet.Field

func (g group) ID() int                            { return 0 }
func (g group) String() string                     { return parquet.NewSchema("", g).String() }
func (g group) Type() parquet.Type                 { return parquet.Group{}.Type() }
func (g group) Optional() bool                     { return false }
func (g group) Repeated() bool                     { return false }
func (g group) Required() bool                     { return true }
func (g group) Leaf() bool                         { return false }
func (g group) Fields() []parquet.Field            { return g }
func (g group) Encoding() encoding.Encoding        { return nil }
func (g group) Compression() compress.Codec        { return nil }
func (g group) GoType() reflect.Type               { return reflect.TypeFor[map[string]any]() }
func (f *field) Name() string                      { return f.name }
func (f *field) Value(reflect.Value) reflect.Value { return reflect.Value{} }

// field is a named column of a group. Rows are written as parquet.Row
// values, never from Go structs, so Value is never asked for.
type field struct {
	parquet.Node
	name string
}

// batchRows is how many rows parquetWriter hands the library at a time:
// enough to spread the cost of a call, few enough to hold no memory.
const batchRows = 256

// parquetWriter writes a table as Parquet, in row groups of at most
// Options.RowGroupRows rows.
type parquetWriter struct {
	t     Table
	w     *parquet.Writer
	batch []parquet.Row
	n     int
}

func newParquetWriter(out io.Writer, t Table, opts Options) *parquetWriter {
	w := parquet.NewWriter(out, schemaOf(t),
		parquet.MaxRowsPerRowGroup(int64(opts.RowGroupRows)),
		parquet.Compression(&parquet.Snappy),
		parquet.CreatedBy("lightdht export", "", ""))
	w.SetKeyValueMetadata("lightdht.table", t.Name)
	if opts.Crawl > 0 {
		w.SetKeyValueMetadata("lightdht.crawl", strconv.FormatInt(opts.Crawl, 10))
	}
	batch := make([]parquet.Row, batchRows)
	for i := range batch {
		batch[i] = make(parquet.Row, len(t.Columns))
	}
	return &parquetWriter{t: t, w: w, batch: batch}
}

func (w *parquetWriter) write(row []cell) error {
	out := w.batch[w.n]
	for i, c := range w.t.Columns {
		var v parquet.Value
		switch {
		case row[i].null(c.Type):
			out[i] = parquet.NullValue().Level(0, 0, i)
			continue
		case c.Type == Int64:
			v = parquet.Int64Value(row[i].i.V)
		case c.Type == Float64:
			v = parquet.DoubleValue(row[i].f.V)
		default:
			v = parquet.ByteArrayValue([]byte(row[i].s.V))
		}
		def := 0
		if c.Nullable {
			def = 1
		}
		out[i] = v.Level(0, def, i)
	}
	if w.n++; w.n == len(w.batch) {
		return w.flush()
	}
	return nil
}

// flush hands the batch to the library, which copies the values.
func (w *parquetWriter) flush() error {
	_, err := w.w.WriteRows(w.batch[:w.n])
	w.n = 0
	return err
}

func (w *parquetWriter) close() error {
	if err := w.flush(); err != nil {
		return err
	}
	return w.w.Close()
}
