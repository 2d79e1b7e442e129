package main

// End-to-end tests: TestMain builds the binary once and the tests drive it
// with exec. Every packet stays on loopback: each test runs its own test
// network on its own 127.x.0.0/16 range with ports the kernel picks, and
// the run helper refuses to start a command that would fall back on the
// default (public) bootstrap routers.

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lightdht/lightdht/db"
	"github.com/lightdht/lightdht/internal/cmdtest"
	"github.com/lightdht/lightdht/internal/pgtest"
	_ "github.com/mattn/go-sqlite3"
)

var bin string // the lightdht binary under test

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lightdht-cmd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "lightdht")
	if err := cmdtest.Build(".", bin); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := pgtest.Run(m) // stops the PostgreSQL server the tests started, if any
	os.RemoveAll(dir)
	os.Exit(code)
}

// guard fails the test unless every address the command would contact is
// on loopback (cmdtest.CheckLoopback).
func guard(t *testing.T, env []string, args []string) {
	t.Helper()
	if err := cmdtest.CheckLoopback(env, args); err != nil {
		t.Fatal(err)
	}
}

type result struct {
	stdout, stderr string
	code           int
}

// hangGuard bounds every wait on a subprocess, and queryWait is the
// --timeout (a wait per attempt, or per shell command) of queries to
// nodes that answer. Both only stop a hung run: the tests wait on
// outcomes (an exit, a line printed, a row written, a reply), which a
// loaded machine delays but does not change.
const (
	hangGuard = cmdtest.HangGuard
	queryWait = time.Minute
)

// exe runs the binary with args, extra environment variables and
// stdin, and waits for it to exit (killing it after hangGuard).
func exe(t *testing.T, env []string, stdin string, args ...string) result {
	t.Helper()
	guard(t, env, args)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = cmdtest.CleanEnv(env...)
	cmd.Stdin = strings.NewReader(stdin)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("lightdht %v still running after %v: killed; stderr:\n%s", args, hangGuard, se.String())
	}
	if _, isExit := err.(*exec.ExitError); err != nil && !isExit {
		t.Fatalf("lightdht %v: %v", args, err)
	}
	r := result{so.String(), se.String(), cmd.ProcessState.ExitCode()}
	noCrash(t, args, r.stderr)
	return r
}

// noCrash fails the test if stderr shows that lightdht args crashed.
func noCrash(t *testing.T, args []string, stderr string) {
	t.Helper()
	if bad := cmdtest.Crash(stderr); bad != "" {
		t.Errorf("lightdht %v: %q on stderr:\n%s", args, bad, stderr)
	}
}

// proc is a lightdht command running in the background (startProc)
// that has printed its first line on stdout.
type proc struct {
	t      *testing.T
	args   []string
	cmd    *exec.Cmd
	out    *bufio.Scanner // stdout after the first line
	stderr cmdtest.LockedBuffer
	first  string // the first line of stdout
}

// startProc starts the binary with args (checked by guard) and waits
// for the first line it prints on stdout. It is killed at the end of the
// test, or after hangGuard.
func startProc(t *testing.T, args ...string) *proc {
	t.Helper()
	guard(t, nil, args)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	t.Cleanup(cancel)
	p := &proc{t: t, args: args, cmd: exec.CommandContext(ctx, bin, args...)}
	p.cmd.Env = cmdtest.CleanEnv()
	p.cmd.Stderr = &p.stderr
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.out = bufio.NewScanner(stdout)
	if !p.out.Scan() {
		t.Fatalf("lightdht %s printed nothing; stderr:\n%s", args[0], p.stderr.String())
	}
	p.first = p.out.Text()
	return p
}

// stop interrupts the command as Ctrl-C does, reads the rest of its
// stdout, waits for it to exit and checks that it exited 0 without a
// crash. It returns the rest of stdout and the whole of stderr.
func (p *proc) stop() (rest, stderr string) {
	p.t.Helper()
	p.cmd.Process.Signal(os.Interrupt)
	var lines []string
	for p.out.Scan() {
		lines = append(lines, p.out.Text())
	}
	if err := p.cmd.Wait(); err != nil {
		p.t.Errorf("lightdht %s: %v; stderr:\n%s", p.args[0], err, p.stderr.String())
	}
	noCrash(p.t, p.args, p.stderr.String())
	return strings.Join(lines, "\n"), p.stderr.String()
}

// ok runs the command and fails the test unless it exits 0.
func ok(t *testing.T, env []string, args ...string) string {
	t.Helper()
	r := exe(t, env, "", args...)
	if r.code != 0 {
		t.Fatalf("lightdht %v: exit %d\nstdout: %s\nstderr: %s", args, r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

func decode[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("decode %q: %v", s, err)
	}
	return v
}

// testnetOut is the --json output of lightdht testnet.
type testnetOut = cmdtest.Testnet

// startTestnet runs "lightdht testnet" with n nodes from the loopback IP
// first and returns its --json output once the network is ready. The
// process is interrupted (and killed if it lingers) when the test ends.
func startTestnet(t *testing.T, n int, first string) testnetOut {
	t.Helper()
	out, _ := startStoppableTestnet(t, n, first)
	return out
}

// startStoppableTestnet is startTestnet that also returns a function
// that stops the network (as at the end of the test) and waits for it.
// The extra arguments are added to the command line.
func startStoppableTestnet(t *testing.T, n int, first string, extra ...string) (testnetOut, func()) {
	t.Helper()
	return cmdtest.StartTestnet(t, bin, n, first, extra...)
}

// openDB opens a SQLite file, or a postgres:// database, for reading.
func openDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	if db.IsPostgres(path) {
		d, err := db.OpenReadOnly(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		return d
	}
	d, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func scalar[T any](t *testing.T, d *sql.DB, q string, args ...any) T {
	t.Helper()
	var v T
	if err := d.QueryRow(q, args...).Scan(&v); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return v
}

// TestCrawlTestnet crawls a 30-node test network: the crawl finds and
// records every node, and stats agrees with SQL on the file.
func TestCrawlTestnet(t *testing.T) {
	t.Parallel()
	tn := startTestnet(t, 30, "127.21.0.1")
	path := filepath.Join(t.TempDir(), "crawl.db")
	// The crawler can miss a node that few tables hold (about 1 in 300),
	// so one of the 30 may be missing; what was found must be in the file.
	sum := decode[crawlSummary](t, ok(t, nil, "crawl", "--testnet", "--bootstrap", tn.Bootstrap, "--db", path, "--json", "--idle", queryWait.String()))
	if sum.Nodes < 29 || sum.Replied != sum.Nodes || sum.Queries < sum.Nodes || sum.Interrupted || sum.Run != 1 {
		t.Errorf("summary %+v, want at least 29 of 30 nodes found, all replied, in run 1", sum)
	}
	d := openDB(t, path)
	recorded := 0
	for _, n := range tn.Nodes {
		ap := netip.MustParseAddrPort(n.Addr)
		if r := scalar[int](t, d, "SELECT coalesce(max(replies), 0) FROM nodes WHERE id = ? AND ip = ? AND port = ?",
			n.ID, ap.Addr().String(), ap.Port()); r > 0 {
			recorded++
		}
	}
	if recorded != sum.Replied {
		t.Errorf("%d testnet nodes recorded as replied, the crawl reported %d", recorded, sum.Replied)
	}
	st := decode[statsResult](t, ok(t, nil, "stats", "--db", path, "--json"))
	nodes := scalar[int64](t, d, "SELECT count(*) FROM nodes")
	replied := scalar[int64](t, d, "SELECT count(*) FROM nodes WHERE replies > 0")
	runs := scalar[int64](t, d, "SELECT count(*) FROM crawl_runs WHERE ended IS NOT NULL")
	if st.Nodes != nodes || st.Replied != replied || st.CrawlRuns != runs || runs != 1 || nodes != int64(sum.Nodes) || replied != int64(sum.Replied) {
		t.Errorf("stats %+v; SQL: %d nodes, %d replied, %d ended runs", st, nodes, replied, runs)
	}
	if st.LastRun == nil || st.LastRun.Ended == nil || *st.LastRun.NodesReplied == 0 {
		t.Errorf("stats last run %+v", st.LastRun)
	}
	if len(st.Versions) == 0 || st.Versions[0].Version != "LD0001" {
		t.Errorf("stats versions %+v", st.Versions)
	}
	// The plain form says the same.
	if out := ok(t, nil, "stats", "--db", path); !strings.Contains(out, fmt.Sprintf("nodes:      %d (%d replied", nodes, replied)) {
		t.Errorf("stats:\n%s", out)
	}
}

// TestQueries runs the single and iterative queries against a test
// network, and checks that --bootstrap (flag or environment) replaces the
// default routers entirely.
func TestQueries(t *testing.T) {
	t.Parallel()
	tn := startTestnet(t, 12, "127.22.0.1")
	b := tn.Bootstrap
	target := tn.Nodes[1]

	wait := queryWait.String() // each single query's --timeout
	ping := decode[replyJSON](t, ok(t, nil, "ping", target.Addr, "--json", "--timeout", wait))
	if ping.ID != target.ID || ping.Addr != target.Addr || ping.Version != "LD0001" || ping.RTTms <= 0 {
		t.Errorf("ping %+v, want node %+v", ping, target)
	}
	if out := ok(t, nil, "ping", target.Addr, "--timeout", wait); !strings.Contains(out, "pong from "+target.Addr+" id "+target.ID) {
		t.Errorf("ping: %s", out)
	}
	fn := decode[queryResult](t, ok(t, nil, "find-node", target.Addr, tn.Nodes[5].ID, "--json", "--timeout", wait))
	if len(fn.Nodes) == 0 || fn.Target != tn.Nodes[5].ID {
		t.Errorf("find-node %+v", fn)
	}

	const ih = "0123456789abcdef0123456789abcdef01234567"
	ann := decode[announceResult](t, ok(t, nil, "announce", ih, "--port", "51413", "--bootstrap", b, "--json"))
	if len(ann.AnnouncedTo) == 0 || ann.Port != 51413 {
		t.Fatalf("announce %+v", ann)
	}
	peers := decode[peersResult](t, ok(t, nil, "peers", ih, "--bootstrap", b, "--json"))
	if !slices.Contains(peers.Peers, "127.0.0.1:51413") || peers.Queries == 0 || peers.Infohash != ih {
		t.Errorf("peers %+v, want 127.0.0.1:51413", peers)
	}
	holder := ann.AnnouncedTo[0].Addr
	gp := decode[queryResult](t, ok(t, nil, "get-peers", holder, ih, "--json", "--timeout", wait))
	if !slices.Contains(gp.Peers, "127.0.0.1:51413") || gp.Token == "" {
		t.Errorf("get-peers %+v", gp)
	}
	sample := decode[queryResult](t, ok(t, nil, "sample", holder, "--json", "--timeout", wait))
	if !slices.Contains(sample.Samples, ih) || sample.Num == nil || *sample.Num < 1 {
		t.Errorf("sample %+v, want %s", sample, ih)
	}

	// lookup through LIGHTDHT_BOOTSTRAP, then --bootstrap: the debug log
	// lists the addresses used, which never include the default routers.
	for _, run := range []struct {
		env  []string
		args []string
	}{
		{[]string{"LIGHTDHT_BOOTSTRAP=" + b}, []string{"lookup", target.ID, "--json", "--log-level", "debug"}},
		{nil, []string{"lookup", target.ID, "--json", "--log-level", "debug", "--bootstrap", b}},
	} {
		r := exe(t, run.env, "", run.args...)
		if r.code != 0 {
			t.Fatalf("lookup: exit %d: %s", r.code, r.stderr)
		}
		lk := decode[lookupResult](t, r.stdout)
		if len(lk.Nodes) == 0 || lk.Nodes[0].ID != target.ID {
			t.Errorf("lookup %+v, want %s first", lk, target.ID)
		}
		if !strings.Contains(r.stderr, `bootstrap=["`+b+`"]`) {
			t.Errorf("debug log does not list the bootstrap address %s:\n%s", b, r.stderr)
		}
		for _, host := range []string{"router.", "transmissionbt", "libtorrent"} {
			if strings.Contains(r.stderr, host) {
				t.Errorf("default bootstrap %q mentioned although --bootstrap was given:\n%s", host, r.stderr)
			}
		}
	}
}

// TestBadInput: each mistake gives one line on stderr and the right exit
// code, and creates no database file.
func TestBadInput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	busy, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.23.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	corrupt := filepath.Join(dir, "corrupt.db")
	os.WriteFile(corrupt, []byte("this is not a database, just text that is long enough to fill a header........"), 0o644)
	boot := silentAddr(t, "127.23.0.2") // never answers
	const ih = "0123456789abcdef0123456789abcdef01234567"
	cases := []struct {
		args []string
		env  []string
		code int
		want string
	}{
		{[]string{"frobnicate"}, nil, 2, `unknown command "frobnicate"`},
		{[]string{"crawl", "--testnet", "--peers", "--bootstrap", boot}, nil, 2, "--peers needs --infohashes"},
		{[]string{"crawl", "--frob", "--bootstrap", boot}, nil, 2, "flag provided but not defined: -frob"},
		{[]string{"ping"}, nil, 2, "want ADDR"},
		{[]string{"ping", "127.23.0.2"}, nil, 2, `bad address "127.23.0.2": want host:port`},
		{[]string{"ping", "127.23.0.2:70000"}, nil, 2, `port "70000"`},
		{[]string{"ping", "no such host!:1"}, nil, 2, "neither an IP address nor a host name"},
		{[]string{"get-peers", "127.23.0.2:1", "abc"}, nil, 2, `bad infohash "abc": want 40 hex digits, got 3`},
		{[]string{"get-peers", "127.23.0.2:1", "zz" + ih[2:]}, nil, 2, "not hexadecimal"},
		{[]string{"lookup", ih + "00", "--bootstrap", boot}, nil, 2, "bad target"},
		{[]string{"node", "--id", "12", "--bootstrap", boot, "--db", filepath.Join(dir, "id.db")}, nil, 2, "bad --id"},
		{[]string{"lookup", ih, "--table", "tree", "--bootstrap", boot}, nil, 2, `bad --table "tree"`},
		{[]string{"crawl", "--zone", "xy/8", "--testnet", "--bootstrap", boot, "--db", filepath.Join(dir, "z.db")}, nil, 2, "bad --zone"},
		{[]string{"crawl", "--bootstrap", "1.2.3", "--db", filepath.Join(dir, "b.db")}, nil, 2, `bad address "1.2.3"`},
		{[]string{"stats", "--log-level", "loud"}, nil, 2, "bad --log-level"},
		{[]string{"stats"}, []string{"LIGHTDHT_JSON=maybe"}, 2, "LIGHTDHT_JSON"},
		{[]string{"announce", ih, "--bootstrap", boot}, nil, 2, "--port is required"},
		{[]string{"crawl", "--bootstrap", boot, "--db", filepath.Join(dir, "public.db")}, nil, 2, "is not a public address (a local test network needs --testnet)"},
		{[]string{"node", "--listen", busy.LocalAddr().String(), "--bootstrap", boot, "--db", filepath.Join(dir, "busy.db")}, nil, 1, "address already in use"},
		{[]string{"crawl", "--testnet", "--bootstrap", boot, "--db", filepath.Join(dir, "missing", "dir", "x.db")}, nil, 1, "unable to open database file"},
		{[]string{"stats", "--db", corrupt}, nil, 1, "file is not a database"},
		{[]string{"stats", "--db", filepath.Join(dir, "nothing.db")}, nil, 1, "no database at"},
		{[]string{"ping", boot, "--timeout", "100ms"}, nil, 1, "timed out"},
		{[]string{"lookup", ih, "--bootstrap", boot, "--timeout", "300ms"}, nil, 1, "bootstrap"},
	}
	for _, c := range cases {
		r := exe(t, c.env, "", c.args...)
		lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
		if r.code != c.code || !strings.Contains(r.stderr, c.want) || len(lines) != 1 || !strings.HasPrefix(r.stderr, "lightdht") {
			t.Errorf("lightdht %v: exit %d, stderr %q; want exit %d and one line containing %q", c.args, r.code, r.stderr, c.code, c.want)
		}
	}
	for _, f := range []string{"id.db", "z.db", "b.db", "public.db", "busy.db"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			t.Errorf("%s was created by a command that failed on its input", f)
		}
	}
}

// TestCrawlInterrupt: SIGINT during a continuous crawl ends it cleanly:
// exit 130, a summary, a database that passes integrity_check and a
// crawl_runs row with its end time and counts.
func TestCrawlInterrupt(t *testing.T) {
	t.Parallel()
	tn := startTestnet(t, 10, "127.24.0.1")
	path := filepath.Join(t.TempDir(), "interrupted.db")
	args := []string{"crawl", "--continuous", "--testnet", "--bootstrap", tn.Bootstrap, "--db", path, "--progress", "100ms", "--json"}
	cmd, w, so := startWatched(t, 10, args...)
	select {
	case <-w.replied:
	case <-time.After(hangGuard):
		t.Fatalf("no status line with 10 replies after %v; stderr:\n%s", hangGuard, w.text())
	}
	interrupt(t, cmd, w)
	if code := cmd.ProcessState.ExitCode(); code != 130 {
		t.Errorf("exit code %d, want 130; stderr:\n%s", code, w.text())
	}
	noCrash(t, args, w.text())
	sum := decode[crawlSummary](t, so.String())
	if !sum.Interrupted || sum.Replied < 10 {
		t.Errorf("summary %+v", sum)
	}
	d := openDB(t, path)
	if s := scalar[string](t, d, "PRAGMA integrity_check"); s != "ok" {
		t.Errorf("integrity_check: %s", s)
	}
	if n := scalar[int64](t, d, "SELECT count(*) FROM crawl_runs WHERE ended IS NOT NULL AND nodes_replied >= 10"); n != 1 {
		t.Errorf("%d ended crawl runs with 10 replies, want 1", n)
	}
	if n := scalar[int64](t, d, "SELECT count(*) FROM nodes WHERE replies > 0"); n < 10 {
		t.Errorf("%d nodes replied in the database, want 10", n)
	}
}

// TestShell drives the shell through its stdin.
func TestShell(t *testing.T) {
	t.Parallel()
	tn := startTestnet(t, 6, "127.25.0.1")
	n1 := tn.Nodes[1]
	in := strings.Join([]string{"ping " + n1.Addr, "find-node " + n1.Addr, "lookup " + n1.ID, "stats", "help", "bogus", "peers xyz", "quit", "stats"}, "\n") + "\n"
	r := exe(t, nil, in, "shell", "--bootstrap", tn.Bootstrap, "--timeout", queryWait.String())
	if r.code != 0 {
		t.Fatalf("shell exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{
		"joined: ",
		"lightdht [table ",
		"pong from " + n1.Addr + " id " + n1.ID,
		"find_node reply from " + n1.Addr,
		"node " + n1.ID + " " + n1.Addr + " (160 common bits)",
		"routing table: ",
		"external address (from replies' votes): IPv4 unknown", // one /24 is one voter
		"announce INFOHASH PORT",
		`error: unknown command "bogus"`,
		`error: bad infohash "xyz"`,
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("shell output lacks %q:\n%s", want, r.stdout)
		}
	}
	if c := strings.Count(r.stdout, "routing table: "); c != 1 {
		t.Errorf("stats ran %d times, want once (quit ends the shell)", c)
	}
}

// TestHelpAndVersion: help lists every command, -h a command's flags.
func TestHelpAndVersion(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"help"}, {"-h"}} {
		out := ok(t, nil, args...)
		for _, c := range commands {
			if !strings.Contains(out, "  "+c.name+" ") {
				t.Errorf("lightdht %v lacks %s:\n%s", args, c.name, out)
			}
		}
	}
	out := ok(t, nil, "crawl", "-h")
	for _, f := range []string{"-testnet", "-zone", "-bootstrap", defaultBootstrap, "LIGHTDHT_"} {
		if !strings.Contains(out, f) {
			t.Errorf("crawl -h lacks %q:\n%s", f, out)
		}
	}
	if out := ok(t, nil, "help", "ping"); !strings.Contains(out, "usage: lightdht ping ADDR") {
		t.Errorf("help ping:\n%s", out)
	}
	if out := ok(t, nil, "version"); !strings.HasPrefix(out, "lightdht "+programVersion) {
		t.Errorf("version: %s", out)
	}
	if r := exe(t, nil, ""); r.code != 2 || !strings.Contains(r.stderr, "commands:") {
		t.Errorf("no arguments: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestDefaultBootstrapNotResolved runs commands in-process with an
// explicit --bootstrap and checks that no host name is ever resolved: the
// default routers are only the flag's default.
func TestDefaultBootstrapNotResolved(t *testing.T) {
	boot := netip.MustParseAddrPort(silentAddr(t, "127.26.0.1")) // never answers
	var asked []string
	old := lookupHost
	lookupHost = func(_ context.Context, host string) ([]netip.Addr, error) {
		asked = append(asked, host)
		return []netip.Addr{boot.Addr()}, nil
	}
	defer func() { lookupHost = old }()
	const ih = "0123456789abcdef0123456789abcdef01234567"
	var so, se bytes.Buffer
	code := run([]string{"lookup", ih, "--bootstrap", boot.String(), "--timeout", "300ms"}, strings.NewReader(""), &so, &se)
	if code != 1 || len(asked) != 0 {
		t.Errorf("lookup: exit %d, resolved %v (want none), stderr %q", code, asked, se.String())
	}
	// A host name in --bootstrap is resolved, and only it.
	se.Reset()
	code = run([]string{"lookup", ih, "--bootstrap", fmt.Sprintf("localhost:%d", boot.Port()), "--timeout", "300ms"}, strings.NewReader(""), &so, &se)
	if code != 1 || !slices.Equal(asked, []string{"localhost"}) {
		t.Errorf("lookup: exit %d, resolved %v (want localhost only), stderr %q", code, asked, se.String())
	}
	if !strings.Contains(defaultBootstrap, "router.bittorrent.com:6881") {
		t.Errorf("default bootstrap %q", defaultBootstrap)
	}
}

// TestNode runs a node against a test network until SIGINT: it exits 0
// and leaves every node it talked to in the database.
func TestNode(t *testing.T) {
	t.Parallel()
	tn := startTestnet(t, 6, "127.27.0.1")
	path := filepath.Join(t.TempDir(), "node.db")
	node := startProc(t, "node", "--listen", "127.27.1.1:0", "--bootstrap", tn.Bootstrap, "--db", path, "--json", "--table", "flat")
	started := decode[map[string]string](t, node.first)
	if !strings.HasPrefix(started["addr"], "127.27.1.1:") || len(started["id"]) != 40 {
		t.Errorf("node started: %s", node.first)
	}
	// The node bootstraps in the background; wait until its sightings of
	// every testnet node are in the file.
	hung := time.Now().Add(hangGuard)
	for {
		d, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
		var n int
		if err == nil {
			d.QueryRow("SELECT count(*) FROM nodes WHERE replies > 0").Scan(&n)
			d.Close()
		}
		if n >= len(tn.Nodes) {
			break
		}
		if time.Now().After(hung) {
			t.Fatalf("after %v the database holds %d replied nodes, want %d", hangGuard, n, len(tn.Nodes))
		}
		time.Sleep(200 * time.Millisecond)
	}
	rest, _ := node.stop()
	if stopped := decode[map[string]any](t, rest); stopped["stopped"] != true {
		t.Errorf("node stop output %q", rest)
	}
	d := openDB(t, path)
	if s := scalar[string](t, d, "PRAGMA integrity_check"); s != "ok" {
		t.Errorf("integrity_check: %s", s)
	}
}

// TestItems stores and fetches BEP 44 items through the command line:
// keygen, immutable put and get, mutable put with automatic and explicit
// sequence numbers, and the clear refusals of a stale seq, a failed CAS
// and a value too large.
func TestItems(t *testing.T) {
	t.Parallel()
	tn := startTestnet(t, 12, "127.28.0.1")
	dir := t.TempDir()
	key := filepath.Join(dir, "item.key")
	boot := []string{"--bootstrap", tn.Bootstrap}
	run := func(args ...string) string { return ok(t, nil, append(args, boot...)...) }

	kg := decode[map[string]string](t, ok(t, nil, "keygen", key, "--json"))
	if len(kg["pubkey"]) != 64 {
		t.Fatalf("keygen: %v", kg)
	}
	if r := exe(t, nil, "", "keygen", key); r.code == 0 || !strings.Contains(r.stderr, "exists") {
		t.Errorf("keygen over an existing key: exit %d, %q", r.code, r.stderr)
	}

	imm := decode[putResult](t, run("put", "hello DHT", "--json"))
	if imm.Mutable || len(imm.StoredAt) == 0 {
		t.Fatalf("immutable put: %+v", imm)
	}
	got := decode[getResult](t, run("get", imm.Target, "--json"))
	if got.Value != "hello DHT" || got.Raw != "9:hello DHT" {
		t.Errorf("immutable get: %+v", got)
	}

	first := decode[putResult](t, run("put", "version one", "--key", key, "--salt", "s", "--json"))
	if !first.Mutable || first.Seq == nil || *first.Seq != 1 {
		t.Fatalf("first mutable put: %+v", first)
	}
	second := decode[putResult](t, run("put", "version two", "--key", key, "--salt", "s", "--json"))
	if second.Seq == nil || *second.Seq != 2 || second.Target != first.Target {
		t.Fatalf("second mutable put: %+v", second)
	}
	got = decode[getResult](t, run("get", "--pubkey", kg["pubkey"], "--salt", "s", "--json"))
	if got.Value != "version two" || got.Seq == nil || *got.Seq != 2 {
		t.Errorf("mutable get: %+v", got)
	}
	if out := run("get", "--pubkey", kg["pubkey"], "--salt", "s"); !strings.Contains(out, "seq 2\nversion two\n") {
		t.Errorf("plain get:\n%s", out)
	}

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"put", "stale", "--key", key, "--salt", "s", "--seq", "1"}, 1, "sequence number 1 is not newer"},
		{[]string{"put", "swap", "--key", key, "--salt", "s", "--seq", "3", "--cas", "1"}, 1, "compare-and-swap failed"},
		{[]string{"put", strings.Repeat("x", 1000)}, 2, "over BEP 44's 1000-byte limit"},
		{[]string{"put", "v", "--salt", "s"}, 2, "need --key"},
		{[]string{"get", "--pubkey", "abc"}, 2, "want 64 hex digits"},
	} {
		r := exe(t, nil, "", append(tc.args, boot...)...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.want) || strings.Count(strings.TrimSpace(r.stderr), "\n") > 0 {
			t.Errorf("lightdht %v: exit %d, stderr %q; want exit %d and one line mentioning %q", tc.args[:2], r.code, r.stderr, tc.code, tc.want)
		}
	}
}

// TestCrawlRespond: crawl --respond answers queries while it crawls, and
// the infohash of an incoming get_peers lands in the database and in the
// summary. It waits on outcomes (the crawler answering, every node
// replied), never on how fast they come; the time limits only stop a
// hung run.
func TestCrawlRespond(t *testing.T) {
	t.Parallel()
	tn := startTestnet(t, 8, "127.29.0.1")
	path := filepath.Join(t.TempDir(), "respond.db")
	listen := freeUDPAddr(t, "127.29.0.200")
	args := []string{"crawl", "--respond", "--continuous", "--testnet", "--listen", listen, "--progress", "100ms",
		"--bootstrap", tn.Bootstrap, "--db", path, "--json"}
	cmd, w, so := startWatched(t, len(tn.Nodes), args...)
	// The crawler answers as soon as it listens.
	hung := time.Now().Add(hangGuard)
	for exe(t, nil, "", "ping", listen, "--timeout", "1s").code != 0 {
		if time.Now().After(hung) {
			t.Fatalf("crawl --respond never answered a ping; stderr:\n%s", w.text())
		}
	}
	ih := strings.Repeat("ab", 20)
	gp := decode[queryResult](t, ok(t, nil, "get-peers", listen, ih, "--json", "--timeout", queryWait.String()))
	if gp.Token == "" {
		t.Errorf("get-peers to the crawler: %+v, want a token", gp)
	}
	select {
	case <-w.replied:
	case <-time.After(hangGuard):
		t.Fatalf("no status line with %d nodes replied; stderr:\n%s", len(tn.Nodes), w.text())
	}
	interrupt(t, cmd, w)
	if code := cmd.ProcessState.ExitCode(); code != 130 {
		t.Fatalf("exit code %d after SIGINT, want 130; stderr:\n%s", code, w.text())
	}
	sum := decode[crawlSummary](t, so.String())
	if sum.Incoming < 2 || sum.Passive != 1 || sum.Replied < len(tn.Nodes) {
		t.Errorf("summary %+v, want at least 2 incoming queries, 1 infohash, %d nodes replied", sum, len(tn.Nodes))
	}
	d := openDB(t, path)
	if n := scalar[int64](t, d, "SELECT via_get_peers FROM infohashes WHERE infohash = ?", ih); n != 1 {
		t.Errorf("infohash %s recorded with via_get_peers %d, want 1", ih, n)
	}
}

// statusWatch reads a crawl's stderr to its end, keeping the text, and
// closes replied on the first status line that reports at least the
// wanted number of nodes replied.
type statusWatch struct {
	replied <-chan struct{}
	drained <-chan struct{} // closed at the end of stderr
	mu      sync.Mutex
	buf     strings.Builder
}

func watchStatus(stderr io.Reader, want int) *statusWatch {
	replied, drained := make(chan struct{}), make(chan struct{})
	w := &statusWatch{replied: replied, drained: drained}
	re := regexp.MustCompile(`(\d+) replied`)
	go func() {
		defer close(drained)
		sc := bufio.NewScanner(stderr)
		signalled := false
		for sc.Scan() {
			w.mu.Lock()
			w.buf.WriteString(sc.Text() + "\n")
			w.mu.Unlock()
			if m := re.FindStringSubmatch(sc.Text()); !signalled && m != nil {
				if n, _ := strconv.Atoi(m[1]); n >= want {
					signalled = true
					close(replied)
				}
			}
		}
	}()
	return w
}

// startWatched starts the binary with args (checked by guard): its
// stderr goes to a statusWatch waiting for a status line with want nodes
// replied, its stdout to the returned buffer. It is killed at the end of
// the test if it is still running; interrupt stops it.
func startWatched(t *testing.T, want int, args ...string) (*exec.Cmd, *statusWatch, *cmdtest.LockedBuffer) {
	t.Helper()
	guard(t, nil, args)
	cmd := exec.Command(bin, args...)
	cmd.Env = cmdtest.CleanEnv()
	so := &cmdtest.LockedBuffer{}
	cmd.Stdout = so
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	return cmd, watchStatus(stderr, want), so
}

// text returns what has been read so far.
func (w *statusWatch) text() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// interrupt sends SIGINT to the crawl and waits for it to exit, having
// read all of its stderr first (as cmd.Wait requires of a pipe). A crawl
// still running after hangGuard is killed.
func interrupt(t *testing.T, cmd *exec.Cmd, w *statusWatch) {
	t.Helper()
	cmd.Process.Signal(os.Interrupt)
	select {
	case <-w.drained:
	case <-time.After(hangGuard):
		cmd.Process.Kill()
		<-w.drained
		cmd.Wait()
		t.Fatalf("crawl still running %v after SIGINT: killed; stderr:\n%s", hangGuard, w.text())
	}
	cmd.Wait()
}

// silentAddr returns the address of a UDP socket on ip, on a port the
// kernel picks, that stays open until the test ends and never answers:
// unlike a fixed port that nothing is expected to listen on, no other
// program can be answering there.
func silentAddr(t *testing.T, ip string) string {
	t.Helper()
	c, err := net.ListenPacket("udp4", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.LocalAddr().String()
}

// freeUDPAddr returns ip with a UDP port the kernel has just handed out
// and freed, so that test runs side by side do not pick the same one.
func freeUDPAddr(t *testing.T, ip string) string {
	t.Helper()
	c, err := net.ListenPacket("udp4", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().String()
}

// TestCrawlAdaptive: --adaptive selects the adaptive sender, and the
// run's stored configuration says which sender the crawl used (the
// fixed-rate one, the default, by leaving adaptive out).
func TestCrawlAdaptive(t *testing.T) {
	t.Parallel()
	tn := startTestnet(t, 10, "127.62.0.1")
	path := filepath.Join(t.TempDir(), "crawl.db")
	for _, args := range [][]string{nil, {"--adaptive"}} {
		args = append([]string{"crawl", "--testnet", "--bootstrap", tn.Bootstrap, "--db", path, "--json", "--idle", queryWait.String()}, args...)
		if sum := decode[crawlSummary](t, ok(t, nil, args...)); sum.Replied < 9 {
			t.Errorf("%v: %d replied, want at least 9 of 10", args, sum.Replied)
		}
	}
	d := openDB(t, path)
	for run, want := range map[int]bool{1: false, 2: true} {
		if got := scalar[int](t, d, "SELECT coalesce(json_extract(config, '$.adaptive'), 0) FROM crawl_runs WHERE id = ?", run); (got == 1) != want {
			t.Errorf("run %d: adaptive %d in the stored config, want %v", run, got, want)
		}
	}
}
