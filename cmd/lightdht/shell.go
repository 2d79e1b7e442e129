package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"strings"
	"time"

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

const shellHelp = `commands:
  ping ADDR                 ping a node
  find-node ADDR [TARGET]   one find_node query (TARGET: random if omitted)
  sample ADDR [TARGET]      one BEP 51 sample_infohashes query
  lookup TARGET             iterative lookup of the nodes closest to TARGET
  peers INFOHASH            iterative get_peers lookup
  announce INFOHASH PORT    announce a peer on PORT (0: implied port)
  stats                     the node's counters
  help                      this list
  quit                      leave (also exit, or end of input)`

func shellCmd(c *cli) func(context.Context, []string) error {
	nf := c.addNodeFlags("", false)
	dbPath := c.fs.String("db", "", "record every node seen into this SQLite file (default: none)")
	timeout := c.fs.Duration("timeout", 30*time.Second, "time limit of each command")
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
		bctx, cancel := context.WithTimeout(ctx, *timeout)
		size, err := n.Bootstrap(bctx)
		cancel()
		if err != nil {
			fmt.Fprintf(c.stdout, "bootstrap failed: %s (the node keeps trying)\n", oneLine(err))
		} else {
			fmt.Fprintf(c.stdout, "joined: %d nodes in the routing table. Type help for the commands.\n", size)
		}
		sh := &shell{c: c, n: n, timeout: *timeout}
		defer sh.closeQuerier()
		lines := make(chan string)
		go func() {
			defer close(lines)
			sc := bufio.NewScanner(c.stdin)
			for sc.Scan() {
				select {
				case lines <- sc.Text():
				case <-ctx.Done():
					return
				}
			}
		}()
		for {
			tl, est := estimateSize(n)
			fmt.Fprintf(c.stdout, "lightdht [table %d, ~%.0f nodes]> ", tl, est)
			var line string
			var ok bool
			select {
			case line, ok = <-lines:
			case <-ctx.Done():
				fmt.Fprintln(c.stdout)
				return nil
			}
			if !ok {
				fmt.Fprintln(c.stdout)
				return nil
			}
			if quit := sh.exec(ctx, strings.Fields(line)); quit {
				return nil
			}
		}
	}
}

type shell struct {
	c       *cli
	n       *lightdht.Node
	q       *querier
	timeout time.Duration
}

func (sh *shell) closeQuerier() {
	if sh.q != nil {
		sh.q.close()
	}
}

// exec runs one command line and reports whether the shell should quit.
func (sh *shell) exec(ctx context.Context, f []string) bool {
	if len(f) == 0 {
		return false
	}
	w := sh.c.stdout
	ctx, cancel := context.WithTimeout(ctx, sh.timeout)
	defer cancel()
	var err error
	switch f[0] {
	case "quit", "exit":
		return true
	case "help", "?":
		fmt.Fprintln(w, shellHelp)
	case "stats":
		sh.stats(w)
	default:
		err = sh.query(ctx, w, f[0], f[1:])
	}
	if err != nil {
		fmt.Fprintf(w, "error: %s\n", oneLine(err))
	}
	return false
}

func (sh *shell) stats(w io.Writer) {
	s := sh.n.Stats()
	tl, est := estimateSize(sh.n)
	fmt.Fprintf(w, "id %s addr %s\n", s.ID, sh.n.Addr())
	fmt.Fprintf(w, "routing table: %d IPv4, %d IPv6 nodes; network size estimate ~%.0f nodes (from table of %d)\n", s.Nodes4, s.Nodes6, est, tl)
	fmt.Fprintf(w, "queries answered: %v; rate-limited %d\n", s.QueriesByMethod, s.RateLimited)
	fmt.Fprintf(w, "lookups %d (%d queries); peers stored: %d infohashes, %d peers\n", s.Lookups, s.LookupQueries, s.Infohashes, s.Peers)
	fmt.Fprintf(w, "packets sent %d, received %d\n", s.Transport4.PacketsSent+s.Transport6.PacketsSent, s.Transport4.PacketsReceived+s.Transport6.PacketsReceived)
	fmt.Fprintf(w, "external address (from replies' votes): IPv4 %s, IPv6 %s; %d changes, %d new IDs\n",
		addrOrUnknown(s.ExternalAddr4), addrOrUnknown(s.ExternalAddr6), s.ExternalAddrChanges, s.IDChanges)
}

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
		if sh.q, err = newQuerier(sh.c, "", addr, 2*time.Second); err != nil {
			return krpc.Response{}, err
		}
	}
	return sh.q.query(ctx, addr, m)
}

func (sh *shell) query(ctx context.Context, w io.Writer, cmd string, args []string) error {
	switch cmd {
	case "ping":
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
	case "find-node", "sample":
		if err := want(args, 1, 2, cmd+" ADDR [TARGET]"); err != nil {
			return err
		}
		target, err := targetArg(args[1:], "target")
		if err != nil {
			return err
		}
		m := &krpc.Msg{Q: krpc.MethodFindNode, A: krpc.Args{Target: target}}
		if cmd == "sample" {
			m.Q = krpc.MethodSampleInfohashes
		}
		r, err := sh.single(ctx, args[0], m)
		if err != nil {
			return err
		}
		if cmd == "sample" {
			sampleResult(&target)(r).print(w, "sample_infohashes reply")
		} else {
			queryResult{replyJSON: replyOf(r), Nodes: nodesJSON(r.R.Nodes), Nodes6: nodesJSON(r.R.Nodes6)}.print(w, "find_node reply")
		}
	case "lookup":
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
	case "peers":
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
	case "announce":
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
	default:
		return errors.New("unknown command " + fmt.Sprintf("%q", cmd) + " (type help)")
	}
	return nil
}
