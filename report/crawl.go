package report

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/gonum/stat/distuv"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// crawlSection is the part about one crawl.
func (b *builder) crawlSection(crawl int64) (section, error) {
	var (
		started                               int64
		ended                                 sql.NullInt64
		kind                                  string
		vantage, host                         sql.NullString
		found, replied, queries, ihs          sql.NullInt64
		size                                  sql.NullFloat64
		config                                sql.NullString
		vReplied, vError, vTimeout, vNotQuery sql.NullInt64
		visits                                int
	)
	err := b.q.QueryRowContext(b.ctx, `SELECT started, ended, kind, vantage, host, nodes_found, nodes_replied, queries_sent,
		infohashes, size_estimate, visits_replied, visits_error, visits_timeout, visits_not_queried, visits, config
		FROM crawl_runs WHERE id = $1`, crawl).Scan(&started, &ended, &kind, &vantage, &host, &found, &replied, &queries,
		&ihs, &size, &vReplied, &vError, &vTimeout, &vNotQuery, &visits, &config)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && visits == 0) {
		return section{}, fmt.Errorf("report: crawl %d: %w", crawl, ErrNoCrawl)
	}
	if err != nil {
		return section{}, fmt.Errorf("report: %w", err)
	}
	sec := section{Title: fmt.Sprintf("Crawl %d", crawl),
		Intro: fmt.Sprintf("A %s run that started %s", kind, time.UnixMilli(started).UTC().Format(time.RFC3339))}
	if ended.Valid {
		sec.Intro += fmt.Sprintf(" and took %s", time.Duration(ended.Int64-started)*time.Millisecond)
	} else {
		sec.Intro += " and has no end recorded (still running, or stopped without EndRun)"
	}
	sec.Intro += "."
	str := func(v sql.NullInt64) string {
		if !v.Valid {
			return "–"
		}
		return itoa(v.Int64)
	}
	summary := &table{Head: []string{"measure", "value"}, Rows: [][]string{
		{"vantage", vantage.String + " on " + host.String},
		{"nodes found", str(found)},
		{"nodes that replied", str(replied)},
		{"queries sent", str(queries)},
		{"infohashes harvested", str(ihs)},
	}}
	if size.Valid {
		summary.Rows = append(summary.Rows, []string{"size estimate (zone crawl)", fmt.Sprintf("%.0f nodes", size.Float64)})
		if bits := zoneBits(config.String); bits > 0 {
			// The estimate is the count in the zone times 2^bits. With
			// IDs uniform, the count is binomial, close to Poisson: a
			// 95% interval of ±1.96√n on n. It leaves out nodes the
			// crawl missed or that never answered.
			n := size.Float64 / math.Ldexp(1, bits)
			half := 1.96 * math.Sqrt(n) * math.Ldexp(1, bits)
			summary.Rows = append(summary.Rows, []string{"95% interval (count in the zone alone)",
				fmt.Sprintf("%.0f – %.0f (±%.1f%%)", size.Float64-half, size.Float64+half, 100*half/size.Float64)})
		}
	} else {
		summary.Rows = append(summary.Rows, []string{"size estimate", "none (not a zone crawl)"})
	}
	sec.Figures = append(sec.Figures, figure{Title: "Summary", Caption: "The crawl's record: where it ran from and its totals.", Table: summary})

	for _, f := range []func(int64, int64) (figure, error){b.progress, b.rate, b.outcomes, b.rtt, b.clients, b.bep42, b.sybils, b.uniformity,
		b.countries, b.networks} {
		fig, err := f(crawl, started)
		if err != nil {
			return section{}, err
		}
		if fig.Title != "" {
			sec.Figures = append(sec.Figures, fig)
		}
	}
	return sec, nil
}

// progress plots nodes visited and answering against time into the crawl.
func (b *builder) progress(crawl, started int64) (figure, error) {
	var all, answered plotter.XYs
	var n, a float64
	err := b.rows(`SELECT time, outcome IN (1, 2) FROM visits WHERE crawl = $1 ORDER BY time`, func(r *sql.Rows) error {
		var t int64
		var ok bool
		if err := r.Scan(&t, &ok); err != nil {
			return err
		}
		s := float64(t-started) / 1000
		n++
		all = append(all, plotter.XY{X: s, Y: n})
		if ok {
			a++
			answered = append(answered, plotter.XY{X: s, Y: a})
		}
		return nil
	}, crawl)
	if err != nil || len(all) == 0 {
		return figure{}, err
	}
	all, answered = thin(all), thin(answered)
	p := newPlot("Nodes over the crawl", "time since the crawl started (s)", "nodes (cumulative)")
	la, err := plotter.NewLine(all)
	if err != nil {
		return figure{}, err
	}
	la.Color = plotutil.Color(1)
	lb, err := plotter.NewLine(answered)
	if err != nil {
		return figure{}, err
	}
	lb.Color = plotutil.Color(0)
	p.Add(la, lb)
	p.Legend.Add("visited", la)
	p.Legend.Add("answering", lb)
	p.Legend.Top, p.Legend.Left = false, false
	p.Legend.XOffs = -vg.Points(10)
	p.Legend.YOffs = vg.Points(20)
	s, err := svg(p, wide)
	if err != nil {
		return figure{}, err
	}
	return figure{Title: "Nodes over the crawl", SVG: s,
		Caption: "Each node counted when its visit's outcome was known (its last answer or timeout); the gap between the lines is nodes that never answered."}, nil
}

// rate plots the queries the crawl sent per second of its run. A visit
// records how many queries went to its node and when its outcome was
// known; each visit's queries are counted in that second.
func (b *builder) rate(crawl, started int64) (figure, error) {
	perSecond := map[int64]float64{}
	var last int64
	err := b.rows(`SELECT (time - $1) / 1000, sum(queries) FROM visits WHERE crawl = $2 AND queries > 0 GROUP BY 1`, func(r *sql.Rows) error {
		var sec int64
		var q float64
		if err := r.Scan(&sec, &q); err != nil {
			return err
		}
		perSecond[sec] = q
		last = max(last, sec)
		return nil
	}, started, crawl)
	if err != nil || len(perSecond) == 0 {
		return figure{}, err
	}
	xy := make(plotter.XYs, 0, last+1)
	var total, peak float64
	for sec := int64(0); sec <= last; sec++ {
		q := perSecond[sec]
		xy = append(xy, plotter.XY{X: float64(sec), Y: q})
		total += q
		peak = max(peak, q)
	}
	p := newPlot("Queries per second", "time since the crawl started (s)", "queries sent (per second)")
	line, err := plotter.NewLine(thin(xy))
	if err != nil {
		return figure{}, err
	}
	line.Color = plotutil.Color(0)
	p.Add(line)
	s, err := svg(p, wide)
	if err != nil {
		return figure{}, err
	}
	t := &table{Head: []string{"measure", "queries"}, Rows: [][]string{
		{"sent to visited nodes", fmt.Sprintf("%.0f", total)},
		{"mean per second", fmt.Sprintf("%.1f", total/float64(last+1))},
		{"busiest second", fmt.Sprintf("%.0f", peak)},
	}}
	return figure{Title: "Queries per second", SVG: s, Table: t,
		Caption: "Queries sent, resends included, counted in the second each node's outcome was known (so a node's queries fall together)."}, nil
}

// outcomes plots the visits by outcome, and the reasons nodes were not queried.
func (b *builder) outcomes(crawl, _ int64) (figure, error) {
	var names []string
	var values []float64
	var total int64
	t := &table{Head: []string{"outcome", "visits", "share"}}
	type row struct {
		name string
		n    int64
	}
	var rs []row
	err := b.rows(`SELECT o.name || CASE WHEN s.name IS NULL THEN '' ELSE ' (' || s.name || ')' END, count(*)
		FROM visits v JOIN visit_outcomes o ON o.outcome = v.outcome LEFT JOIN visit_skips s ON s.skipped = v.skipped
		WHERE v.crawl = $1 GROUP BY 1 ORDER BY count(*) DESC`, func(r *sql.Rows) error {
		var x row
		if err := r.Scan(&x.name, &x.n); err != nil {
			return err
		}
		rs = append(rs, x)
		total += x.n
		return nil
	}, crawl)
	if err != nil {
		return figure{}, err
	}
	for _, x := range rs {
		names, values = append(names, x.name), append(values, float64(x.n))
		t.Rows = append(t.Rows, []string{x.name, itoa(x.n), pct(x.n, total)})
	}
	return bars("Visits by outcome",
		"How each visited node's part in the crawl ended: a reply, a KRPC error (the node is up), no answer after resends, or not queried and why.",
		"outcome", "visits", names, values, t)
}

// rtt plots the distribution of round-trip times of first answers.
func (b *builder) rtt(crawl, _ int64) (figure, error) {
	var ms []float64
	err := b.rows(`SELECT rtt_us FROM visits WHERE crawl = $1 AND rtt_us IS NOT NULL ORDER BY rtt_us`, func(r *sql.Rows) error {
		var us int64
		if err := r.Scan(&us); err != nil {
			return err
		}
		ms = append(ms, float64(us)/1000)
		return nil
	}, crawl)
	if err != nil || len(ms) == 0 {
		return figure{}, err
	}
	q := func(p float64) float64 { return ms[min(len(ms)-1, int(p*float64(len(ms))))] }
	// The histogram stops at the 99th percentile, so that a few slow
	// answers do not squeeze the rest into one bar.
	cut := ms[:sort99(ms)]
	p := newPlot("Round-trip time of first answers", "round-trip time (ms)", "nodes")
	h, err := plotter.NewHist(plotter.Values(cut), 40)
	if err != nil {
		return figure{}, err
	}
	h.FillColor = plotutil.Color(0)
	p.Add(h)
	s, err := svg(p, narrow)
	if err != nil {
		return figure{}, err
	}
	t := &table{Head: []string{"percentile", "ms"}, Rows: [][]string{
		{"50th", fmt.Sprintf("%.1f", q(0.5))}, {"90th", fmt.Sprintf("%.1f", q(0.9))},
		{"99th", fmt.Sprintf("%.1f", q(0.99))}, {"max", fmt.Sprintf("%.1f", ms[len(ms)-1])},
	}}
	return figure{Title: "Round-trip time of first answers", SVG: s, Table: t,
		Caption: fmt.Sprintf("Time from a node's first query to its answer, %d answering nodes, up to the 99th percentile.", len(ms))}, nil
}

// zoneBits returns the zone's bits from a crawl's configuration JSON
// ("zone": "PREFIX/BITS", as lightdht crawl stores it), 0 if none.
func zoneBits(config string) int {
	var c struct {
		Zone string `json:"zone"`
	}
	if json.Unmarshal([]byte(config), &c) != nil {
		return 0
	}
	_, bits, ok := strings.Cut(c.Zone, "/")
	n, err := strconv.Atoi(bits)
	if !ok || err != nil || n < 1 || n > 32 {
		return 0
	}
	return n
}

// sort99 returns the length of the sorted ms up to its 99th percentile.
func sort99(ms []float64) int { return max(1, int(math.Ceil(0.99*float64(len(ms))))) }

// clients plots the answering nodes by client version.
func (b *builder) clients(crawl, _ int64) (figure, error) {
	var names []string
	var values []float64
	t := &table{Head: []string{"client", "answering nodes"}}
	err := b.rows(`SELECT version, nodes FROM crawl_clients WHERE crawl = $1 ORDER BY nodes DESC, version LIMIT 15`, func(r *sql.Rows) error {
		var v string
		var n int64
		if err := r.Scan(&v, &n); err != nil {
			return err
		}
		names, values = append(names, v), append(values, float64(n))
		t.Rows = append(t.Rows, []string{v, itoa(n)})
		return nil
	}, crawl)
	if err != nil || len(names) == 0 {
		return figure{}, err
	}
	return bars("Client versions",
		"The 15 commonest client versions (the \"v\" key, two letters and a version) among nodes that answered.",
		"client (\"v\")", "answering nodes", names, values, t)
}

// bep42 plots the share of answering nodes with a BEP 42 secure ID, by client.
func (b *builder) bep42(crawl, _ int64) (figure, error) {
	var names []string
	var values []float64
	t := &table{Head: []string{"client", "answering nodes", "secure IDs"}}
	err := b.rows(`SELECT coalesce(ver.version, '(none)'), count(*), sum(n.bep42_valid)
		FROM visits v JOIN nodes n ON n.ref = v.node LEFT JOIN versions ver ON ver.ref = v.version
		WHERE v.crawl = $1 AND v.outcome IN (1, 2) GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 15`, func(r *sql.Rows) error {
		var v string
		var n, ok int64
		if err := r.Scan(&v, &n, &ok); err != nil {
			return err
		}
		names, values = append(names, v), append(values, 100*float64(ok)/float64(n))
		t.Rows = append(t.Rows, []string{v, itoa(n), pct(ok, n)})
		return nil
	}, crawl)
	if err != nil || len(names) == 0 {
		return figure{}, err
	}
	return bars("BEP 42 compliance by client",
		"Share of answering nodes whose ID satisfies BEP 42 for their IP (addresses BEP 42 exempts count as secure).",
		"client (\"v\")", "nodes with a secure ID (%)", names, values, t)
}

// sybils tabulates the IPs with most IDs and the IDs on most IPs.
func (b *builder) sybils(crawl, _ int64) (figure, error) {
	t := &table{Head: []string{"kind", "address or ID", "count"}}
	for _, q := range []string{
		`SELECT 'IDs on one IP', n.ip, count(DISTINCT n.id) FROM visits v JOIN nodes n ON n.ref = v.node
		WHERE v.crawl = $1 GROUP BY n.ip HAVING count(DISTINCT n.id) > 1 ORDER BY 3 DESC, 2 LIMIT 10`,
		`SELECT 'IPs for one ID', n.id, count(DISTINCT n.ip) FROM visits v JOIN nodes n ON n.ref = v.node
		WHERE v.crawl = $1 GROUP BY n.id HAVING count(DISTINCT n.ip) > 1 ORDER BY 3 DESC, 2 LIMIT 10`,
	} {
		err := b.rows(q, func(r *sql.Rows) error {
			var k, a string
			var n int64
			if err := r.Scan(&k, &a, &n); err != nil {
				return err
			}
			t.Rows = append(t.Rows, []string{k, a, itoa(n)})
			return nil
		}, crawl)
		if err != nil {
			return figure{}, err
		}
	}
	if len(t.Rows) == 0 {
		t.Rows = [][]string{{"–", "no IP with several IDs, no ID on several IPs", "0"}}
	}
	return figure{Title: "Sybil suspects", Table: t,
		Caption: "IPs that used the most node IDs (NATs, or Sybils) and IDs seen on the most IPs (moved nodes, or Sybils), among the nodes of this crawl."}, nil
}

// uniformity compares the answering nodes' first ID bytes with the
// uniform distribution.
func (b *builder) uniformity(crawl, _ int64) (figure, error) {
	var counts [256]float64
	var total float64
	err := b.rows(`SELECT substr(n.id, 1, 2), count(*) FROM visits v JOIN nodes n ON n.ref = v.node
		WHERE v.crawl = $1 AND v.outcome IN (1, 2) GROUP BY 1`, func(r *sql.Rows) error {
		var h string
		var n float64
		if err := r.Scan(&h, &n); err != nil {
			return err
		}
		var x int
		if _, err := fmt.Sscanf(h, "%02x", &x); err != nil {
			return fmt.Errorf("ID prefix %q: %w", h, err)
		}
		counts[x], total = n, total+n
		return nil
	}, crawl)
	if err != nil || total == 0 {
		return figure{}, err
	}
	expected := total / 256
	var chi2 float64
	obs := make(plotter.XYs, 256)
	for i, c := range counts {
		chi2 += (c - expected) * (c - expected) / expected
		obs[i] = plotter.XY{X: float64(i), Y: c}
	}
	pValue := distuv.ChiSquared{K: 255}.Survival(chi2)
	p := newPlot("Nodes per ID prefix", "first byte of the node ID (0–255)", "answering nodes")
	sc, err := plotter.NewScatter(obs)
	if err != nil {
		return figure{}, err
	}
	sc.GlyphStyle.Radius = vg.Points(1.5)
	sc.GlyphStyle.Color = plotutil.Color(0)
	exp, err := plotter.NewLine(plotter.XYs{{X: 0, Y: expected}, {X: 255, Y: expected}})
	if err != nil {
		return figure{}, err
	}
	exp.Color = plotutil.Color(1)
	p.Add(sc, exp)
	p.Legend.Add("observed", sc)
	p.Legend.Add("uniform expectation", exp)
	p.Legend.Top = true
	s, err := svg(p, wide)
	if err != nil {
		return figure{}, err
	}
	t := &table{Head: []string{"statistic", "value"}, Rows: [][]string{
		{"answering nodes", fmt.Sprintf("%.0f", total)},
		{"expected per prefix", fmt.Sprintf("%.1f", expected)},
		{"chi-square (255 degrees of freedom)", fmt.Sprintf("%.1f", chi2)},
		{"p-value", fmt.Sprintf("%.3g", pValue)},
	}}
	return figure{Title: "Uniformity of the ID space", SVG: s, Table: t,
		Caption: "Answering nodes per first ID byte against a uniform spread; a small p-value says the IDs are not uniform (crowded prefixes: Sybils, or ID generators)."}, nil
}

// hasIPInfo reports whether the database has been enriched (an ip_info
// table, which a SQLite file has from schema 5 and PostgreSQL always,
// with a row).
func (b *builder) hasIPInfo() (bool, error) {
	var n int
	if !b.postgres {
		err := b.q.QueryRowContext(b.ctx, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'ip_info'").Scan(&n)
		if err != nil || n == 0 {
			return false, err
		}
	}
	err := b.q.QueryRowContext(b.ctx, "SELECT count(*) FROM (SELECT 1 FROM ip_info LIMIT 1) x").Scan(&n)
	return n == 1, err
}

// countries plots the crawl's answering nodes by country, from ip_info.
func (b *builder) countries(crawl, _ int64) (figure, error) {
	return b.shares(crawl, "Countries", `SELECT coalesce(i.country, 'unknown'), count(*) FROM visits v
		JOIN nodes n ON n.ref = v.node LEFT JOIN ip_info i ON i.ip = n.ip
		WHERE v.crawl = $1 AND v.outcome IN (1, 2) GROUP BY 1 ORDER BY 2 DESC, 1`, "country (ISO 3166)",
		"The crawl's answering nodes by the country of their IP (lightdht enrich --geoip); the table lists the 15 largest.")
}

// networks plots the crawl's answering nodes by autonomous system.
func (b *builder) networks(crawl, _ int64) (figure, error) {
	return b.shares(crawl, "Networks", `SELECT coalesce('AS' || i.asn || ' ' || coalesce(i.org, ''), 'unknown'), count(*) FROM visits v
		JOIN nodes n ON n.ref = v.node LEFT JOIN ip_info i ON i.ip = n.ip
		WHERE v.crawl = $1 AND v.outcome IN (1, 2) GROUP BY 1 ORDER BY 2 DESC, 1`, "network (AS number, organisation)",
		"The crawl's answering nodes by the network (ASN) of their IP (lightdht enrich --asn): hosting networks stand out.")
}

// shares draws the 15 largest groups of query's (name, nodes) rows as a
// share of all, when the file has been enriched.
func (b *builder) shares(crawl int64, title, query, x, caption string) (figure, error) {
	ok, err := b.hasIPInfo()
	if err != nil || !ok {
		return figure{}, err
	}
	type group struct {
		name string
		n    int64
	}
	var gs []group
	var total int64
	if err := b.rows(query, func(r *sql.Rows) error {
		var g group
		if err := r.Scan(&g.name, &g.n); err != nil {
			return err
		}
		gs = append(gs, g)
		total += g.n
		return nil
	}, crawl); err != nil || total == 0 {
		return figure{}, err
	}
	gs = gs[:min(15, len(gs))]
	t := &table{Head: []string{x, "answering nodes", "share"}}
	var names []string
	var values []float64
	for _, g := range gs {
		label := g.name
		if len(label) > 24 {
			label = label[:24] + "…"
		}
		names, values = append(names, label), append(values, 100*float64(g.n)/float64(total))
		t.Rows = append(t.Rows, []string{g.name, itoa(g.n), pct(g.n, total)})
	}
	return bars(title+" by share of answering nodes", caption, x, "share of answering nodes (%)", names, values, t)
}
