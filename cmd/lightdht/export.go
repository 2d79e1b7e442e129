package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/lightdht/lightdht/db"
	"github.com/lightdht/lightdht/export"
)

// exportSummary is export's output: what it wrote of each table.
type exportSummary struct {
	DB     string          `json:"db"`
	Crawl  int64           `json:"crawl,omitempty"`
	Format string          `json:"format"`
	Files  []export.Result `json:"files"`
}

func exportCmd(c *cli) func(context.Context, []string) error {
	c.addJSON()
	dbPath := c.addDB()
	out := c.fs.String("out", "", "the `folder` to write one file per table into, created if missing (required)")
	crawl := c.fs.Int64("crawl", 0, "export one crawl (crawl_runs.id): its run, visits and neighbours, the nodes they name, and the code tables (0: the whole history)")
	format := c.fs.String("format", "parquet", "file format: parquet or csv")
	tables := c.fs.String("tables", "", "comma-separated tables to export (default: every table of the export)")
	force := c.fs.Bool("force", false, "replace files of the same names in --out (default: refuse, writing nothing)")
	return func(ctx context.Context, args []string) error {
		if err := nargs(args, 0, 0, "no arguments"); err != nil {
			return err
		}
		if *out == "" {
			return usagef("export needs --out DIR, the folder to write the files into")
		}
		if *crawl < 0 {
			return usagef("--crawl must not be negative")
		}
		f, err := export.ParseFormat(*format)
		if err != nil {
			return usagef("bad --format %q: want parquet or csv", *format)
		}
		var names []string
		for _, n := range strings.Split(*tables, ",") {
			if n = strings.TrimSpace(n); n != "" {
				names = append(names, n)
			}
		}
		// A database URL names no file; the store reports what is wrong
		// with it.
		if err := needDB(*dbPath, ""); err != nil {
			return err
		}
		q, err := db.OpenReadOnly(*dbPath)
		if err != nil {
			return err
		}
		defer q.Close()
		res, err := export.Export(ctx, q, *out, export.Options{Format: f, Crawl: *crawl, Tables: names, Overwrite: *force})
		switch {
		case errors.Is(err, export.ErrUnknownTable):
			return usagef("%s", strings.TrimPrefix(err.Error(), "export: "))
		case errors.Is(err, export.ErrNoCrawl):
			return fmt.Errorf("%w (lightdht stats --db %s shows the runs)", err, db.Redact(*dbPath))
		case errors.Is(err, export.ErrExists):
			return fmt.Errorf("%w (--force replaces the files)", err)
		case err != nil:
			return err
		}
		sum := exportSummary{DB: db.Redact(*dbPath), Crawl: *crawl, Format: string(f), Files: res}
		return c.output(sum, func(w io.Writer) { printExport(w, res) })
	}
}

// printExport prints a line per file: the table and the file left
// aligned, the counts right aligned.
func printExport(w io.Writer, res []export.Result) {
	tw, rw, bw := len("table"), len("rows"), len("bytes")
	for _, r := range res {
		tw = max(tw, len(r.Table))
		rw = max(rw, len(strconv.FormatInt(r.Rows, 10)))
		bw = max(bw, len(strconv.FormatInt(r.Bytes, 10)))
	}
	fmt.Fprintf(w, "%-*s  %*s  %*s  %s\n", tw, "table", rw, "rows", bw, "bytes", "file")
	for _, r := range res {
		fmt.Fprintf(w, "%-*s  %*d  %*d  %s\n", tw, r.Table, rw, r.Rows, bw, r.Bytes, r.File)
	}
}
