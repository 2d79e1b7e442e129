package report

import (
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"

	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
)

// acrossSection is the part over every crawl with visits.
func (b *builder) acrossSection() (section, error) {
	sec := section{Title: "Across crawls",
		Intro: "Every crawl that recorded visits, and the sessions measured by crawls and revisits."}
	type crawlRow struct {
		id, started               int64
		replied                   sql.NullInt64
		size                      sql.NullFloat64
		answering, entered, left_ int64
	}
	var rows []crawlRow
	err := b.rows(`SELECT c.crawl, c.started, r.nodes_replied, r.size_estimate, c.answering, c.entered, c.left
		FROM crawl_churn c JOIN crawl_runs r ON r.id = c.crawl ORDER BY c.crawl`, func(r *sql.Rows) error {
		var x crawlRow
		if err := r.Scan(&x.id, &x.started, &x.replied, &x.size, &x.answering, &x.entered, &x.left_); err != nil {
			return err
		}
		rows = append(rows, x)
		return nil
	})
	if err != nil {
		return section{}, err
	}
	t := &table{Head: []string{"crawl", "started", "answering", "entered", "left", "size estimate"}}
	var ans, ent, lft, est plotter.XYs
	for _, x := range rows {
		h := float64(x.started-rows[0].started) / 3600e3
		ans = append(ans, plotter.XY{X: h, Y: float64(x.answering)})
		ent = append(ent, plotter.XY{X: h, Y: float64(x.entered)})
		lft = append(lft, plotter.XY{X: h, Y: float64(x.left_)})
		size := "–"
		if x.size.Valid {
			est = append(est, plotter.XY{X: h, Y: x.size.Float64})
			size = fmt.Sprintf("%.0f", x.size.Float64)
		}
		t.Rows = append(t.Rows, []string{itoa(x.id), time.UnixMilli(x.started).UTC().Format(time.RFC3339),
			itoa(x.answering), itoa(x.entered), itoa(x.left_), size})
	}
	if len(rows) > 0 {
		p := newPlot("Network size and churn", "hours since the first crawl", "nodes")
		lines := []struct {
			name string
			xy   plotter.XYs
		}{{"answering", ans}, {"entered", ent}, {"left", lft}}
		if len(est) > 0 {
			lines = append(lines, struct {
				name string
				xy   plotter.XYs
			}{"size estimate (zone crawls)", est})
		}
		for i, l := range lines {
			line, points, err := plotter.NewLinePoints(l.xy)
			if err != nil {
				return section{}, err
			}
			line.Color, points.Color = plotutil.Color(i), plotutil.Color(i)
			p.Add(line, points)
			p.Legend.Add(l.name, line, points)
		}
		p.Legend.Top = true
		s, err := svg(p, wide)
		if err != nil {
			return section{}, err
		}
		sec.Figures = append(sec.Figures, figure{Title: "Network size and churn", SVG: s, Table: t,
			Caption: "Per crawl: nodes that answered, that answered and had not in the crawl before (entered), that had and did not (left), and zone crawls' estimate of the whole network."})
	}

	var hours []float64
	open := 0
	err = b.rows(`SELECT seconds, state = 'open' FROM session_lengths ORDER BY seconds`, func(r *sql.Rows) error {
		var s float64
		var o bool
		if err := r.Scan(&s, &o); err != nil {
			return err
		}
		hours = append(hours, s/3600)
		if o {
			open++
		}
		return nil
	})
	if err != nil {
		return section{}, err
	}
	if len(hours) > 0 {
		cdf := make(plotter.XYs, len(hours))
		for i, h := range hours {
			cdf[i] = plotter.XY{X: h, Y: float64(i+1) / float64(len(hours))}
		}
		p := newPlot("Session lengths", "session length (hours)", "share of sessions at most that long")
		line, err := plotter.NewLine(thin(cdf))
		if err != nil {
			return section{}, err
		}
		line.Color = plotutil.Color(0)
		p.Add(line)
		p.Y.Min, p.Y.Max = 0, 1
		s, err := svg(p, narrow)
		if err != nil {
			return section{}, err
		}
		med := hours[len(hours)/2]
		t := &table{Head: []string{"measure", "value"}, Rows: [][]string{
			{"sessions", fmt.Sprint(len(hours))}, {"still open", fmt.Sprint(open)},
			{"median length", fmt.Sprintf("%.2f h", med)}, {"longest", fmt.Sprintf("%.2f h", hours[len(hours)-1])},
		}}
		sec.Figures = append(sec.Figures, figure{Title: "Session lengths", SVG: s, Table: t,
			Caption: "Distribution of session lengths, from the visit that opened a session to its last answered visit (a lower bound; open sessions are still growing)."})
	}

	mix, err := b.clientMix()
	if err != nil {
		return section{}, err
	}
	if mix.Title != "" {
		sec.Figures = append(sec.Figures, mix)
	}
	return sec, nil
}

// clientMix plots the share of the five commonest clients in each crawl.
func (b *builder) clientMix() (figure, error) {
	type share struct {
		crawl   int64
		version string
		nodes   float64
	}
	var all []share
	totals := map[int64]float64{}
	byVersion := map[string]float64{}
	err := b.rows(`SELECT c.crawl, c.version, c.nodes FROM crawl_clients c JOIN crawl_sequence s ON s.crawl = c.crawl`, func(r *sql.Rows) error {
		var x share
		if err := r.Scan(&x.crawl, &x.version, &x.nodes); err != nil {
			return err
		}
		all = append(all, x)
		totals[x.crawl] += x.nodes
		byVersion[x.version] += x.nodes
		return nil
	})
	if err != nil || len(all) == 0 {
		return figure{}, err
	}
	versions := make([]string, 0, len(byVersion))
	for v := range byVersion {
		versions = append(versions, v)
	}
	slices.SortFunc(versions, func(a, c string) int {
		if byVersion[a] != byVersion[c] {
			if byVersion[a] > byVersion[c] {
				return -1
			}
			return 1
		}
		return strings.Compare(a, c)
	})
	versions = versions[:min(5, len(versions))]
	crawls := make([]int64, 0, len(totals))
	for c := range totals {
		crawls = append(crawls, c)
	}
	slices.Sort(crawls)
	p := newPlot("Client mix per crawl", "crawl", "share of answering nodes (%)")
	for i, v := range versions {
		var xy plotter.XYs
		for _, c := range crawls {
			var n float64
			for _, x := range all {
				if x.crawl == c && x.version == v {
					n = x.nodes
				}
			}
			xy = append(xy, plotter.XY{X: float64(c), Y: 100 * n / totals[c]})
		}
		line, points, err := plotter.NewLinePoints(xy)
		if err != nil {
			return figure{}, err
		}
		line.Color, points.Color = plotutil.Color(i), plotutil.Color(i)
		p.Add(line, points)
		p.Legend.Add(v, line, points)
	}
	p.Legend.Top = true
	s, err := svg(p, wide)
	if err != nil {
		return figure{}, err
	}
	return figure{Title: "Client mix per crawl", SVG: s,
		Caption: "Share of each crawl's answering nodes that sent each of the five commonest client versions."}, nil
}
