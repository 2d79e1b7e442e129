package report

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"html/template"
	"io"
	"math"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/stdlib"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// Options configures a report.
type Options struct {
	// Crawl is the crawl_runs.id of the crawl the first part is about.
	// Zero: the latest crawl that recorded visits.
	Crawl int64
	// Source names the database in the page, such as its path.
	Source string
	// Now is the clock for the page's "made at" line. Nil: time.Now.
	Now func() time.Time
}

// ErrNoCrawl is returned when the database holds no crawl with visits
// (a file from before the crawl history, or with no crawl yet), or not
// the one asked for.
var ErrNoCrawl = errors.New("no crawl with visits")

// Write reads the database through q (read-only is enough) and writes
// the report as one HTML page to w.
func Write(ctx context.Context, q *sql.DB, w io.Writer, opts Options) error {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	var version int
	if err := q.QueryRowContext(ctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&version); err != nil {
		return fmt.Errorf("report: read the schema version: %w (is it a lightdht database?)", err)
	}
	// A PostgreSQL database has the history from its first version.
	_, postgres := q.Driver().(*stdlib.Driver)
	if version < 4 && !postgres {
		return fmt.Errorf("report: schema version %d has no crawl history (open the file once with a lightdht of schema 4 or later): %w", version, ErrNoCrawl)
	}
	r := &builder{ctx: ctx, q: q, postgres: postgres}
	crawl := opts.Crawl
	if crawl == 0 {
		if err := q.QueryRowContext(ctx, "SELECT coalesce(max(id), 0) FROM crawl_runs WHERE kind = 'crawl' AND visits = 1").Scan(&crawl); err != nil {
			return fmt.Errorf("report: %w", err)
		}
		if crawl == 0 {
			return fmt.Errorf("report: %w in the database", ErrNoCrawl)
		}
	}
	page := page{Title: fmt.Sprintf("lightdht crawl %d", crawl), Source: opts.Source,
		Made: opts.Now().UTC().Format(time.RFC3339)}
	one, err := r.crawlSection(crawl)
	if err != nil {
		return err
	}
	across, err := r.acrossSection()
	if err != nil {
		return err
	}
	page.Sections = []section{one, across}
	var buf bytes.Buffer
	if err := pageTemplate.Execute(&buf, page); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	_, err = buf.WriteTo(w)
	return err
}

// page, section, figure and table are what the template renders.
type page struct {
	Title, Source, Made string
	Sections            []section
}

type section struct {
	Title, Intro string
	Figures      []figure
}

// figure is one plot, one table, or both side by side, with a title and
// a one-line caption.
type figure struct {
	Title, Caption string
	SVG            template.HTML // empty: no plot
	Table          *table
}

type table struct {
	Head []string
	Rows [][]string
}

// builder runs the queries of one report.
type builder struct {
	ctx      context.Context
	q        *sql.DB
	postgres bool // q is a PostgreSQL database, not a SQLite file
}

// rows runs query and calls scan for every row.
func (b *builder) rows(query string, scan func(*sql.Rows) error, args ...any) error {
	rs, err := b.q.QueryContext(b.ctx, query, args...)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	defer rs.Close()
	for rs.Next() {
		if err := scan(rs); err != nil {
			return fmt.Errorf("report: %w", err)
		}
	}
	if err := rs.Err(); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

// Plot sizes: wide for time series, square-ish for distributions.
const (
	wide   = 7.5 * vg.Inch
	narrow = 5 * vg.Inch
	height = 3.2 * vg.Inch
)

// svg renders p as inline SVG: the XML prolog is cut, so that the
// element can sit in the page.
func svg(p *plot.Plot, w vg.Length) (template.HTML, error) {
	wt, err := p.WriterTo(w, height, "svg")
	if err != nil {
		return "", fmt.Errorf("report: %w", err)
	}
	var buf bytes.Buffer
	if _, err := wt.WriteTo(&buf); err != nil {
		return "", fmt.Errorf("report: %w", err)
	}
	s := buf.String()
	if i := strings.Index(s, "<svg"); i >= 0 {
		s = s[i:]
	}
	return template.HTML(s), nil // drawn by gonum/plot from our own numbers
}

// maxPoints bounds the points of a line: more would not show at the
// page's resolution, and would make the page large.
const maxPoints = 1000

// thin returns at most maxPoints of a line's points, evenly spaced in
// order, the first and the last always among them.
func thin(xy plotter.XYs) plotter.XYs {
	if len(xy) <= maxPoints {
		return xy
	}
	out := make(plotter.XYs, 0, maxPoints)
	for i := range maxPoints - 1 {
		out = append(out, xy[i*(len(xy)-1)/(maxPoints-1)])
	}
	return append(out, xy[len(xy)-1])
}

// newPlot returns a plot with a title and axis labels.
func newPlot(title, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = x
	p.Y.Label.Text = y
	p.Add(plotter.NewGrid())
	return p
}

// bars returns a bar chart figure of values by name.
func bars(title, caption, x, y string, names []string, values []float64, t *table) (figure, error) {
	p := newPlot(title, x, y)
	bc, err := plotter.NewBarChart(plotter.Values(values), vg.Points(14))
	if err != nil {
		return figure{}, fmt.Errorf("report: %s: %w", title, err)
	}
	bc.Color = plotutil.Color(0)
	bc.LineStyle.Width = 0
	p.Add(bc)
	p.NominalX(names...)
	p.X.Tick.Label.Rotation = math.Pi / 5
	p.X.Tick.Label.XAlign, p.X.Tick.Label.YAlign = -1, -0.5
	s, err := svg(p, narrow)
	if err != nil {
		return figure{}, err
	}
	return figure{Title: title, Caption: caption, SVG: s, Table: t}, nil
}

func itoa(v int64) string { return fmt.Sprintf("%d", v) }

func pct(a, b int64) string {
	if b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(a)/float64(b))
}

var pageTemplate = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{{.Title}}</title>
<style>
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
figure { margin: 1.5em 0; display: flex; flex-wrap: wrap; gap: 1.5em; align-items: flex-start; }
figure h3 { flex-basis: 100%; margin: 0; font-size: 1.1em; }
figcaption { flex-basis: 100%; color: #555; font-size: 0.92em; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; }
td:last-child { text-align: right; }
</style></head><body>
<h1>{{.Title}}</h1>
<p>Made {{.Made}} from {{.Source}} by lightdht report.</p>
{{range .Sections}}<section><h2>{{.Title}}</h2><p>{{.Intro}}</p>
{{range .Figures}}<figure><h3>{{.Title}}</h3>{{if .SVG}}<div class="plot">{{.SVG}}</div>{{end}}
{{with .Table}}<table><thead><tr>{{range .Head}}<th>{{.}}</th>{{end}}</tr></thead><tbody>
{{range .Rows}}<tr>{{range .}}<td>{{.}}</td>{{end}}</tr>
{{end}}</tbody></table>{{end}}
<figcaption>{{.Caption}}</figcaption></figure>
{{end}}</section>
{{end}}</body></html>
`))
