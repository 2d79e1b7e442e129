package db

import (
	"context"
	"database/sql"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/lightdht/lightdht/bep42"
	"github.com/lightdht/lightdht/krpc"
	"github.com/lightdht/lightdht/observe"
)

// The crawl history: visits, sessions and neighbours (migration 4).
//
// Visits reach the writer like sightings, through the queue. The
// committer writes them after the batch's nodes, set-based: the batch's
// visits go into a temporary staging table, and a fixed sequence of
// statements resolves their nodes, detects changed IDs and addresses,
// appends them to visits and moves the sessions on. SQLite does the
// per-row work in C, which is what keeps a visit's cost near a
// sighting's.

// RecordVisit records what one crawl or revisit learnt of one node. It
// implements observe.VisitRecorder. The visit belongs to the run opened
// by StartRun (crawl_runs.id) if one is open, else to none (crawl
// NULL). A zero v.Time is time.Now(); a visit with a zero node ID is
// ignored. Queueing is as for Observe.
func (d *DB) RecordVisit(v observe.Visit) {
	if v.Node.ID.IsZero() {
		return
	}
	if v.Time.IsZero() {
		v.Time = time.Now()
	}
	d.enqueue(context.Background(), item{kind: kindVisit, visit: &v})
}

// visitCols are the staging table's columns that prepare fills, in order.
var visitCols = []string{
	"seq", "grp", "id", "ip", "port", "time", "outcome", "error_code", "skipped", "queries",
	"rtt_us", "version", "read_only", "bep51", "num", "interval_s", "secure", "discounted",
}

const createStaging = `
CREATE TEMP TABLE IF NOT EXISTS stage_visits (
    seq INTEGER, grp INTEGER, id TEXT, ip TEXT, port INTEGER, time INTEGER,
    outcome INTEGER, error_code INTEGER, skipped INTEGER, queries INTEGER,
    rtt_us INTEGER, version TEXT, read_only INTEGER, bep51 INTEGER,
    num INTEGER, interval_s INTEGER, secure INTEGER, discounted INTEGER,
    node INTEGER, vref INTEGER, prev_addr INTEGER, prev_id INTEGER
);
CREATE TEMP TABLE IF NOT EXISTS stage_neighbours (
    rid TEXT, rip TEXT, rport INTEGER, nid TEXT, nip TEXT, nport INTEGER
);`

// The statements that take the staged visits in. ?1 is the group (the
// visits of one batch are split into groups in which no two share an ID
// or an address, taken in time order), ?2 the run, ?3 the failed visits
// that close a session, ?4 the vantage.
const (
	stageNodes = `UPDATE stage_visits SET node = (SELECT ref FROM nodes n
		WHERE n.id = stage_visits.id AND n.ip = stage_visits.ip AND n.port = stage_visits.port)
		WHERE node IS NULL`
	// A visit's node normally has its row from the sightings of the
	// same crawl; one whose sightings were shed gets a bare row.
	stageMissing = `INSERT INTO nodes (id, ip, port, first_seen, last_seen, times_seen, first_source, bep42_valid)
		SELECT id, ip, port, min(time), max(time), 0,
			CASE WHEN max(outcome IN (1, 2)) THEN 'reply' WHEN max(outcome = 3) THEN 'timeout' ELSE 'reported' END,
			max(secure)
		FROM stage_visits WHERE node IS NULL GROUP BY id, ip, port
		ON CONFLICT DO NOTHING`
	stageVersions = `INSERT INTO versions (version)
		SELECT DISTINCT version FROM stage_visits WHERE version IS NOT NULL
		ON CONFLICT DO NOTHING`
	stageVersionRefs = `UPDATE stage_visits SET vref = (SELECT ref FROM versions v WHERE v.version = stage_visits.version)
		WHERE version IS NOT NULL`
	stagePrevAddr = `UPDATE stage_visits SET prev_addr = a.node FROM address_nodes a
		WHERE stage_visits.grp = ?1 AND stage_visits.outcome IN (1, 2)
		AND a.ip = stage_visits.ip AND a.port = stage_visits.port AND a.node != stage_visits.node`
	// The ID answered more recently at another address than at this
	// one (or never here): a node's latest answered visit is the
	// last_answered of its latest session.
	stagePrevID = `UPDATE stage_visits SET prev_id = (
			SELECT x.ref FROM nodes x JOIN sessions xs ON xs.node = x.ref
			WHERE x.id = stage_visits.id AND x.ref != stage_visits.node
			AND xs.last_answered > coalesce((SELECT max(ms.last_answered) FROM sessions ms WHERE ms.node = stage_visits.node), 0)
			ORDER BY xs.last_answered DESC LIMIT 1)
		WHERE grp = ?1 AND outcome IN (1, 2)`
	closeIDChanged = `UPDATE sessions SET state = 'closed', closed = s.time, close_reason = 'id_changed'
		FROM stage_visits s WHERE s.grp = ?1 AND sessions.node = s.prev_addr AND sessions.state = 'open'`
	closeAddrChanged = `UPDATE sessions SET state = 'closed', closed = s.time, close_reason = 'addr_changed'
		FROM stage_visits s WHERE s.grp = ?1 AND sessions.node = s.prev_id AND sessions.state = 'open'`
	stageAddresses = `INSERT INTO address_nodes (ip, port, node, time)
		SELECT ip, port, node, time FROM stage_visits WHERE grp = ?1 AND outcome IN (1, 2) ORDER BY seq
		ON CONFLICT (ip, port) DO UPDATE SET node = excluded.node, time = excluded.time WHERE excluded.time >= time`
	insertVisits = `INSERT INTO visits (crawl, node, time, outcome, error_code, skipped, queries, rtt_us,
			version, read_only, bep51, num, interval_s, id_changed, addr_changed, vantage, discounted)
		SELECT ?2, node, time, outcome, error_code, skipped, queries, rtt_us,
			vref, read_only, bep51, num, interval_s, prev_addr IS NOT NULL, prev_id IS NOT NULL, ?4, discounted
		FROM stage_visits WHERE grp = ?1 ORDER BY seq`
	sessionsAnswered = `UPDATE sessions SET last_answered = max(last_answered, s.time), visits = visits + 1,
			failed_streak = 0, failed_since = NULL
		FROM stage_visits s WHERE s.grp = ?1 AND s.outcome IN (1, 2) AND sessions.node = s.node AND sessions.state = 'open'`
	sessionsOpened = `INSERT INTO sessions (node, started, last_answered, visits, failed, failed_streak, state)
		SELECT node, time, time, 1, 0, 0, 'open' FROM stage_visits s
		WHERE s.grp = ?1 AND s.outcome IN (1, 2)
		AND NOT EXISTS (SELECT 1 FROM sessions o WHERE o.node = s.node AND o.state = 'open')`
	sessionsFailed = `UPDATE sessions SET visits = visits + 1, failed = failed + 1, failed_streak = failed_streak + 1,
			failed_since = coalesce(failed_since, s.time),
			state = CASE WHEN failed_streak + 1 >= ?3 THEN 'closed' ELSE state END,
			closed = CASE WHEN failed_streak + 1 >= ?3 THEN s.time ELSE closed END,
			close_reason = CASE WHEN failed_streak + 1 >= ?3 THEN 'timeout' ELSE close_reason END
		FROM stage_visits s WHERE s.grp = ?1 AND s.outcome = 3 AND sessions.node = s.node AND sessions.state = 'open'`
	clearVisits = `DELETE FROM stage_visits`

	insertNeighbours = `INSERT INTO neighbours (crawl, node, neighbour)
		SELECT ?1, r.ref, n.ref FROM stage_neighbours s
		JOIN nodes r ON r.id = s.rid AND r.ip = s.rip AND r.port = s.rport
		JOIN nodes n ON n.id = s.nid AND n.ip = s.nip AND n.port = s.nport
		WHERE true ON CONFLICT DO NOTHING`
	clearNeighbours = `DELETE FROM stage_neighbours`
)

// history is the SQLite committer's part of the crawl history: its
// statements. The committer goroutine owns it.
type history struct {
	visitsU, neighboursU *upsert // staging inserts
	stmts                map[string]*sql.Stmt
}

func (h *history) prepare(conn *sql.Conn) error {
	ctx := context.Background()
	if _, err := conn.ExecContext(ctx, createStaging); err != nil {
		return err
	}
	var err error
	if h.visitsU, err = newUpsert(conn, "stage_visits", visitCols, "", ""); err != nil {
		return err
	}
	if h.neighboursU, err = newUpsert(conn, "stage_neighbours",
		[]string{"rid", "rip", "rport", "nid", "nip", "nport"}, "", ""); err != nil {
		return err
	}
	h.stmts = make(map[string]*sql.Stmt)
	for _, q := range []string{stageNodes, stageMissing, stageVersions, stageVersionRefs, stagePrevAddr, stagePrevID,
		closeIDChanged, closeAddrChanged, stageAddresses, insertVisits, sessionsAnswered,
		sessionsOpened, sessionsFailed, clearVisits, insertNeighbours, clearNeighbours} {
		st, err := conn.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("%w in %s", err, q)
		}
		h.stmts[q] = st
	}
	return nil
}

func (h *history) close() {
	for _, st := range h.stmts {
		st.Close()
	}
}

// exec runs one of the prepared statements.
func (h *history) exec(q string, args ...any) error {
	_, err := h.stmts[q].ExecContext(context.Background(), args...)
	return err
}

// writeVisits takes the staged visits in (the rows are already in
// stage_visits): see the statements above for each step.
func (h *history) writeVisits(b *batch, run *runState, sessionFailures int) error {
	crawl, vantage := nullInt(run.id, run.id != 0), nullInt(run.vantage, run.vantage != 0) // NULL outside a run
	for _, q := range []string{stageNodes, stageMissing, stageNodes, stageVersions, stageVersionRefs} {
		if err := h.exec(q); err != nil {
			return err
		}
	}
	for g := 0; g < b.visitGroups; g++ {
		args := []any{g, crawl, sessionFailures, vantage}
		for _, st := range []struct {
			q     string
			nargs int // the highest parameter number the statement uses
		}{
			{stagePrevAddr, 1}, {stagePrevID, 1}, {closeIDChanged, 1}, {closeAddrChanged, 1},
			{stageAddresses, 1}, {insertVisits, 4}, {sessionsAnswered, 1},
			{sessionsOpened, 1}, {sessionsFailed, 3},
		} {
			if err := h.exec(st.q, args[:st.nargs]...); err != nil {
				return err
			}
		}
	}
	return h.exec(clearVisits)
}

// writeNeighbours turns the staged (reporter, reported) pairs into
// neighbours rows of the open run.
func (h *history) writeNeighbours(run int64) error {
	if err := h.exec(insertNeighbours, run); err != nil {
		return err
	}
	return h.exec(clearNeighbours)
}

// addVisit queues v for the batch.
func (b *batch) addVisit(v *observe.Visit) {
	b.visits = append(b.visits, *v)
}

// prepareVisitTexts orders the batch's visits by time and appends their
// texts; prepareVisitArgs then splits them into groups (see there) and
// builds their staging rows.
func (b *batch) prepareVisitTexts() {
	slices.SortStableFunc(b.visits, func(x, y observe.Visit) int { return x.Time.Compare(y.Time) })
	t := &b.text
	for i := range b.visits {
		v := &b.visits[i]
		t.id(v.Node.ID)
		t.ip(norm(v.Node.Addr).Addr())
		if v.Version != "" {
			t.version(v.Version)
		}
	}
}

func (b *batch) prepareVisitArgs() {
	clear(b.visitSeenID)
	clear(b.visitSeenAddr)
	b.visitGroups = 0
	ports, tb := portValues(), &b.times
	args := b.visitArgs
	for i := range b.visits {
		v := &b.visits[i]
		// A visit goes to the group after every earlier visit in the
		// batch that shares its ID or its address, so that those are
		// written, and looked at, before it.
		k := nodeKey{v.Node.ID, norm(v.Node.Addr)}
		g := max(b.visitSeenID[k.id], b.visitSeenAddr[k.addr])
		b.visitSeenID[k.id], b.visitSeenAddr[k.addr] = g+1, g+1
		b.visitGroups = max(b.visitGroups, g+1)
		b.visitOutcomes[min(int(v.Outcome), len(b.visitOutcomes)-1)]++
		args = append(args, int64(i), int64(g), b.text.take(), b.text.take(), ports[k.addr.Port()],
			tb.box(v.Time.UnixMilli()), int64(v.Outcome))
		args = append(args, nullInt(int64(v.ErrorCode), v.Outcome == observe.OutcomeError),
			nullInt(int64(v.Skipped), v.Outcome == observe.OutcomeNotQueried), int64(v.Queries),
			nullInt(v.RTT.Microseconds(), v.RTT > 0))
		if v.Version != "" {
			args = append(args, b.text.take())
		} else {
			args = append(args, nil)
		}
		args = append(args, v.ReadOnly, int64(v.BEP51),
			nullInt(int64(v.Num), v.BEP51 == observe.BEP51Yes), nullInt(int64(v.Interval), v.BEP51 == observe.BEP51Yes),
			bep42.Acceptable(v.Node.ID, k.addr.Addr()),
			nullInt(int64(v.Discounted), v.Discounted != observe.DiscountNone))
	}
	b.visitArgs = args
}

// nullInt returns x, or nil (NULL) when ok is false.
func nullInt(x int64, ok bool) any {
	if !ok {
		return nil
	}
	return x
}

// NodeState is what the history tells of a node, for a revisit run.
type NodeState struct {
	Node krpc.NodeInfo
	// Up reports whether the node's latest session is open.
	Up bool
	// Since is when the node entered that state: the start of its open
	// session, or the first failed visit of the one that closed.
	Since time.Time
	// BEP51 reports that the node has answered sample_infohashes.
	BEP51 bool
}

// NodesToRevisit returns the nodes worth revisiting, from what has been
// committed (call Flush first for the latest): those whose latest
// session is open, those whose latest session closed by timing out at
// or after downSince, and, for files with history from before visits
// were recorded, the nodes that replied at or after downSince and have
// no session. Sessions closed because the node's ID or address changed
// are left out: that node is the new one now.
func (d *DB) NodesToRevisit(ctx context.Context, downSince time.Time) ([]NodeState, error) {
	rows, err := d.r.QueryContext(ctx, `
		SELECT n.id, n.ip, n.port, s.state = 'open',
			CASE WHEN s.state = 'open' THEN s.started ELSE coalesce(s.failed_since, s.closed) END,
			EXISTS (SELECT 1 FROM samples sa WHERE sa.node_id = n.id AND sa.ip = n.ip AND sa.port = n.port)
		FROM sessions s JOIN nodes n ON n.ref = s.node
		WHERE s.id = (SELECT max(l.id) FROM sessions l WHERE l.node = s.node)
		  AND (s.state = 'open' OR (s.close_reason = 'timeout' AND s.closed >= $1))
		UNION ALL
		SELECT n.id, n.ip, n.port, true, n.last_reply,
			EXISTS (SELECT 1 FROM samples sa WHERE sa.node_id = n.id AND sa.ip = n.ip AND sa.port = n.port)
		FROM nodes n
		WHERE n.last_reply >= $1 AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.node = n.ref)`,
		downSince.UnixMilli())
	if err != nil {
		return nil, &Error{Op: "query", Path: d.path, Err: err}
	}
	defer rows.Close()
	var out []NodeState
	for rows.Next() {
		var (
			idHex, ip string
			port      int
			since     int64
			ns        NodeState
		)
		if err := rows.Scan(&idHex, &ip, &port, &ns.Up, &since, &ns.BEP51); err != nil {
			return nil, &Error{Op: "query", Path: d.path, Err: err}
		}
		id, err1 := krpc.ParseID(idHex)
		addr, err2 := netip.ParseAddr(ip)
		if err1 != nil || err2 != nil || port <= 0 || port > 65535 {
			continue // not a row this package wrote
		}
		ns.Node = krpc.NodeInfo{ID: id, Addr: netip.AddrPortFrom(addr, uint16(port))}
		ns.Since = time.UnixMilli(since)
		out = append(out, ns)
	}
	if err := rows.Err(); err != nil {
		return nil, &Error{Op: "query", Path: d.path, Err: err}
	}
	return out, nil
}

// NodesInPrefix returns up to limit nodes whose ID begins with the first
// bits bits of prefix, seen at or after since, from what has been
// committed: those that have answered first, then the most recently
// seen. A zone of a shared crawl starts from them (crawler.Config.Seeds),
// nodes that the crawl's other zones saw listed.
func (d *DB) NodesInPrefix(ctx context.Context, prefix krpc.ID, bits int, since time.Time, limit int) ([]krpc.NodeInfo, error) {
	if bits < 0 || bits > 8*krpc.IDLen {
		return nil, fmt.Errorf("db: a prefix of %d bits (0 to %d)", bits, 8*krpc.IDLen)
	}
	// The IDs are stored as lower-case hex, so the prefix's IDs are
	// the range from the prefix with every later bit 0 to the prefix
	// with every later bit 1, compared as strings.
	lo, hi := prefix, prefix
	for i := bits; i < 8*krpc.IDLen; i++ {
		lo[i/8] &^= 0x80 >> (i % 8)
		hi[i/8] |= 0x80 >> (i % 8)
	}
	rows, err := d.r.QueryContext(ctx, `SELECT id, ip, port FROM nodes
		WHERE id >= $1 AND id <= $2 AND last_seen >= $3
		ORDER BY last_reply IS NULL, last_seen DESC LIMIT $4`,
		lo.String(), hi.String(), since.UnixMilli(), limit)
	if err != nil {
		return nil, &Error{Op: "query", Path: d.path, Err: err}
	}
	defer rows.Close()
	var out []krpc.NodeInfo
	for rows.Next() {
		var (
			idHex, ip string
			port      int
		)
		if err := rows.Scan(&idHex, &ip, &port); err != nil {
			return nil, &Error{Op: "query", Path: d.path, Err: err}
		}
		id, err1 := krpc.ParseID(idHex)
		addr, err2 := netip.ParseAddr(ip)
		if err1 != nil || err2 != nil || port <= 0 || port > 65535 {
			continue // not a row this package wrote
		}
		out = append(out, krpc.NodeInfo{ID: id, Addr: netip.AddrPortFrom(addr, uint16(port))})
	}
	if err := rows.Err(); err != nil {
		return nil, &Error{Op: "query", Path: d.path, Err: err}
	}
	return out, nil
}
