package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/lightdht/lightdht"
	"github.com/lightdht/lightdht/db"
	"github.com/lightdht/lightdht/krpc"
	"github.com/lightdht/lightdht/table"
)

// nodeFlags are the flags of the subcommands that run a node.
type nodeFlags struct {
	bootstrap *string
	listen    *string
	listen6   *string
	id        *string
	table     *string
	readOnly  *bool

	// oneShot marks the temporary node of one operation: it bootstraps
	// once, when the command asks, and runs no background maintenance
	// (its own bootstrap would ask every node the same questions again).
	oneShot bool
	// addrChanged, if set, receives the node's external address changes
	// (lightdht.Config.AddrChanged).
	addrChanged func(lightdht.AddrChange)
	// resume, if set, is the state of an earlier run
	// (lightdht.Config.Resume).
	resume *lightdht.Snapshot
	// queryTimeout is --query-timeout (lightdht.Config.QueryTimeout), for
	// the commands that add it (addQueryTimeout); nil: the node's default.
	queryTimeout *time.Duration
}

func (c *cli) addNodeFlags(listenDefault string, readOnly bool) *nodeFlags {
	return &nodeFlags{
		bootstrap: c.addBootstrap(),
		listen:    c.fs.String("listen", listenDefault, "IPv4 address and UDP port to listen on (empty: 127.0.0.1:0 for a loopback bootstrap, 0.0.0.0:0 otherwise)"),
		listen6:   c.fs.String("listen6", "", "IPv6 address and UDP port to listen on as well, e.g. [::]:6881 (BEP 32)"),
		id:        c.fs.String("id", "", "node ID, 40 hex digits (default: random)"),
		table:     c.fs.String("table", "kbucket", "routing table: kbucket, flat or prefix"),
		readOnly:  c.fs.Bool("read-only", readOnly, "BEP 43 read-only node: answer no queries"),
	}
}

// maxQueryTimeout is the longest --query-timeout: a node that has not
// answered within a minute is gone, and waiting longer per attempt only
// holds the lookup up.
const (
	maxQueryTimeout     = time.Minute
	maxQueryTimeoutText = "1m" // as a user writes it; time.Duration prints 1m0s
)

// queryTimeoutFlagUsage is the help of --query-timeout.
var queryTimeoutFlagUsage = fmt.Sprintf("wait per attempt of each query the node sends, at most %s (an unanswered query is resent %s: %d attempts in all; once replies have been seen, attempts but the last wait less, down to %v)",
	maxQueryTimeoutText, times(lightdht.DefaultRetries), lightdht.DefaultRetries+1, krpc.MinAttemptTimeout)

// addQueryTimeout adds --query-timeout, the per-query timeout of the
// node, to a command that runs lookups (the iterative commands and the
// shell).
func (c *cli) addQueryTimeout(nf *nodeFlags) {
	nf.queryTimeout = c.fs.Duration("query-timeout", lightdht.DefaultQueryTimeout, queryTimeoutFlagUsage)
}

// checkQueryTimeout checks --query-timeout, if the command has it.
func (nf *nodeFlags) checkQueryTimeout() error {
	if nf.queryTimeout == nil {
		return nil
	}
	if d := *nf.queryTimeout; d <= 0 || d > maxQueryTimeout {
		return usagef("bad --query-timeout %v: want a positive duration of at most %s", d, maxQueryTimeoutText)
	}
	return nil
}

// startNode builds and serves a node from the flags. The node is closed
// when ctx ends or by the caller; wait returns Serve's error.
//
// openObs, if not nil, is called once the sockets are open and returns the
// node's observer; it runs after the checks that can fail on bad input,
// so that a mistyped command line creates no database file.
func (c *cli) startNode(ctx context.Context, nf *nodeFlags, openObs func() (lightdht.Observer, error)) (n *lightdht.Node, wait func() error, err error) {
	if err := nf.checkQueryTimeout(); err != nil {
		return nil, nil, err
	}
	boot, err := c.resolveBootstrap(ctx, *nf.bootstrap)
	if err != nil {
		return nil, nil, err
	}
	cfg := lightdht.Config{Bootstrap: boot, ReadOnly: *nf.readOnly, Logger: c.log, NoMaintenance: nf.oneShot,
		AddrChanged: nf.addrChanged, Resume: nf.resume}
	if nf.queryTimeout != nil {
		cfg.QueryTimeout = *nf.queryTimeout
	}
	if *nf.id != "" {
		if cfg.ID, err = parseID("--id", *nf.id); err != nil {
			return nil, nil, err
		}
	}
	if cfg.Table, err = table.ParseKind(*nf.table); err != nil {
		return nil, nil, usagef("bad --table %q: want kbucket, flat or prefix", *nf.table)
	}
	if allLocal(boot) {
		// A local test network often runs many nodes per IP. Only that
		// limit is lifted, not the whole lightdht.LocalTestNet profile: a
		// private address may lead to the public DHT, where the rate
		// limits protect others.
		cfg.IPsPerBucket = -1
	}
	var closers []io.Closer
	fail := func(err error) (*lightdht.Node, func() error, error) {
		for _, cl := range closers {
			cl.Close()
		}
		return nil, nil, err
	}
	if *nf.listen != "" || has4(boot) || *nf.listen6 == "" {
		conn, err := listenUDP(*nf.listen, "listen", boot, false)
		if err != nil {
			return fail(err)
		}
		if conn.LocalAddr().(*net.UDPAddr).IP.To4() == nil {
			conn.Close()
			return fail(usagef("bad --listen %q: not an IPv4 address (use --listen6)", *nf.listen))
		}
		cfg.Conn4 = conn
		closers = append(closers, conn)
	}
	if *nf.listen6 != "" || (has6(boot) && *nf.listen == "") {
		conn, err := listenUDP(*nf.listen6, "listen6", boot, true)
		if err != nil {
			return fail(err)
		}
		cfg.Conn6 = conn
		closers = append(closers, conn)
	}
	if openObs != nil {
		if cfg.Observer, err = openObs(); err != nil {
			return fail(err)
		}
	}
	n, err = lightdht.New(cfg)
	if err != nil {
		return fail(err)
	}
	served := make(chan error, 1)
	go func() { served <- n.Serve(ctx) }()
	return n, func() error { n.Close(); return <-served }, nil
}

func nodeCmd(c *cli) func(context.Context, []string) error {
	c.addJSON()
	nf := c.addNodeFlags("0.0.0.0:6881", false)
	dbPath := c.addDB()
	statePath := c.fs.String("state", "", "file to keep the node ID and routing table in across runs (empty: none)")
	stateEvery := c.fs.Duration("state-every", defaultStateEvery, "how often to save --state while running")
	metricsAddr := c.addMetrics()
	ef := c.addEnrichFlags()
	return func(ctx context.Context, args []string) error {
		if err := nargs(args, 0, 0, "no arguments"); err != nil {
			return err
		}
		enricher, err := ef.open()
		if err != nil {
			return err
		}
		if enricher != nil {
			defer enricher.Close()
		}
		if *stateEvery <= 0 {
			return usagef("bad --state-every %v: want a positive duration", *stateEvery)
		}
		if *statePath != "" {
			var err error
			if nf.resume, err = c.loadState(*statePath); err != nil {
				return err
			}
		}
		set, metricsURL, stopMetrics, err := c.startMetrics(*metricsAddr)
		if err != nil {
			return err
		}
		defer stopMetrics()
		var d *db.DB
		var outMu sync.Mutex // the node reports address changes from its own goroutines
		nf.addrChanged = func(ch lightdht.AddrChange) {
			outMu.Lock()
			defer outMu.Unlock()
			reportAddrChange(c, ch)
		}
		n, wait, err := c.startNode(ctx, nf, func() (lightdht.Observer, error) {
			var err error
			if d, err = db.Open(*dbPath, db.Options{}); err != nil {
				return nil, err
			}
			// On the node's packet path: a slow disk sheds sightings
			// rather than stalling the node.
			if set == nil {
				return d.NonBlocking(), nil
			}
			set.SetDB(d)
			return set.Tee(d.NonBlocking()), nil
		})
		if err != nil {
			if d != nil {
				d.Close()
			}
			return err
		}
		if set != nil {
			set.AddNode(n)
		}
		type started struct {
			ID      string `json:"id"`
			Addr    string `json:"addr"`
			Addr6   string `json:"addr6,omitempty"`
			DB      string `json:"db"`
			Metrics string `json:"metrics,omitempty"`
		}
		st := started{ID: n.ID().String(), Addr: n.Addr().String(), DB: db.Redact(*dbPath), Metrics: metricsURL}
		outMu.Lock()
		err = c.output(st, func(w io.Writer) {
			fmt.Fprintf(w, "node %s listening on %s, recording into %s\n", st.ID, st.Addr, st.DB)
		})
		outMu.Unlock()
		if err != nil {
			wait()
			d.Close()
			return err
		}
		if *statePath != "" {
			c.saveStateUntil(ctx, n, *statePath, *stateEvery)
		} else {
			<-ctx.Done()
		}
		serveErr := wait()
		var saveErr error
		if *statePath != "" && serveErr == nil {
			saveErr = writeState(*statePath, n.Snapshot(), time.Now()) // the clean stop's final state
		}
		s := n.Stats()
		fctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		flushErr := d.Flush(fctx)
		var enrichErr error
		if enricher != nil && flushErr == nil {
			_, enrichErr = enrichDB(fctx, d, enricher, false)
		}
		closeErr := d.Close()
		ds := d.Stats()
		if err := errors.Join(serveErr, flushErr, enrichErr, closeErr, saveErr); err != nil {
			return err
		}
		type stopped struct {
			Stopped   bool   `json:"stopped"`
			Nodes     int    `json:"table_nodes"`
			Sightings uint64 `json:"sightings_written"`
			Shed      uint64 `json:"sightings_shed"`
		}
		out := stopped{true, s.Nodes4 + s.Nodes6, ds.Written, ds.Shed}
		return c.output(out, func(w io.Writer) {
			fmt.Fprintf(w, "stopped: %d nodes in the routing table, %d sightings written\n", out.Nodes, out.Sightings)
			if out.Shed > 0 {
				fmt.Fprintf(w, "sightings shed: %d (the database did not keep up; the node kept answering)\n", out.Shed)
			}
		})
	}
}

// saveStateUntil saves the node's state to path every interval until ctx
// ends. A failed save is logged and retried at the next tick; the final
// save on stop reports its own error.
func (c *cli) saveStateUntil(ctx context.Context, n *lightdht.Node, path string, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if err := writeState(path, n.Snapshot(), time.Now()); err != nil {
				c.log.Warn().Err(err).Msg("saving the state failed; will retry")
			}
		}
	}
}

// reportAddrChange prints a change of the node's external address, and
// its new ID if it took one.
func reportAddrChange(c *cli, ch lightdht.AddrChange) {
	type addrChange struct {
		External string `json:"external_addr"`
		Was      string `json:"was,omitempty"`
		Family   string `json:"family"`
		ID       string `json:"id"`
		NewID    bool   `json:"new_id"`
	}
	out := addrChange{External: ch.Is.String(), Family: "ipv4", ID: ch.ID.String(), NewID: ch.NewID}
	if ch.V6 {
		out.Family = "ipv6"
	}
	if ch.Was.IsValid() {
		out.Was = ch.Was.String()
	}
	c.output(out, func(w io.Writer) {
		was := "unknown"
		if out.Was != "" {
			was = out.Was
		}
		fmt.Fprintf(w, "external address %s (was %s)", out.External, was)
		if out.NewID {
			fmt.Fprintf(w, "; new BEP 42 node ID %s, rejoining", out.ID)
		}
		fmt.Fprintln(w)
	})
}

// tempNode starts a read-only node for one operation and waits until it
// has bootstrapped.
func (c *cli) tempNode(ctx context.Context, nf *nodeFlags) (*lightdht.Node, func(), error) {
	n, wait, err := c.startNode(ctx, nf, nil)
	if err != nil {
		return nil, nil, err
	}
	size, err := n.Bootstrap(ctx)
	if err != nil {
		wait()
		if ctx.Err() != nil {
			return nil, nil, fmt.Errorf("bootstrap: %w", context.Cause(ctx))
		}
		return nil, nil, fmt.Errorf("bootstrap: %w", err)
	}
	c.log.Info().Int("table", size).Msg("bootstrapped")
	return n, func() { wait() }, nil
}

// iterFlags adds the flags of the iterative commands: lookup, peers,
// announce, put, get and delete.
func (c *cli) iterFlags() (*nodeFlags, *time.Duration) {
	c.addJSON()
	nf := c.addNodeFlags("", true)
	nf.oneShot = true
	c.addQueryTimeout(nf)
	timeout := c.fs.Duration("timeout", time.Minute, "give up after this long, bootstrap included")
	return nf, timeout
}

// withTempNode runs f with a temporary node joined through --bootstrap,
// everything within timeout: the common part of lookup, peers, announce,
// put and get.
func (c *cli) withTempNode(ctx context.Context, nf *nodeFlags, timeout time.Duration, f func(context.Context, *lightdht.Node) error) error {
	ctx, cancel, err := withTimeout(ctx, timeout)
	if err != nil {
		return err
	}
	defer cancel()
	n, stop, err := c.tempNode(ctx, nf)
	if err != nil {
		return err
	}
	defer stop()
	return f(ctx, n)
}

func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc, error) {
	if d <= 0 {
		return nil, nil, usagef("--timeout must be positive")
	}
	ctx, cancel := context.WithTimeoutCause(ctx, d, fmt.Errorf("timed out after %v", d))
	return ctx, cancel, nil
}

type lookupResult struct {
	Target     string     `json:"target"`
	Nodes      []nodeJSON `json:"nodes"`
	Nodes6     []nodeJSON `json:"nodes6,omitempty"`
	Queries    int        `json:"queries"`
	Replies    int        `json:"replies"`
	DurationMs float64    `json:"duration_ms"`
}

func lookupCmd(c *cli) func(context.Context, []string) error {
	nf, timeout := c.iterFlags()
	return func(ctx context.Context, args []string) error {
		if err := nargs(args, 1, 1, "TARGET"); err != nil {
			return err
		}
		target, err := parseID("target", args[0])
		if err != nil {
			return err
		}
		return c.withTempNode(ctx, nf, *timeout, func(ctx context.Context, n *lightdht.Node) error {
			r, err := n.FindNode(ctx, target)
			if err != nil {
				return fmt.Errorf("lookup %v: %w", target, err)
			}
			out := lookupResult{Target: target.String(), Nodes: nodesJSON(r.Nodes), Nodes6: nodesJSON(r.Nodes6),
				Queries: r.Stats.Queries, Replies: r.Stats.Replies, DurationMs: ms(r.Stats.Duration)}
			return c.output(out, func(w io.Writer) { printLookup(w, out) })
		})
	}
}

func printLookup(w io.Writer, out lookupResult) {
	fmt.Fprintf(w, "closest nodes to %s (%d queries, %d replies, %.0f ms):\n", out.Target, out.Queries, out.Replies, out.DurationMs)
	target, _ := krpc.ParseID(out.Target)
	for _, nd := range append(out.Nodes, out.Nodes6...) {
		id, _ := krpc.ParseID(nd.ID)
		fmt.Fprintf(w, "node %s %s (%d common bits)\n", nd.ID, nd.Addr, id.CommonPrefixLen(target))
	}
}

type peersResult struct {
	Infohash   string   `json:"infohash"`
	Peers      []string `json:"peers"`
	Queries    int      `json:"queries"`
	DurationMs float64  `json:"duration_ms"`
}

func peersOf(ih krpc.ID, r lightdht.GetPeersResult) peersResult {
	out := peersResult{Infohash: ih.String(), Peers: []string{}, Queries: r.Stats.Queries, DurationMs: ms(r.Stats.Duration)}
	for _, p := range r.Peers {
		out.Peers = append(out.Peers, p.String())
	}
	return out
}

func printPeers(w io.Writer, out peersResult) {
	fmt.Fprintf(w, "%d peers for %s (%d queries, %.0f ms)\n", len(out.Peers), out.Infohash, out.Queries, out.DurationMs)
	for _, p := range out.Peers {
		fmt.Fprintf(w, "peer %s\n", p)
	}
}

func peersCmd(c *cli) func(context.Context, []string) error {
	nf, timeout := c.iterFlags()
	return func(ctx context.Context, args []string) error {
		if err := nargs(args, 1, 1, "INFOHASH"); err != nil {
			return err
		}
		ih, err := parseID("infohash", args[0])
		if err != nil {
			return err
		}
		return c.withTempNode(ctx, nf, *timeout, func(ctx context.Context, n *lightdht.Node) error {
			r, err := n.GetPeers(ctx, ih)
			if err != nil {
				return fmt.Errorf("peers %v: %w", ih, err)
			}
			out := peersOf(ih, r)
			return c.output(out, func(w io.Writer) { printPeers(w, out) })
		})
	}
}

type announceResult struct {
	Infohash    string     `json:"infohash"`
	Port        int        `json:"port"`
	AnnouncedTo []nodeJSON `json:"announced_to"`
	Refused     int        `json:"refused"`
}

func announceOf(ih krpc.ID, port int, r lightdht.AnnounceResult) announceResult {
	return announceResult{Infohash: ih.String(), Port: port, AnnouncedTo: nodesJSON(r.AnnouncedTo), Refused: len(r.Refused)}
}

func printAnnounce(w io.Writer, out announceResult) {
	fmt.Fprintf(w, "announced %s port %d to %d nodes (%d refused)\n", out.Infohash, out.Port, len(out.AnnouncedTo), out.Refused)
	for _, nd := range out.AnnouncedTo {
		fmt.Fprintf(w, "node %s %s\n", nd.ID, nd.Addr)
	}
}

func parsePort(s string) (int, error) {
	var p int
	if _, err := fmt.Sscan(s, &p); err != nil || p < 0 || p > 65535 || fmt.Sprint(p) != s {
		return 0, usagef("bad port %q: want 0 to 65535", s)
	}
	return p, nil
}

func announceCmd(c *cli) func(context.Context, []string) error {
	nf, timeout := c.iterFlags()
	port := c.optIntFlag("port", "the peer's TCP `port` (required; 0: the port the announce comes from, BEP 5 implied_port)")
	return func(ctx context.Context, args []string) error {
		if err := nargs(args, 1, 1, "INFOHASH"); err != nil {
			return err
		}
		ih, err := parseID("infohash", args[0])
		if err != nil {
			return err
		}
		if !port.set || port.v < 0 || port.v > 65535 {
			return usagef("--port is required: 0 to 65535")
		}
		return c.withTempNode(ctx, nf, *timeout, func(ctx context.Context, n *lightdht.Node) error {
			r, err := n.Announce(ctx, ih, int(port.v))
			if err != nil {
				return err
			}
			out := announceOf(ih, int(port.v), r)
			return c.output(out, func(w io.Writer) { printAnnounce(w, out) })
		})
	}
}

// addDB adds --db.
func (c *cli) addDB() *string {
	return c.fs.String("db", "lightdht.db", "SQLite database file, or a postgres:// URL of a PostgreSQL database")
}

// needDB returns an error unless the database exists: a SQLite file must
// be there already (Open would create an empty one); a PostgreSQL URL is
// checked by opening it. what follows "no database at PATH" in the error.
func needDB(path, what string) error {
	if db.IsPostgres(path) {
		return nil
	}
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("no database at %s%s (%w)", path, what, err)
	}
	return nil
}

// netipString formats addresses for logs and JSON.
func netipStrings(as []netip.AddrPort) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return out
}
