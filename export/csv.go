package export

import (
	"bufio"
	"encoding/csv"
	"io"
	"strconv"
)

// csvWriter writes a table as CSV: a header of column names, then a
// record per row, NULL as an empty field.
type csvWriter struct {
	t      Table
	buf    *bufio.Writer
	w      *csv.Writer
	record []string
	header bool
}

func newCSVWriter(out io.Writer, t Table) *csvWriter {
	buf := bufio.NewWriterSize(out, 1<<16)
	return &csvWriter{t: t, buf: buf, w: csv.NewWriter(buf), record: make([]string, len(t.Columns))}
}

// writeHeader writes the header once, so that an empty table still
// names its columns.
func (w *csvWriter) writeHeader() error {
	if w.header {
		return nil
	}
	w.header = true
	names := make([]string, len(w.t.Columns))
	for i, c := range w.t.Columns {
		names[i] = c.Name
	}
	return w.w.Write(names)
}

func (w *csvWriter) write(row []cell) error {
	if err := w.writeHeader(); err != nil {
		return err
	}
	for i, c := range w.t.Columns {
		w.record[i] = ""
		switch {
		case row[i].null(c.Type):
		case c.Type == Int64:
			w.record[i] = strconv.FormatInt(row[i].i.V, 10)
		case c.Type == Float64:
			// The shortest form that reads back as the same float64.
			w.record[i] = strconv.FormatFloat(row[i].f.V, 'g', -1, 64)
		default:
			w.record[i] = row[i].s.V
		}
	}
	return w.w.Write(w.record)
}

func (w *csvWriter) close() error {
	if err := w.writeHeader(); err != nil {
		return err
	}
	w.w.Flush()
	if err := w.w.Error(); err != nil {
		return err
	}
	return w.buf.Flush()
}
