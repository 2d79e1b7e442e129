package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/lightdht/lightdht/krpc"
)

// querier sends single queries from a read-only transport on its own
// socket.
type querier struct {
	tr     *krpc.Transport
	id     krpc.ID
	served chan error
}

// newQuerier opens a socket suited to dest (see listenUDP) and starts a
// read-only transport on it.
func newQuerier(c *cli, listen string, dest netip.AddrPort, timeout time.Duration) (*querier, error) {
	conn, err := listenUDP(listen, "listen", []netip.AddrPort{dest}, dest.Addr().Is6())
	if err != nil {
		return nil, err
	}
	tr, err := krpc.New(krpc.Config{Conn: conn, ReadOnly: true, Version: krpc.DefaultVersion, Timeout: timeout, Retries: queryRetries, Logger: c.log})
	if err != nil {
		conn.Close()
		return nil, err
	}
	q := &querier{tr: tr, id: krpc.RandomID(), served: make(chan error, 1)}
	go func() { q.served <- tr.Serve(context.Background()) }()
	return q, nil
}

func (q *querier) close() {
	q.tr.Close()
	<-q.served
}

// query sends m to addr and returns the reply; a KRPC error reply is an
// error.
func (q *querier) query(ctx context.Context, addr netip.AddrPort, m *krpc.Msg) (krpc.Response, error) {
	m.A.ID = q.id
	return q.tr.Query(ctx, addr, m) // its errors name the method and address
}

// replyJSON is the part of every single-query result that describes the
// replying node.
type replyJSON struct {
	ID       string  `json:"id"`
	Addr     string  `json:"addr"`
	RTTms    float64 `json:"rtt_ms"`
	Version  string  `json:"version"`
	ReadOnly bool    `json:"read_only,omitempty"`
}

func replyOf(r krpc.Response) replyJSON {
	return replyJSON{ID: r.R.ID.String(), Addr: r.From.String(), RTTms: ms(r.RTT), Version: printableVersion(r.V), ReadOnly: r.RO}
}

func (r replyJSON) line(w io.Writer, what string) {
	v := r.Version
	if v == "" {
		v = "none"
	}
	fmt.Fprintf(w, "%s from %s id %s version %s rtt %.2f ms\n", what, r.Addr, r.ID, v, r.RTTms)
}

// queryResult is the output of find-node, get-peers and sample.
type queryResult struct {
	replyJSON
	Target   string     `json:"target,omitempty"`
	Infohash string     `json:"infohash,omitempty"`
	Token    string     `json:"token,omitempty"`
	Peers    []string   `json:"peers,omitempty"`
	Num      *int       `json:"num,omitempty"`
	Interval *int       `json:"interval,omitempty"`
	Samples  []string   `json:"samples,omitempty"`
	Nodes    []nodeJSON `json:"nodes,omitempty"`
	Nodes6   []nodeJSON `json:"nodes6,omitempty"`
}

func (q queryResult) print(w io.Writer, what string) {
	q.line(w, what)
	if q.Token != "" {
		fmt.Fprintf(w, "token %s\n", q.Token)
	}
	if q.Num != nil {
		fmt.Fprintf(w, "num %d interval %ds samples %d\n", *q.Num, *q.Interval, len(q.Samples))
	}
	for _, s := range q.Samples {
		fmt.Fprintf(w, "sample %s\n", s)
	}
	for _, p := range q.Peers {
		fmt.Fprintf(w, "peer %s\n", p)
	}
	for _, n := range append(q.Nodes, q.Nodes6...) {
		fmt.Fprintf(w, "node %s %s\n", n.ID, n.Addr)
	}
}

// singleQuery is the body shared by the single-query subcommands: it
// parses ADDR, runs the query and prints.
type singleQuery struct {
	name    string
	minArgs int
	maxArgs int
	argDesc string
	build   func(args []string) (*krpc.Msg, error)
	result  func(r krpc.Response) queryResult
}

// queryRetries is the resends of a single query (ping, find-node,
// get-peers, sample, and the shell's) after an attempt times out.
const queryRetries = krpc.DefaultRetries

// queryTimeoutUsage is the help of --timeout for the single queries.
var queryTimeoutUsage = fmt.Sprintf("wait per attempt (an unanswered query is resent %s: %d attempts in all)", times(queryRetries), queryRetries+1)

// times spells a small count of repetitions.
func times(n int) string {
	switch n {
	case 1:
		return "once"
	case 2:
		return "twice"
	}
	return fmt.Sprintf("%d times", n)
}

func (c *cli) addQueryFlags() (listen *string, timeout *time.Duration) {
	c.addJSON()
	listen = c.fs.String("listen", "", "local address for the query socket (default: 127.0.0.1:0 for a loopback ADDR, 0.0.0.0:0 otherwise)")
	timeout = c.fs.Duration("timeout", krpc.DefaultTimeout, queryTimeoutUsage)
	return listen, timeout
}

func runSingle(c *cli, sq singleQuery) func(context.Context, []string) error {
	listen, timeout := c.addQueryFlags()
	return func(ctx context.Context, args []string) error {
		if err := nargs(args, sq.minArgs, sq.maxArgs, sq.argDesc); err != nil {
			return err
		}
		addr, err := resolveAddr(ctx, args[0])
		if err != nil {
			return err
		}
		m, err := sq.build(args[1:])
		if err != nil {
			return err
		}
		if *timeout <= 0 {
			return usagef("--timeout must be positive")
		}
		q, err := newQuerier(c, *listen, addr, *timeout)
		if err != nil {
			return err
		}
		defer q.close()
		r, err := q.query(ctx, addr, m)
		if err != nil {
			return err
		}
		res := sq.result(r)
		return c.output(res, func(w io.Writer) { res.print(w, sq.name) })
	}
}

// targetArg parses an optional TARGET argument (random when absent).
func targetArg(args []string, what string) (krpc.ID, error) {
	if len(args) == 0 {
		return krpc.RandomID(), nil
	}
	return parseID(what, args[0])
}

func pingCmd(c *cli) func(context.Context, []string) error {
	return runSingle(c, singleQuery{name: "pong", minArgs: 1, maxArgs: 1, argDesc: "ADDR",
		build:  func([]string) (*krpc.Msg, error) { return &krpc.Msg{Q: krpc.MethodPing}, nil },
		result: func(r krpc.Response) queryResult { return queryResult{replyJSON: replyOf(r)} },
	})
}

// pingResultPrint is used by the shell.
func printPing(w io.Writer, ni krpc.NodeInfo, rtt time.Duration) {
	fmt.Fprintf(w, "pong from %s id %s rtt %.2f ms\n", ni.Addr, ni.ID, ms(rtt))
}

func findNodeCmd(c *cli) func(context.Context, []string) error {
	var target krpc.ID
	return runSingle(c, singleQuery{name: "find_node reply", minArgs: 1, maxArgs: 2, argDesc: "ADDR [TARGET]",
		build: func(args []string) (*krpc.Msg, error) {
			var err error
			if target, err = targetArg(args, "target"); err != nil {
				return nil, err
			}
			return &krpc.Msg{Q: krpc.MethodFindNode, A: krpc.Args{Target: target}}, nil
		},
		result: func(r krpc.Response) queryResult {
			return queryResult{replyJSON: replyOf(r), Target: target.String(), Nodes: nodesJSON(r.R.Nodes), Nodes6: nodesJSON(r.R.Nodes6)}
		},
	})
}

func getPeersCmd(c *cli) func(context.Context, []string) error {
	var ih krpc.ID
	return runSingle(c, singleQuery{name: "get_peers reply", minArgs: 2, maxArgs: 2, argDesc: "ADDR INFOHASH",
		build: func(args []string) (*krpc.Msg, error) {
			var err error
			if ih, err = parseID("infohash", args[0]); err != nil {
				return nil, err
			}
			return &krpc.Msg{Q: krpc.MethodGetPeers, A: krpc.Args{InfoHash: ih}}, nil
		},
		result: func(r krpc.Response) queryResult {
			peers := make([]string, 0, len(r.R.Values))
			for _, p := range r.R.Values {
				peers = append(peers, p.String())
			}
			return queryResult{replyJSON: replyOf(r), Infohash: ih.String(), Token: hex.EncodeToString(r.R.Token),
				Peers: peers, Nodes: nodesJSON(r.R.Nodes), Nodes6: nodesJSON(r.R.Nodes6)}
		},
	})
}

func sampleCmd(c *cli) func(context.Context, []string) error {
	var target krpc.ID
	return runSingle(c, singleQuery{name: "sample_infohashes reply", minArgs: 1, maxArgs: 2, argDesc: "ADDR [TARGET]",
		build: func(args []string) (*krpc.Msg, error) {
			var err error
			if target, err = targetArg(args, "target"); err != nil {
				return nil, err
			}
			return &krpc.Msg{Q: krpc.MethodSampleInfohashes, A: krpc.Args{Target: target}}, nil
		},
		result: sampleResult(&target),
	})
}

func sampleResult(target *krpc.ID) func(r krpc.Response) queryResult {
	return func(r krpc.Response) queryResult {
		samples := make([]string, 0, len(r.R.Samples))
		for _, s := range r.R.Samples {
			samples = append(samples, s.String())
		}
		num, interval := r.R.Num, r.R.Interval
		return queryResult{replyJSON: replyOf(r), Target: target.String(), Num: &num, Interval: &interval,
			Samples: samples, Nodes: nodesJSON(r.R.Nodes), Nodes6: nodesJSON(r.R.Nodes6)}
	}
}

// oneLine flattens an error message to one line.
func oneLine(err error) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
}
