package crawler_test

import (
	"context"
	"database/sql"
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lightdht/lightdht/crawler"
	"github.com/lightdht/lightdht/db"
	"github.com/lightdht/lightdht/internal/synth"
	"github.com/lightdht/lightdht/krpc"
)

// history is a synthetic network and a database that crawls and
// revisits of it write to, for the ground-truth tests of the crawl
// history. It lives in a synctest bubble.
type history struct {
	t   *testing.T
	net *synth.Network
	d   *db.DB
}

func newHistory(t *testing.T, cfg synth.Config) *history {
	t.Helper()
	net, err := synth.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { net.Close() })
	d, err := db.Open(filepath.Join(t.TempDir(), "history.db"), db.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return &history{t: t, net: net, d: d}
}

// run runs one crawl (cfg.Nodes empty) or revisit run as one database
// run, until it ends or d passes, and returns the run's id.
func (h *history) run(cfg crawler.Config, d time.Duration) int64 {
	h.t.Helper()
	conn, err := h.net.Sim().NewConn4()
	if err != nil {
		h.t.Fatal(err)
	}
	cfg.Conn, cfg.Recorder, cfg.Rate, cfg.Timeout = conn, h.d, 2000, time.Second
	kind := "revisit"
	if len(cfg.Nodes) == 0 {
		cfg.Bootstrap, kind = h.net.Bootstrap(), "crawl"
	}
	c, err := crawler.New(cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	id, err := h.d.StartRun(db.RunInfo{Kind: kind})
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	res, err := c.Run(ctx)
	if err != nil && ctx.Err() == nil {
		h.t.Fatalf("Run: %v", err)
	}
	if err := h.d.EndRun(id, db.RunCounts{NodesFound: int64(res.Discovered), NodesReplied: int64(res.Replied)}); err != nil {
		h.t.Fatal(err)
	}
	return id
}

// visit is one row of visit_details.
type visit struct {
	id      krpc.ID
	addr    netip.AddrPort
	at      time.Time
	outcome string
	skipped string
	idChg   bool
	addrChg bool
}

// visits returns the visits of run, by address.
func (h *history) visits(run int64) map[netip.AddrPort][]visit {
	h.t.Helper()
	rows, err := h.d.SQL().Query(`SELECT id, ip, port, time, outcome, coalesce(skipped, ''), id_changed, addr_changed
		FROM visit_details WHERE crawl = ?`, run)
	if err != nil {
		h.t.Fatal(err)
	}
	defer rows.Close()
	out := map[netip.AddrPort][]visit{}
	for rows.Next() {
		var (
			v       visit
			idHex   string
			ip      string
			port    uint16
			ms      int64
			idc, ac int
		)
		if err := rows.Scan(&idHex, &ip, &port, &ms, &v.outcome, &v.skipped, &idc, &ac); err != nil {
			h.t.Fatal(err)
		}
		v.id, _ = krpc.ParseID(idHex)
		v.addr = netip.AddrPortFrom(netip.MustParseAddr(ip), port)
		v.at, v.idChg, v.addrChg = time.UnixMilli(ms), idc == 1, ac == 1
		out[v.addr] = append(out[v.addr], v)
	}
	if err := rows.Err(); err != nil {
		h.t.Fatal(err)
	}
	return out
}

// session is one row of sessions.
type session struct {
	started, last, closed time.Time
	visits, failed        int
	state, reason         string
}

// sessions returns the sessions of node (id, addr), oldest first.
func (h *history) sessions(id krpc.ID, addr netip.AddrPort) []session {
	h.t.Helper()
	rows, err := h.d.SQL().Query(`SELECT s.started, s.last_answered, coalesce(s.closed, 0), s.visits, s.failed, s.state,
			coalesce(s.close_reason, '')
		FROM sessions s JOIN nodes n ON n.ref = s.node WHERE n.id = ? AND n.ip = ? AND n.port = ? ORDER BY s.id`,
		id.String(), addr.Addr().String(), addr.Port())
	if err != nil {
		h.t.Fatal(err)
	}
	defer rows.Close()
	var out []session
	for rows.Next() {
		var s session
		var a, b, c int64
		if err := rows.Scan(&a, &b, &c, &s.visits, &s.failed, &s.state, &s.reason); err != nil {
			h.t.Fatal(err)
		}
		s.started, s.last = time.UnixMilli(a), time.UnixMilli(b)
		if c != 0 {
			s.closed = time.UnixMilli(c)
		}
		out = append(out, s)
	}
	return out
}

// classes returns crawl_node_classes of run: class by (id, addr).
func (h *history) classes(run int64) map[string]string {
	h.t.Helper()
	rows, err := h.d.SQL().Query(`SELECT n.id, n.ip, n.port, c.class FROM crawl_node_classes c JOIN nodes n ON n.ref = c.node
		WHERE c.crawl = ?`, run)
	if err != nil {
		h.t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var id, ip, class string
		var port int
		if err := rows.Scan(&id, &ip, &port, &class); err != nil {
			h.t.Fatal(err)
		}
		out[fmt.Sprintf("%s %s:%d", id, ip, port)] = class
	}
	return out
}

func nodeKey(id krpc.ID, addr netip.AddrPort) string { return id.String() + " " + addr.String() }

func scalar(t *testing.T, q *sql.DB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := q.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// TestHistory_NodesOffBetweenCrawls_IDChanged_PortMoved crawls a
// 2,000-node network (10% silent, 10 bogons) three times, an hour apart.
// Between crawls 1 and 2, 60 nodes are switched off, one node takes a new
// ID at its address and another moves to a new port; between crawls 2
// and 3 the 60 come back and 40 others go. Every visit, session and class
// must match the script exactly.
func TestHistory_NodesOffBetweenCrawls_IDChanged_PortMoved(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHistory(t, synth.Config{N: 2000, Seed: 21, SilentShare: 0.1, Bogons: 10, PublicIPs: true,
			Latency: 10 * time.Millisecond})
		truth := h.net.Truth()
		boot := map[netip.AddrPort]bool{}
		for _, a := range h.net.Bootstrap() {
			boot[a] = true
		}
		// The scripted nodes: answering, not bootstrap nodes.
		var pick []int
		for i, n := range truth.Nodes {
			if n.Answering && !boot[n.Addr] && i%7 == 3 {
				pick = append(pick, i)
			}
		}
		offA, offB, renamed, moved := pick[:60], pick[60:100], pick[100], pick[101]
		inA, inB := map[int]bool{}, map[int]bool{}
		for _, i := range offA {
			inA[i] = true
		}
		for _, i := range offB {
			inB[i] = true
		}
		oldAddr, newID := truth.Nodes[moved].Addr, krpc.RandomID()

		r1 := h.run(crawler.Config{}, time.Hour)
		for _, i := range offA {
			h.net.SetOnline(i, false)
		}
		h.net.SetID(renamed, newID)
		h.net.SetPort(moved, oldAddr.Port()+1)
		time.Sleep(time.Hour)
		r2 := h.run(crawler.Config{}, time.Hour)
		for _, i := range offA {
			h.net.SetOnline(i, true)
		}
		for _, i := range offB {
			h.net.SetOnline(i, false)
		}
		time.Sleep(time.Hour)
		r3 := h.run(crawler.Config{}, time.Hour)
		if err := h.d.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}

		// Every entry's visit in every crawl: at most one, with the
		// outcome the script says, at the address it had then. A crawl
		// can miss a node that only few (or only switched-off) nodes
		// list; the misses are bounded, and what follows is checked
		// against the visits that were made.
		online := func(run int64, i int) bool {
			n := truth.Nodes[i]
			return n.Answering && !(run == r2 && inA[i]) && !(run == r3 && inB[i])
		}
		final := h.net.Truth()
		runs := []int64{r1, r2, r3}
		// seen[k][i]: "" (no visit), "replied" or "timeout" for entry i
		// in crawl k.
		seen := make([][]string, len(runs))
		at := make([][]time.Time, len(runs))
		for k, run := range runs {
			vs := h.visits(run)
			seen[k], at[k] = make([]string, len(truth.Nodes)), make([]time.Time, len(truth.Nodes))
			missed := 0
			for i, n := range truth.Nodes {
				addr, id := n.Addr, n.ID
				if k > 0 {
					addr, id = final.Nodes[i].Addr, final.Nodes[i].ID
				}
				v := vs[addr]
				if len(v) == 0 {
					missed++
					continue
				}
				if len(v) > 1 {
					t.Errorf("crawl %d: %d visits of entry %d at %v, want 1", run, len(v), i, addr)
				}
				want := "timeout"
				switch {
				case n.Bogon:
					want = "not_queried"
				case online(run, i):
					want = "replied"
				}
				if v[0].outcome != want || (n.Bogon && v[0].skipped != "bogon") {
					t.Errorf("crawl %d: entry %d at %v visited with %s/%s, want %s", run, i, addr, v[0].outcome, v[0].skipped, want)
				}
				if want == "replied" && v[0].id != id {
					t.Errorf("crawl %d: entry %d visited as %v, want %v", run, i, v[0].id, id)
				}
				seen[k][i], at[k][i] = v[0].outcome, v[0].at
			}
			if missed > 5 {
				t.Errorf("crawl %d missed %d of %d entries", run, missed, len(truth.Nodes))
			}
			t.Logf("crawl %d: %d visits, %d entries missed", run, len(vs), missed)
			if n := len(vs); n+missed != len(truth.Nodes) {
				t.Errorf("crawl %d: visits at %d addresses and %d missed, want the %d entries'", run, n, missed, len(truth.Nodes))
			}
		}
		renamedSeen := seen[1][renamed] == "replied"
		movedSeen := seen[1][moved] == "replied"
		for k, run := range runs {
			vs := h.visits(run)
			for i := range truth.Nodes {
				addr := final.Nodes[i].Addr
				if k == 0 {
					addr = truth.Nodes[i].Addr
				}
				if v := vs[addr]; len(v) == 1 {
					wantIDChg := k == 1 && i == renamed
					wantAddrChg := k == 1 && i == moved
					if v[0].idChg != wantIDChg || v[0].addrChg != wantAddrChg {
						t.Errorf("crawl %d: entry %d id_changed %v addr_changed %v, want %v %v", run, i, v[0].idChg, v[0].addrChg, wantIDChg, wantAddrChg)
					}
				}
			}
		}

		// Sessions, from a model of the rules run over each node's
		// visits: an answer opens or extends a session, a timeout closes
		// the open one, no visit changes nothing.
		type want struct {
			visits, failed int
			state, reason  string
			start, last    time.Time
		}
		model := func(i int, from int) []want {
			var ws []want
			for k := from; k < len(runs); k++ {
				switch seen[k][i] {
				case "replied":
					if len(ws) > 0 && ws[len(ws)-1].state == "open" {
						w := &ws[len(ws)-1]
						w.visits++
						w.last = at[k][i]
					} else {
						ws = append(ws, want{1, 0, "open", "", at[k][i], at[k][i]})
					}
				case "timeout":
					if len(ws) > 0 && ws[len(ws)-1].state == "open" {
						w := &ws[len(ws)-1]
						w.visits++
						w.failed++
						w.state, w.reason = "closed", "timeout"
					}
				}
			}
			return ws
		}
		check := func(i int, id krpc.ID, addr netip.AddrPort, ws []want) {
			ss := h.sessions(id, addr)
			if len(ss) != len(ws) {
				t.Errorf("entry %d as %v: %d sessions %+v, want %+v", i, addr, len(ss), ss, ws)
				return
			}
			for j, w := range ws {
				s := ss[j]
				if s.visits != w.visits || s.failed != w.failed || s.state != w.state || s.reason != w.reason ||
					!s.started.Equal(w.start) || !s.last.Equal(w.last) {
					t.Errorf("entry %d session %d = %+v, want %+v", i, j, s, w)
				}
			}
		}
		for i, n := range truth.Nodes {
			switch {
			case !n.Answering:
				if ss := h.sessions(n.ID, n.Addr); len(ss) != 0 {
					t.Errorf("entry %d never answers but has %d sessions", i, len(ss))
				}
			case i == renamed || i == moved:
				// Its old self answered in crawl 1 only, and is closed by
				// its new self's answer in crawl 2.
				var old []want
				if seen[0][i] == "replied" {
					old = []want{{1, 0, "open", "", at[0][i], at[0][i]}}
					switch {
					case i == renamed && renamedSeen:
						old[0].state, old[0].reason = "closed", "id_changed"
					case i == moved && movedSeen:
						old[0].state, old[0].reason = "closed", "addr_changed"
					}
				}
				check(i, n.ID, n.Addr, old)
				check(i, final.Nodes[i].ID, final.Nodes[i].Addr, model(i, 1))
			default:
				check(i, n.ID, n.Addr, model(i, 0))
			}
		}

		// Classes, from the same visits: stayed, entered, left, and
		// never_answered for nodes that never answered in any crawl.
		key := func(k, i int) string {
			if k == 0 {
				return nodeKey(truth.Nodes[i].ID, truth.Nodes[i].Addr)
			}
			return nodeKey(final.Nodes[i].ID, final.Nodes[i].Addr)
		}
		for k := 1; k < len(runs); k++ {
			wantClass := map[string]string{}
			for i, n := range truth.Nodes {
				now, before := seen[k][i] == "replied", seen[k-1][i] == "replied"
				if k == 1 && (i == renamed || i == moved) {
					// Two nodes in the database: the old one only
					// before, the new one only now.
					if before {
						wantClass[key(0, i)] = "left"
					}
					if now {
						wantClass[key(1, i)] = "entered"
					}
					continue
				}
				switch {
				case now && before:
					wantClass[key(k, i)] = "stayed"
				case now:
					wantClass[key(k, i)] = "entered"
				case before:
					wantClass[key(k, i)] = "left"
				case !n.Answering && seen[k][i] != "":
					wantClass[key(k, i)] = "never_answered"
				}
			}
			got := h.classes(runs[k])
			if len(got) != len(wantClass) {
				t.Errorf("crawl %d: %d classes, want %d", runs[k], len(got), len(wantClass))
			}
			for nk, w := range wantClass {
				if got[nk] != w {
					t.Errorf("crawl %d: node %s class %q, want %q", runs[k], nk, got[nk], w)
				}
			}
		}
		// In particular, with nothing missed: crawl 2 has offA, the
		// renamed node's old ID and the moved node's old address as
		// left and their new selves as entered; crawl 3 has offA back
		// as entered and offB as left.
		c2, c3 := h.classes(r2), h.classes(r3)
		for _, i := range offA {
			if seen[0][i] == "replied" && (c2[key(0, i)] != "left" || (seen[2][i] == "replied" && c3[key(0, i)] != "entered")) {
				t.Errorf("entry %d (off in crawl 2): classes %q, %q", i, c2[key(0, i)], c3[key(0, i)])
			}
		}
		for _, i := range offB {
			if seen[1][i] == "replied" && c3[key(0, i)] != "left" {
				t.Errorf("entry %d (off in crawl 3): class %q", i, c3[key(0, i)])
			}
		}
		// The crawl record's totals agree with the visits.
		for _, run := range runs {
			if a, b := scalar(t, h.d.SQL(), "SELECT visits_replied + visits_error + visits_timeout + visits_not_queried FROM crawl_runs WHERE id = ?", run),
				scalar(t, h.d.SQL(), "SELECT count(*) FROM visits WHERE crawl = ?", run); a != b {
				t.Errorf("crawl %d: totals %d, visits %d", run, a, b)
			}
		}
	})
}

// TestHistory_RevisitsMeasureSessions crawls a 1,000-node network, then
// revisits the nodes that answered for three hours with visits 1 to 5
// minutes apart; 50 nodes go off at 0:40 and come back at 1:40. Each of
// them must have two sessions: the first ending (last answer) within 5
// minutes before 0:40 and closed by a timeout after it, the second
// starting within 5 minutes after 1:40; every other revisited node one
// open session spanning the whole run.
func TestHistory_RevisitsMeasureSessions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHistory(t, synth.Config{N: 1000, Seed: 22, SilentShare: 0.1, PublicIPs: true, Latency: 10 * time.Millisecond})
		truth := h.net.Truth()
		first := h.run(crawler.Config{}, time.Hour)
		states, err := h.d.NodesToRevisit(context.Background(), time.Now().Add(-24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		// The nodes that answered the crawl (it may miss one or two that
		// few tables hold).
		replied := scalar(t, h.d.SQL(), "SELECT count(*) FROM visits WHERE crawl = ? AND outcome = 1", first)
		if len(states) != replied || replied < truth.Answering()-5 {
			t.Fatalf("%d nodes to revisit, %d answered the crawl, %d answer", len(states), replied, truth.Answering())
		}
		known := make([]crawler.Known, len(states))
		revisited := map[netip.AddrPort]bool{}
		for i, s := range states {
			known[i] = crawler.Known{Node: s.Node, Up: s.Up, Since: s.Since, BEP51: s.BEP51}
			revisited[s.Node.Addr] = true
		}
		boot := map[netip.AddrPort]bool{}
		for _, a := range h.net.Bootstrap() {
			boot[a] = true
		}
		var off []int
		for i, n := range truth.Nodes {
			if n.Answering && revisited[n.Addr] && !boot[n.Addr] && len(off) < 50 && i%5 == 1 {
				off = append(off, i)
			}
		}
		start := time.Now()
		offAt, onAt := start.Add(40*time.Minute), start.Add(100*time.Minute)
		go func() {
			time.Sleep(time.Until(offAt))
			for _, i := range off {
				h.net.SetOnline(i, false)
			}
			time.Sleep(time.Until(onAt))
			for _, i := range off {
				h.net.SetOnline(i, true)
			}
		}()
		const maxWait = 5 * time.Minute
		run := h.run(crawler.Config{Nodes: known, RevisitMin: time.Minute, RevisitMax: maxWait}, 3*time.Hour)
		end := time.Now()
		if err := h.d.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		isOff := map[int]bool{}
		for _, i := range off {
			isOff[i] = true
		}
		// A failed visit takes two attempts, a second each, at least the
		// per-IP interval (2 s) apart.
		const slack = 10 * time.Second
		for i, n := range truth.Nodes {
			if !revisited[n.Addr] {
				continue
			}
			ss := h.sessions(n.ID, n.Addr)
			if !isOff[i] {
				if len(ss) != 1 || ss[0].state != "open" || ss[0].failed != 0 || end.Sub(ss[0].last) > maxWait+slack {
					t.Errorf("entry %d (always on): sessions %+v, want one open to within %v of the end", i, ss, maxWait)
				}
				continue
			}
			if len(ss) != 2 {
				t.Errorf("entry %d (off 0:40 to 1:40): %d sessions %+v, want 2", i, len(ss), ss)
				continue
			}
			a, b := ss[0], ss[1]
			if a.state != "closed" || a.reason != "timeout" || a.last.After(offAt) || offAt.Sub(a.last) > maxWait ||
				a.closed.Before(offAt) || a.closed.Sub(offAt) > maxWait+slack {
				t.Errorf("entry %d: first session %+v, want its last answer within %v before %v and closed after", i, a, maxWait, offAt)
			}
			if b.state != "open" || b.started.Before(onAt) || b.started.Sub(onAt) > maxWait+slack {
				t.Errorf("entry %d: second session %+v, want it opened within %v after %v", i, b, maxWait, onAt)
			}
		}
		// Visits are spaced out: a node up for the whole run is visited
		// far less often than every minute.
		visits := scalar(t, h.d.SQL(), "SELECT count(*) FROM visits WHERE crawl = ?", run)
		perNode := float64(visits) / float64(len(known))
		t.Logf("%d visits in 3 hours, %.1f per node", visits, perNode)
		if perNode < 180/5 || perNode > 180/1.5 {
			t.Errorf("%.1f visits per node in 3 hours with waits of 1 to 5 minutes", perNode)
		}
	})
}

// TestHistory_ContinuousCrawlVisitsEachRound runs a continuous crawl of a
// 500-node network for an hour with a revisit every 10 minutes; 20 nodes
// go off at 0:25. Every answering node gets one visit per round; each of
// the 20 one session that ends before 0:25 and is closed by its timed-out
// round, and no visit after it; the others one open session.
func TestHistory_ContinuousCrawlVisitsEachRound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHistory(t, synth.Config{N: 500, Seed: 23, SilentShare: 0.1, PublicIPs: true, Latency: 10 * time.Millisecond})
		truth := h.net.Truth()
		boot := map[netip.AddrPort]bool{}
		for _, a := range h.net.Bootstrap() {
			boot[a] = true
		}
		var off []int
		for i, n := range truth.Nodes {
			if n.Answering && !boot[n.Addr] && len(off) < 20 && i%9 == 2 {
				off = append(off, i)
			}
		}
		offAt := time.Now().Add(25 * time.Minute)
		go func() {
			time.Sleep(time.Until(offAt))
			for _, i := range off {
				h.net.SetOnline(i, false)
			}
		}()
		run := h.run(crawler.Config{Continuous: true, Revisit: 10 * time.Minute}, time.Hour)
		if err := h.d.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		isOff := map[int]bool{}
		for _, i := range off {
			isOff[i] = true
		}
		vs := h.visits(run)
		checked, visits := 0, 0
		for i, n := range truth.Nodes {
			if !n.Answering || len(vs[n.Addr]) == 0 {
				continue
			}
			v := vs[n.Addr]
			checked++
			visits += len(v)
			ss := h.sessions(n.ID, n.Addr)
			if isOff[i] {
				last := v[len(v)-1]
				if last.outcome != "timeout" || last.at.Before(offAt) {
					t.Errorf("entry %d (off at 0:25): last visit %+v, want a timeout after 0:25", i, last)
				}
				if len(ss) != 1 || ss[0].state != "closed" || ss[0].reason != "timeout" || !ss[0].last.Before(offAt) ||
					offAt.Sub(ss[0].last) > 10*time.Minute+time.Minute {
					t.Errorf("entry %d (off at 0:25): sessions %+v, want one closed within a round before 0:25", i, ss)
				}
				continue
			}
			// Rounds at 0:00, 0:10, ... 0:50: six, give or take the
			// round cut short by the end.
			if len(v) < 5 || len(v) > 7 {
				t.Errorf("entry %d: %d visits in an hour of 10-minute rounds", i, len(v))
			}
			for _, x := range v {
				if x.outcome != "replied" {
					t.Errorf("entry %d: visit %+v of an answering node", i, x)
				}
			}
			if len(ss) != 1 || ss[0].state != "open" || ss[0].visits != len(v) {
				t.Errorf("entry %d: sessions %+v, want one open with its %d visits", i, ss, len(v))
			}
		}
		t.Logf("%d answering nodes visited, %d visits", checked, visits)
		if checked < truth.Answering()-5 {
			t.Errorf("%d of %d answering nodes visited", checked, truth.Answering())
		}
	})
}
