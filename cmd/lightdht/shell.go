package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"runtime/metrics"
	"strings"
	"time"

	"github.com/chzyer/readline"

	"github.com/lightdht/lightdht"
	"github.com/lightdht/lightdht/db"
	"github.com/lightdht/lightdht/krpc"
	"github.com/lightdht/lightdht/table"
)

// estimateSize estimates the number of nodes in the DHT from the routing
// table: the K nodes closest to our own ID span a fraction f = d/2^160 of
// the ID space, where d is the XOR distance to the K-th of them, so the
// whole space holds about K/f nodes. With fewer than K nodes in the table
// (a small test network) the table holds every node it has heard of: the
// estimate is the table's size plus this node.
func estimateSize(n *lightdht.Node) (tableLen int, estimate float64) {
	t := n.Table(false)
	if t == nil {
		t = n.Table(true)
	}
	tableLen = t.Len()
	k := table.DefaultK
	closest := t.Closest(n.ID(), k)
	if len(closest) < k {
		return tableLen, float64(tableLen + 1)
	}
	d := closest[k-1].ID.Xor(n.ID())
	f := float64(binary.BigEndian.Uint64(d[:8])) / math.Exp2(64)
	if f == 0 {
		return tableLen, float64(tableLen + 1)
	}
	return tableLen, float64(k) / f
}

// shellCommand is one command of the shell. The help and the dispatch
// both come from shellCommands, so that help lists every command.
type shellCommand struct {
	name    string
	args    string
	summary string
	run     func(sh *shell, ctx context.Context, w io.Writer, args []string) error
}

var shellCommands []shellCommand

func init() {
	shellCommands = []shellCommand{
		{"ping", "ADDR", "ping a node", (*shell).ping},
		{"find-node", "ADDR [TARGET]", "one find_node query (TARGET: random if omitted)", (*shell).findNode},
		{"sample", "ADDR [TARGET]", "one BEP 51 sample_infohashes query", (*shell).sample},
		{"lookup", "TARGET", "iterative lookup of the nodes closest to TARGET", (*shell).lookup},
		{"peers", "INFOHASH", "iterative get_peers lookup", (*shell).peers},
		{"announce", "INFOHASH PORT", "announce a peer on PORT (0: implied port)", (*shell).announce},
		{"put", "NAME VALUE", "set NAME to VALUE under your key (BEP 44 mutable item; seq goes up)", (*shell).put},
		{"put", "VALUE", "store an immutable item; prints its TARGET", nil},
		{"get", "NAME [PUBKEY]", "read NAME: yours, or the one of the key PUBKEY (64 hex digits)", (*shell).get},
		{"get", "TARGET", "read the immutable item TARGET (40 hex digits)", nil},
		{"delete", "NAME", "replace NAME with an empty value (BEP 44 has no delete; items expire)", (*shell).delete},
		{"stats", "", "the node's counters", (*shell).statsCmd},
		{"help", "", "this list", (*shell).help},
		{"quit", "", "leave (also exit, Ctrl-D or the end of the input)", nil},
	}
}

func (sh *shell) help(_ context.Context, w io.Writer, _ []string) error {
	fmt.Fprintln(w, "commands (quote a value with spaces: put motd \"hello world\"):")
	for _, c := range shellCommands {
		fmt.Fprintf(w, "  %-26s %s\n", strings.TrimSpace(c.name+" "+c.args), c.summary)
	}
	return nil
}

func shellCmd(c *cli) func(context.Context, []string) error {
	nf := c.addNodeFlags("", false)
	c.addQueryTimeout(nf)
	dbPath := c.fs.String("db", "", "record every node seen into this SQLite file or postgres:// URL (default: none)")
	timeout := c.fs.Duration("timeout", 30*time.Second, "time limit of each command")
	keyFile := c.fs.String("key", "", "ed25519 key `file` of your names (default: "+defaultKeyPathHelp()+", created by the first put)")
	history := c.fs.String("history", "", "history `file` of the line editor (default: shell_history beside the default key file; used on a terminal)")
	return func(ctx context.Context, args []string) error {
		if err := nargs(args, 0, 0, "no arguments"); err != nil {
			return err
		}
		if *timeout <= 0 {
			return usagef("--timeout must be positive")
		}
		var d *db.DB
		var openObs func() (lightdht.Observer, error)
		if *dbPath != "" {
			openObs = func() (lightdht.Observer, error) {
				var err error
				if d, err = db.Open(*dbPath, db.Options{}); err != nil {
					return nil, err
				}
				return d.NonBlocking(), nil // never stall the node on a slow disk
			}
		}
		n, wait, err := c.startNode(ctx, nf, openObs)
		if err != nil {
			if d != nil {
				d.Close()
			}
			return err
		}
		defer func() {
			wait()
			if d != nil {
				d.Close()
			}
		}()
		fmt.Fprintf(c.stdout, "node %s on %s, joining the DHT...\n", n.ID(), n.Addr())
		// Serve is bootstrapping already: this waits for that bootstrap
		// rather than starting another.
		bctx, cancel := context.WithTimeout(ctx, *timeout)
		size, err := n.Bootstrap(bctx)
		cancel()
		if err != nil {
			fmt.Fprintf(c.stdout, "bootstrap failed: %s (the node keeps trying)\n", oneLine(err))
		} else {
			fmt.Fprintf(c.stdout, "joined: %d nodes in the routing table. Type help for the commands.\n", size)
		}
		sh := &shell{c: c, n: n, timeout: *timeout, queryTimeout: *nf.queryTimeout, keyFile: *keyFile}
		defer sh.closeQuerier()
		in, err := newLineReader(c, *history)
		if err != nil {
			return err
		}
		defer in.close()
		for {
			line, err := in.readLine(ctx, sh.prompt())
			if err != nil {
				fmt.Fprintln(c.stdout)
				return nil // the end of the input, or a signal
			}
			f, err := splitFields(line)
			if err != nil {
				fmt.Fprintf(c.stdout, "error: %s\n", err)
				continue
			}
			if quit := sh.exec(ctx, f); quit {
				return nil
			}
		}
	}
}

// prompt shows the routing table's size, the network-size estimate and
// the memory the process has in use.
func (sh *shell) prompt() string {
	tl, est := estimateSize(sh.n)
	return fmt.Sprintf("lightdht [table %d, ~%.0f nodes, %s]> ", tl, est, formatBytes(memInUse()))
}

// memInUse is the memory the Go runtime holds for the process and has
// not returned to the operating system: heap, stacks and runtime
// structures, close to the resident size but portable and cheap to read.
func memInUse() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 || s[1].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64() - s[1].Value.Uint64()
}

func formatBytes(b uint64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	}
	return fmt.Sprintf("%.0f KiB", float64(b)/(1<<10))
}

// lineReader reads the shell's command lines: through readline (line
// editing, history) when stdin and stdout are a terminal, and line by
// line otherwise (a script or a test on stdin), printing the same prompt.
type lineReader struct {
	rl    *readline.Instance
	lines chan string
	out   io.Writer
	stop  chan struct{}
}

func newLineReader(c *cli, history string) (*lineReader, error) {
	lr := &lineReader{out: c.stdout, stop: make(chan struct{})}
	in, inOK := c.stdin.(*os.File)
	if inOK && isTerminal(in) && isTerminal(c.stdout) {
		if history == "" {
			if p := defaultKeyPath(); p != "" {
				history = filepath.Join(filepath.Dir(p), "shell_history")
				os.MkdirAll(filepath.Dir(history), 0o700)
			}
		}
		rl, err := readline.NewEx(&readline.Config{HistoryFile: history, Stdin: in, Stdout: c.stdout, Stderr: c.stderr,
			HistorySearchFold: true, InterruptPrompt: "^C", EOFPrompt: "quit"})
		if err != nil {
			return nil, fmt.Errorf("line editor: %w", err)
		}
		lr.rl = rl
		return lr, nil
	}
	lr.lines = make(chan string)
	go func() {
		defer close(lr.lines)
		sc := bufio.NewScanner(c.stdin)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			select {
			case lr.lines <- sc.Text():
			case <-lr.stop:
				return
			}
		}
	}()
	return lr, nil
}

// readLine prints prompt and returns the next line; an error means the
// input ended or ctx did.
func (lr *lineReader) readLine(ctx context.Context, prompt string) (string, error) {
	if lr.rl != nil {
		lr.rl.SetPrompt(prompt)
		for {
			if ctx.Err() != nil {
				return "", ctx.Err()
			}
			line, err := lr.rl.Readline()
			if errors.Is(err, readline.ErrInterrupt) {
				continue // Ctrl-C clears the line, as in other shells
			}
			return line, err
		}
	}
	fmt.Fprint(lr.out, prompt)
	select {
	case line, ok := <-lr.lines:
		if !ok {
			return "", io.EOF
		}
		return line, nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func (lr *lineReader) close() {
	if lr.rl != nil {
		lr.rl.Close()
		return
	}
	close(lr.stop)
}

// splitFields splits a command line into words, as a POSIX shell does for
// quotes: "..." and '...' keep spaces, and in "..." a backslash escapes
// the next character.
func splitFields(line string) ([]string, error) {
	var (
		out   []string
		cur   strings.Builder
		inTok bool
		quote rune
	)
	rs := []rune(line)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case quote == '\'' && r == '\'', quote == '"' && r == '"':
			quote = 0
		case quote == '"' && r == '\\' && i+1 < len(rs):
			i++
			cur.WriteRune(rs[i])
		case quote != 0:
			cur.WriteRune(r)
		case r == '"' || r == '\'':
			quote, inTok = r, true
		case r == ' ' || r == '\t':
			if inTok {
				out = append(out, cur.String())
				cur.Reset()
				inTok = false
			}
		default:
			cur.WriteRune(r)
			inTok = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated %c quote", quote)
	}
	if inTok {
		out = append(out, cur.String())
	}
	return out, nil
}

type shell struct {
	c       *cli
	n       *lightdht.Node
	q       *querier      // the single queries' (find-node, sample), opened by the first
	timeout time.Duration // --timeout, per command
	// queryTimeout is --query-timeout: the wait per attempt of the node's
	// queries and of the single queries alike.
	queryTimeout time.Duration
	keyFile      string
}

func (sh *shell) closeQuerier() {
	if sh.q != nil {
		sh.q.close()
	}
}

// exec runs one command line and reports whether the shell should quit.
// Whatever goes wrong in a command is printed as one error line and the
// shell goes on.
func (sh *shell) exec(ctx context.Context, f []string) (quit bool) {
	if len(f) == 0 {
		return false
	}
	w := sh.c.stdout
	ctx, cancel := context.WithTimeout(ctx, sh.timeout)
	defer cancel()
	defer func() {
		// A bug in one command must not take the user's session with it.
		if r := recover(); r != nil {
			fmt.Fprintf(w, "error: internal error in %s: %v\n", f[0], r)
			quit = false
		}
	}()
	var err error
	switch f[0] {
	case "quit", "exit":
		return true
	case "?":
		err = sh.help(ctx, w, nil)
	default:
		err = fmt.Errorf("unknown command %q (type help)", f[0])
		for _, c := range shellCommands {
			if c.name == f[0] && c.run != nil {
				err = c.run(sh, ctx, w, f[1:])
				break
			}
		}
	}
	if err != nil {
		fmt.Fprintf(w, "error: %s\n", oneLine(err))
	}
	return false
}

func (sh *shell) statsCmd(_ context.Context, w io.Writer, _ []string) error {
	s := sh.n.Stats()
	tl, est := estimateSize(sh.n)
	fmt.Fprintf(w, "id %s addr %s\n", s.ID, sh.n.Addr())
	fmt.Fprintf(w, "routing table: %d IPv4, %d IPv6 nodes; network size estimate ~%.0f nodes (from table of %d)\n", s.Nodes4, s.Nodes6, est, tl)
	fmt.Fprintf(w, "queries answered: %v; rate-limited %d\n", s.QueriesByMethod, s.RateLimited)
	fmt.Fprintf(w, "lookups %d (%d queries); peers stored: %d infohashes, %d peers\n", s.Lookups, s.LookupQueries, s.Infohashes, s.Peers)
	fmt.Fprintf(w, "packets sent %d, received %d; memory in use %s\n", s.Transport4.PacketsSent+s.Transport6.PacketsSent, s.Transport4.PacketsReceived+s.Transport6.PacketsReceived, formatBytes(memInUse()))
	fmt.Fprintf(w, "external address (from replies' votes): IPv4 %s, IPv6 %s; %d changes, %d new IDs\n",
		addrOrUnknown(s.ExternalAddr4), addrOrUnknown(s.ExternalAddr6), s.ExternalAddrChanges, s.IDChanges)
	return nil
}

// addrOrUnknown prints a learnt address, or "unknown" before one is.
func addrOrUnknown(a netip.Addr) string {
	if !a.IsValid() {
		return "unknown"
	}
	return a.String()
}

func want(args []string, lo, hi int, usage string) error {
	if len(args) < lo || len(args) > hi {
		return fmt.Errorf("usage: %s", usage)
	}
	return nil
}

func (sh *shell) single(ctx context.Context, addrStr string, m *krpc.Msg) (krpc.Response, error) {
	addr, err := resolveAddr(ctx, addrStr)
	if err != nil {
		return krpc.Response{}, err
	}
	if sh.q == nil {
		if sh.q, err = newQuerier(sh.c, "", addr, sh.queryTimeout); err != nil {
			return krpc.Response{}, err
		}
	}
	return sh.q.query(ctx, addr, m)
}

func (sh *shell) ping(ctx context.Context, w io.Writer, args []string) error {
	if err := want(args, 1, 1, "ping ADDR"); err != nil {
		return err
	}
	addr, err := resolveAddr(ctx, args[0])
	if err != nil {
		return err
	}
	ni, rtt, err := sh.n.Ping(ctx, addr)
	if err != nil {
		return err
	}
	printPing(w, ni, rtt)
	return nil
}

func (sh *shell) findNode(ctx context.Context, w io.Writer, args []string) error {
	return sh.oneQuery(ctx, w, krpc.MethodFindNode, args)
}

func (sh *shell) sample(ctx context.Context, w io.Writer, args []string) error {
	return sh.oneQuery(ctx, w, krpc.MethodSampleInfohashes, args)
}

// oneQuery sends one find_node or sample_infohashes: the same arguments,
// and replies of the same shape.
func (sh *shell) oneQuery(ctx context.Context, w io.Writer, method string, args []string) error {
	name := "find-node"
	if method == krpc.MethodSampleInfohashes {
		name = "sample"
	}
	if err := want(args, 1, 2, name+" ADDR [TARGET]"); err != nil {
		return err
	}
	target, err := targetArg(args[1:], "target")
	if err != nil {
		return err
	}
	r, err := sh.single(ctx, args[0], &krpc.Msg{Q: method, A: krpc.Args{Target: target}})
	if err != nil {
		return err
	}
	if method == krpc.MethodSampleInfohashes {
		sampleResult(&target)(r).print(w, "sample_infohashes reply")
	} else {
		queryResult{replyJSON: replyOf(r), Nodes: nodesJSON(r.R.Nodes), Nodes6: nodesJSON(r.R.Nodes6)}.print(w, "find_node reply")
	}
	return nil
}

func (sh *shell) lookup(ctx context.Context, w io.Writer, args []string) error {
	if err := want(args, 1, 1, "lookup TARGET"); err != nil {
		return err
	}
	target, err := parseID("target", args[0])
	if err != nil {
		return err
	}
	r, err := sh.n.FindNode(ctx, target)
	if err != nil {
		return err
	}
	printLookup(w, lookupResult{Target: target.String(), Nodes: nodesJSON(r.Nodes), Nodes6: nodesJSON(r.Nodes6),
		Queries: r.Stats.Queries, Replies: r.Stats.Replies, DurationMs: ms(r.Stats.Duration)})
	return nil
}

func (sh *shell) peers(ctx context.Context, w io.Writer, args []string) error {
	if err := want(args, 1, 1, "peers INFOHASH"); err != nil {
		return err
	}
	ih, err := parseID("infohash", args[0])
	if err != nil {
		return err
	}
	r, err := sh.n.GetPeers(ctx, ih)
	if err != nil {
		return err
	}
	printPeers(w, peersOf(ih, r))
	return nil
}

func (sh *shell) announce(ctx context.Context, w io.Writer, args []string) error {
	if err := want(args, 2, 2, "announce INFOHASH PORT"); err != nil {
		return err
	}
	ih, err := parseID("infohash", args[0])
	if err != nil {
		return err
	}
	port, err := parsePort(args[1])
	if err != nil {
		return err
	}
	r, err := sh.n.Announce(ctx, ih, port)
	if err != nil {
		return err
	}
	printAnnounce(w, announceOf(ih, port, r))
	return nil
}

// key returns the user's key pair for names, creating it when create is
// set and there is none.
func (sh *shell) key(create bool) (ed25519.PrivateKey, error) {
	path, err := keyPathOr(sh.keyFile)
	if err != nil {
		return nil, err
	}
	return openKey(path, create, sh.c.stdout)
}

func (sh *shell) put(ctx context.Context, w io.Writer, args []string) error {
	if err := want(args, 1, 2, "put NAME VALUE, or put VALUE"); err != nil {
		return err
	}
	v, err := checkValue(args[len(args)-1])
	if err != nil {
		return err
	}
	req := putReq{v: v}
	if len(args) == 2 {
		req.name, req.salt = args[0], []byte(args[0])
		if err := checkName(req.name); err != nil {
			return err
		}
		if req.priv, err = sh.key(true); err != nil {
			return err
		}
	}
	out, err := putItem(ctx, sh.n, req)
	if err != nil {
		return err
	}
	printPut(w, out)
	return nil
}

func (sh *shell) get(ctx context.Context, w io.Writer, args []string) error {
	args = pubkeyArg(args)
	if err := want(args, 1, 2, "get NAME [PUBKEY], or get TARGET"); err != nil {
		return err
	}
	var (
		req getReq
		err error
	)
	switch {
	case len(args) == 1 && isTarget(args[0]):
		req.target, _ = parseID("target", args[0])
	case len(args) == 2:
		req = getReq{mutable: true, name: args[0], salt: []byte(args[0])}
		if req.k, err = parsePubkey(args[1]); err != nil {
			return err
		}
	default:
		req = getReq{mutable: true, name: args[0], salt: []byte(args[0])}
		priv, err := sh.key(false)
		if err != nil {
			return err
		}
		req.k = [32]byte(priv.Public().(ed25519.PublicKey))
	}
	if req.mutable {
		if err := checkName(req.name); err != nil {
			return err
		}
	}
	out, err := getItem(ctx, sh.n, req)
	if err != nil {
		return err
	}
	printGet(w, out)
	return nil
}

func (sh *shell) delete(ctx context.Context, w io.Writer, args []string) error {
	if err := want(args, 1, 1, "delete NAME"); err != nil {
		return err
	}
	if err := checkName(args[0]); err != nil {
		return err
	}
	priv, err := sh.key(false)
	if err != nil {
		return err
	}
	out, err := deleteName(ctx, sh.n, priv, args[0])
	if err != nil {
		return err
	}
	printDelete(w, out)
	return nil
}

// pubkeyArg accepts the command line's spelling of get's public key in
// the shell: "get NAME --pubkey HEX" (or -pubkey, or =HEX) is
// "get NAME HEX".
func pubkeyArg(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--pubkey" || a == "-pubkey":
			if i+1 < len(args) {
				i++
				out = append(out, args[i])
			}
		case strings.HasPrefix(a, "--pubkey=") || strings.HasPrefix(a, "-pubkey="):
			out = append(out, a[strings.IndexByte(a, '=')+1:])
		default:
			out = append(out, a)
		}
	}
	return out
}
