package main

// testnet --selftest: the classic check of a DHT implementation on a
// network of its own nodes (Khashmir's "khashmir.py N" did it): each node
// is given three random contacts and joins; then nodes picked at random
// look up other nodes, and store items that other nodes read back.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lightdht/lightdht"
	"github.com/lightdht/lightdht/bep44"
	"github.com/lightdht/lightdht/table"
)

// selftestContacts is how many random contacts each node starts with.
const selftestContacts = 3

// selftestParallel bounds the operations in flight at once, so that a
// big network does not measure the machine's scheduler instead.
const selftestParallel = 8

// phaseResult is the outcome of one phase of the self-test.
type phaseResult struct {
	OK       int     `json:"ok"`
	Total    int     `json:"total"`
	TotalMs  float64 `json:"total_ms"`
	MedianMs float64 `json:"median_ms"`
	MaxMs    float64 `json:"max_ms"`
}

type selftestResult struct {
	Nodes       int         `json:"nodes"`
	Unreachable int         `json:"unreachable"`
	Seed        uint64      `json:"seed"`
	JoinMs      float64     `json:"join_ms"`
	TableMin    int         `json:"table_min"`
	TableMedian int         `json:"table_median"`
	TableMax    int         `json:"table_max"`
	Lookups     phaseResult `json:"lookups"`
	Puts        phaseResult `json:"puts"`
	Gets        phaseResult `json:"gets"`
	Passed      bool        `json:"passed"`
}

// selftestOpts are testnet's flags that the self-test reads.
type selftestOpts struct {
	addrs       []netip.AddrPort
	oneIP       bool
	unreachable int
	seed        uint64
}

// runSelftest builds the network on opts.addrs, runs the check and
// returns an error naming the failures if any operation failed.
func runSelftest(ctx context.Context, c *cli, o selftestOpts) error {
	n := len(o.addrs)
	if n < 2 {
		return usagef("--selftest needs at least 2 nodes")
	}
	if o.unreachable < 0 || o.unreachable > n-2 {
		return usagef("bad --unreachable %d: want 0 to %d (two nodes must stay to look up and read back)", o.unreachable, n-2)
	}
	rng := rand.New(rand.NewPCG(o.seed, 0))
	conns := make([]*net.UDPConn, 0, n)
	closeConns := func() {
		for _, conn := range conns {
			conn.Close()
		}
	}
	for _, a := range o.addrs {
		conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(a))
		if err != nil {
			closeConns()
			return err
		}
		conns = append(conns, conn)
	}
	all := make([]*lightdht.Node, 0, n)
	var wg sync.WaitGroup
	defer func() {
		for _, nd := range all {
			nd.Close()
		}
		wg.Wait()
	}()
	for i, conn := range conns {
		// Three random contacts, none of them the node itself.
		var boot []netip.AddrPort
		for _, j := range rng.Perm(n) {
			if j != i && len(boot) < selftestContacts {
				boot = append(boot, conn2addr(conns[j]))
			}
		}
		// No background maintenance: the join is the explicit bootstraps
		// below, so that what is measured is what the check did.
		cfg := lightdht.Config{Conn4: conn, Bootstrap: boot, Logger: c.log, NoMaintenance: true}
		if !o.oneIP {
			cfg.IPsPerBucket = table.DefaultIPsPerBucket
		}
		nd, err := lightdht.New(lightdht.LocalTestNet(cfg))
		if err != nil {
			for _, conn := range conns[i:] {
				conn.Close()
			}
			return err
		}
		all = append(all, nd)
	}
	for _, nd := range all {
		wg.Add(1)
		go func() { defer wg.Done(); nd.Serve(ctx) }()
	}
	res := selftestResult{Nodes: n, Unreachable: o.unreachable, Seed: o.seed}

	// Join: every node bootstraps, then again, so that the nodes that
	// joined early learn of those that came after them.
	start := time.Now()
	for range 2 {
		parallel(ctx, all, func(nd *lightdht.Node) {
			if _, err := nd.Bootstrap(ctx); err != nil {
				c.log.Warn().Err(err).Stringer("node", nd.Addr()).Msg("selftest: bootstrap failed")
			}
		})
	}
	res.JoinMs = ms(time.Since(start))
	sizes := make([]int, n)
	for i, nd := range all {
		sizes[i] = nd.Table(false).Len()
	}
	slices.Sort(sizes)
	res.TableMin, res.TableMedian, res.TableMax = sizes[0], sizes[n/2], sizes[n-1]
	if ctx.Err() != nil {
		return errInterrupted
	}

	// Unreachable nodes, on request: closed after the join, so that the
	// others' tables still hold them.
	dead := map[int]bool{}
	for _, i := range rng.Perm(n)[:o.unreachable] {
		all[i].Close()
		dead[i] = true
	}
	var live []int
	for i := range all {
		if !dead[i] {
			live = append(live, i)
		}
	}
	other := func(not int) int {
		for {
			if j := live[rng.IntN(len(live))]; j != not {
				return j
			}
		}
	}

	// Lookups: every node is looked up once, from a random live node.
	type lookupJob struct{ from, target int }
	jobs := make([]lookupJob, n)
	for i := range jobs {
		jobs[i] = lookupJob{other(i), i}
	}
	res.Lookups = runPhase(ctx, jobs, func(j lookupJob) bool {
		r, err := all[j.from].FindNode(ctx, all[j.target].ID())
		return err == nil && len(r.Nodes) > 0 && r.Nodes[0].ID == all[j.target].ID()
	})

	// Puts from random live nodes, each read back by another.
	type itemJob struct {
		from, reader int
		value        []byte
	}
	items := make([]itemJob, len(live))
	for k, i := range live {
		items[k] = itemJob{i, other(i), bencodeString(fmt.Sprintf("lightdht selftest item %d %016x", k, rng.Uint64()))}
	}
	res.Puts = runPhase(ctx, indexes(len(items)), func(k int) bool {
		r, err := all[items[k].from].Put(ctx, bep44.Item{V: items[k].value}, nil)
		return err == nil && len(r.StoredAt) > 0
	})
	res.Gets = runPhase(ctx, indexes(len(items)), func(k int) bool {
		r, err := all[items[k].reader].Get(ctx, bep44.ImmutableTarget(items[k].value))
		return err == nil && string(r.Item.V) == string(items[k].value)
	})
	if ctx.Err() != nil {
		return errInterrupted
	}
	res.Passed = res.Lookups.OK == res.Lookups.Total && res.Puts.OK == res.Puts.Total && res.Gets.OK == res.Gets.Total
	if err := c.output(res, func(w io.Writer) { printSelftest(w, res) }); err != nil {
		return err
	}
	if !res.Passed {
		var failed []string
		for _, p := range []struct {
			what string
			r    phaseResult
		}{{"lookups", res.Lookups}, {"puts", res.Puts}, {"gets", res.Gets}} {
			if p.r.OK < p.r.Total {
				failed = append(failed, fmt.Sprintf("%d of %d %s", p.r.Total-p.r.OK, p.r.Total, p.what))
			}
		}
		msg := "selftest failed: " + strings.Join(failed, ", ") + " failed"
		if o.unreachable > 0 {
			msg += fmt.Sprintf(" (%d of %d nodes made unreachable by --unreachable)", o.unreachable, n)
		}
		return errors.New(msg)
	}
	return nil
}

func printSelftest(w io.Writer, r selftestResult) {
	fmt.Fprintf(w, "selftest: %d nodes, %d random contacts each (seed %d)\n", r.Nodes, selftestContacts, r.Seed)
	fmt.Fprintf(w, "join: %d nodes in %.0f ms; routing tables of %d to %d nodes (median %d)\n", r.Nodes, r.JoinMs, r.TableMin, r.TableMax, r.TableMedian)
	if r.Unreachable > 0 {
		fmt.Fprintf(w, "unreachable: %d nodes closed after the join\n", r.Unreachable)
	}
	for _, p := range []struct {
		what string
		r    phaseResult
	}{{"lookups (found the node looked up)", r.Lookups}, {"puts (stored at one node or more)", r.Puts}, {"gets (read back by another node)", r.Gets}} {
		fmt.Fprintf(w, "%s: %d/%d ok in %.0f ms; each median %.1f ms, max %.1f ms\n", p.what, p.r.OK, p.r.Total, p.r.TotalMs, p.r.MedianMs, p.r.MaxMs)
	}
	if r.Passed {
		fmt.Fprintln(w, "selftest passed")
	}
}

func indexes(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// runPhase runs op on every job, selftestParallel at a time, and counts
// the successes and times each one.
func runPhase[J any](ctx context.Context, jobs []J, op func(J) bool) phaseResult {
	var (
		mu    sync.Mutex
		ok    int
		times []time.Duration
	)
	start := time.Now()
	parallel(ctx, jobs, func(j J) {
		t0 := time.Now()
		good := op(j)
		d := time.Since(t0)
		mu.Lock()
		defer mu.Unlock()
		if good {
			ok++
		}
		times = append(times, d)
	})
	r := phaseResult{OK: ok, Total: len(jobs), TotalMs: ms(time.Since(start))}
	if len(times) > 0 {
		slices.Sort(times)
		r.MedianMs, r.MaxMs = ms(times[len(times)/2]), ms(times[len(times)-1])
	}
	return r
}

// parallel calls f on each item, selftestParallel at a time, until ctx
// ends.
func parallel[T any](ctx context.Context, items []T, f func(T)) {
	sem := make(chan struct{}, selftestParallel)
	var wg sync.WaitGroup
	for _, it := range items {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			f(it)
		}()
	}
	wg.Wait()
}

func conn2addr(c *net.UDPConn) netip.AddrPort {
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}
