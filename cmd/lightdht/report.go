package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/lightdht/lightdht/db"
	"github.com/lightdht/lightdht/report"
)

func reportCmd(c *cli) func(context.Context, []string) error {
	dbPath := c.addDB()
	crawl := c.fs.Int64("crawl", 0, "the crawl (crawl_runs.id) the first part is about (0: the latest crawl with visits)")
	out := c.fs.String("out", "report.html", "the HTML file to write (- for standard output)")
	return func(ctx context.Context, args []string) error {
		if err := nargs(args, 0, 0, "no arguments"); err != nil {
			return err
		}
		if *crawl < 0 {
			return usagef("--crawl must not be negative")
		}
		if err := needDB(*dbPath, ""); err != nil {
			return err
		}
		q, err := db.OpenReadOnly(*dbPath)
		if err != nil {
			return err
		}
		defer q.Close()
		opts := report.Options{Crawl: *crawl, Source: *dbPath}
		if *out == "-" {
			return report.Write(ctx, q, c.stdout, opts)
		}
		// Written beside the target and renamed, so that a failed report
		// leaves no half page behind.
		tmp, err := os.CreateTemp(filepath.Dir(*out), ".report-*.html")
		if err != nil {
			return err
		}
		defer os.Remove(tmp.Name())
		if err := report.Write(ctx, q, tmp, opts); err != nil {
			tmp.Close()
			switch {
			case errors.Is(err, report.ErrNoCrawl) && *crawl != 0:
				return fmt.Errorf("%w (lightdht stats --db %s shows the runs)", err, *dbPath)
			case errors.Is(err, report.ErrNoCrawl):
				return fmt.Errorf("%w: crawl into the file first (lightdht crawl --db %s)", err, *dbPath)
			}
			return err
		}
		// A report is for sharing: readable by all, like a file the
		// shell creates.
		if err := tmp.Chmod(0o644); err != nil {
			tmp.Close()
			return err
		}
		if err := tmp.Close(); err != nil {
			return err
		}
		if err := os.Rename(tmp.Name(), *out); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "report written to %s\n", *out)
		return nil
	}
}
