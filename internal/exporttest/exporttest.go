package exporttest

import (
	"encoding/csv"
	"io"
	"os"
	"strconv"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/lightdht/lightdht/export"
)

// ReadParquet reads every row of a Parquet file back, each value nil,
// int64, float64 or string, with the file's column names, and checks the
// physical type and repetition of each column against the declaration.
func ReadParquet(t testing.TB, path string, tb export.Table) (cols []string, rows [][]any, rowGroups int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	fields := pf.Schema().Fields()
	if len(fields) != len(tb.Columns) {
		t.Fatalf("%s: %d columns, declared %d", path, len(fields), len(tb.Columns))
	}
	for i, fl := range fields {
		c := tb.Columns[i]
		cols = append(cols, fl.Name())
		kind := map[export.Type]parquet.Kind{export.Int64: parquet.Int64, export.Float64: parquet.Double, export.String: parquet.ByteArray}[c.Type]
		if fl.Type().Kind() != kind || fl.Optional() != c.Nullable || fl.Repeated() {
			t.Errorf("%s column %s: %v optional=%v, declared %v nullable=%v", path, fl.Name(), fl.Type(), fl.Optional(), c.Type, c.Nullable)
		}
		if c.Type == export.String && fl.Type().LogicalType().String() != "STRING" {
			t.Errorf("%s column %s: no STRING logical type", path, fl.Name())
		}
	}
	rd := parquet.NewReader(pf)
	defer rd.Close()
	buf := make([]parquet.Row, 3)
	for {
		n, err := rd.ReadRows(buf)
		for _, r := range buf[:n] {
			vals := make([]any, len(r))
			for _, v := range r {
				i := v.Column()
				switch {
				case v.IsNull():
				case tb.Columns[i].Type == export.Int64:
					vals[i] = v.Int64()
				case tb.Columns[i].Type == export.Float64:
					vals[i] = v.Double()
				default:
					vals[i] = string(v.ByteArray())
				}
			}
			rows = append(rows, vals)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	return cols, rows, len(pf.RowGroups())
}

// ReadCSV reads a CSV file back, converting each field to the declared
// type of its column; an empty field is nil.
func ReadCSV(t testing.TB, path string, tb export.Table) (cols []string, rows [][]any) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if len(recs) == 0 {
		t.Fatalf("%s: no header", path)
	}
	for _, rec := range recs[1:] {
		vals := make([]any, len(rec))
		for i, s := range rec {
			var err error
			switch {
			case s == "":
			case tb.Columns[i].Type == export.Int64:
				vals[i], err = strconv.ParseInt(s, 10, 64)
			case tb.Columns[i].Type == export.Float64:
				vals[i], err = strconv.ParseFloat(s, 64)
			default:
				vals[i] = s
			}
			if err != nil {
				t.Fatalf("%s: column %s: %v", path, tb.Columns[i].Name, err)
			}
		}
		rows = append(rows, vals)
	}
	return recs[0], rows
}
