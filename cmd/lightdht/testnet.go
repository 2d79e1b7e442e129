package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"

	"github.com/lightdht/lightdht"
	"github.com/lightdht/lightdht/table"
)

// testnetIPs is the default first address of a spread test network.
const testnetIPs = "127.10.0.1"

// testnetAddrs returns the n listen addresses of a test network: spread
// over consecutive IPs from first (all on port base), or with one IP on
// consecutive ports from base. Port 0 gives each node a free port.
func testnetAddrs(n int, ip string, oneIP bool, base int) ([]netip.AddrPort, error) {
	first, err := netip.ParseAddr(ip)
	if err != nil || !first.Is4() {
		return nil, usagef("bad IP %q: want an IPv4 address", ip)
	}
	if !first.IsLoopback() {
		return nil, usagef("IP %v is not a loopback address (127.0.0.0/8): a test network stays on this machine", first)
	}
	if base < 0 || base > 65535 || (oneIP && base != 0 && base+n-1 > 65535) {
		return nil, usagef("bad --base-port %d", base)
	}
	out := make([]netip.AddrPort, n)
	b := first.As4()
	u := binary.BigEndian.Uint32(b[:])
	for i := range out {
		if oneIP {
			p := base
			if base != 0 {
				p = base + i
			}
			out[i] = netip.AddrPortFrom(first, uint16(p))
			continue
		}
		var a [4]byte
		binary.BigEndian.PutUint32(a[:], u+uint32(i))
		addr := netip.AddrFrom4(a)
		if !addr.IsLoopback() {
			return nil, usagef("%d nodes from %v leave 127.0.0.0/8", n, first)
		}
		out[i] = netip.AddrPortFrom(addr, uint16(base))
	}
	return out, nil
}

func testnetCmd(c *cli) func(context.Context, []string) error {
	c.addJSON()
	nodes := c.fs.Int("nodes", 30, "number of nodes")
	ip := c.fs.String("ip", "", "run every node on this one loopback IP, on consecutive ports from --base-port (default: one IP per node from --ips)")
	ips := c.fs.String("ips", testnetIPs, "first IP of the spread layout: node i listens on this address plus i")
	base := c.fs.Int("base-port", 6881, "UDP port (spread layout) or first port (--ip); 0: any free port")
	selftest := c.fs.Bool("selftest", false, "check the network and exit: each node joins through 3 random contacts, then random nodes look up every node, and store items that others read back; exit 1 if any fails")
	unreachable := c.fs.Int("unreachable", 0, "with --selftest: close this many random nodes after the join (to see the check fail)")
	seed := c.optIntFlag("seed", "with --selftest: seed of the random choices, to repeat a run (default: random)")
	metricsAddr := c.addMetrics()
	return func(ctx context.Context, args []string) error {
		if err := nargs(args, 0, 0, "no arguments"); err != nil {
			return err
		}
		if *nodes < 1 || *nodes > 65535 {
			return usagef("bad --nodes %d: want 1 to 65535", *nodes)
		}
		oneIP := c.isSet("ip")
		first := *ips
		if oneIP {
			first = *ip
		}
		addrs, err := testnetAddrs(*nodes, first, oneIP, *base)
		if err != nil {
			return err
		}
		if *selftest && *metricsAddr != "" {
			return usagef("--metrics serves a running test network; --selftest exits once its check is done")
		}
		if *selftest {
			s := rand.Uint64()
			if seed.set {
				s = uint64(seed.v)
			}
			return runSelftest(ctx, c, selftestOpts{addrs: addrs, oneIP: oneIP, unreachable: *unreachable, seed: s})
		}
		if c.isSet("unreachable") || c.isSet("seed") {
			return usagef("--unreachable and --seed need --selftest")
		}
		set, metricsURL, stopMetrics, err := c.startMetrics(*metricsAddr)
		if err != nil {
			return err
		}
		defer stopMetrics()
		var all []*lightdht.Node
		var wg sync.WaitGroup
		defer func() {
			for _, n := range all {
				n.Close()
			}
			wg.Wait()
		}()
		var boot []netip.AddrPort
		for i, a := range addrs {
			conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(a))
			if err != nil {
				return err
			}
			cfg := lightdht.Config{Conn4: conn, Bootstrap: boot, Logger: c.log}
			if set != nil {
				cfg.Observer = set
			}
			if !oneIP {
				// One IP per node, as on the public DHT: keep the
				// k-bucket limit of one node per IP.
				cfg.IPsPerBucket = table.DefaultIPsPerBucket
			}
			// Crawlers and lookups hit test nodes hard, from few IPs.
			n, err := lightdht.New(lightdht.LocalTestNet(cfg))
			if err != nil {
				conn.Close()
				return err
			}
			all = append(all, n)
			if set != nil {
				set.AddNode(n)
			}
			wg.Add(1)
			go func() { defer wg.Done(); n.Serve(ctx) }()
			if i == 0 {
				boot = []netip.AddrPort{n.Addr()}
			}
		}
		// Join in parallel, a few at a time: each bootstraps from the
		// first. A node's first bootstrap (Serve's, which Bootstrap
		// joins) runs while later nodes are still starting, so a second
		// round, once every node is up, lets early nodes learn of late
		// ones, as table maintenance would in time.
		sem := make(chan struct{}, 8)
		for range 2 {
			var jwg sync.WaitGroup
			for _, n := range all[1:] {
				jwg.Add(1)
				sem <- struct{}{}
				go func() {
					defer jwg.Done()
					defer func() { <-sem }()
					if _, err := n.Bootstrap(ctx); err != nil {
						c.log.Warn().Err(err).Stringer("node", n.Addr()).Msg("bootstrap failed")
					}
				}()
			}
			jwg.Wait()
		}
		if missing := settleTestnet(ctx, c.log, all, table.DefaultK, settleRounds); missing > 0 && ctx.Err() == nil {
			c.log.Warn().Int("links", missing).Msg("test network: some nodes still lack nearest neighbours in their tables; crawls and lookups may miss nodes")
		}
		if ctx.Err() != nil {
			return nil
		}
		type nodeOut struct {
			ID   string `json:"id"`
			Addr string `json:"addr"`
		}
		out := struct {
			Bootstrap string    `json:"bootstrap"`
			Nodes     []nodeOut `json:"nodes"`
			Metrics   string    `json:"metrics,omitempty"`
		}{Bootstrap: all[0].Addr().String(), Metrics: metricsURL}
		for _, n := range all {
			out.Nodes = append(out.Nodes, nodeOut{n.ID().String(), n.Addr().String()})
		}
		if err := c.output(out, func(w io.Writer) {
			for _, n := range out.Nodes {
				fmt.Fprintf(w, "node %s %s\n", n.ID, n.Addr)
			}
			fmt.Fprintf(w, "bootstrap %s\n", out.Bootstrap)
		}); err != nil {
			return err
		}
		c.log.Info().Int("nodes", len(all)).Msg("test network ready; Ctrl-C stops it")
		<-ctx.Done()
		return nil
	}
}
