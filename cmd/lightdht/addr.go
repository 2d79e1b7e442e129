package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/lightdht/lightdht/krpc"
)

// defaultBootstrap is the default of --bootstrap: the well-known routers
// of the public DHT.
const defaultBootstrap = "router.bittorrent.com:6881,router.utorrent.com:6881,dht.transmissionbt.com:6881,dht.libtorrent.org:25401"

// lookupHost resolves a host name; a variable so that tests can check it
// is never called for the default routers.
var lookupHost = func(ctx context.Context, host string) ([]netip.Addr, error) {
	return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}

// addBootstrap adds --bootstrap.
func (c *cli) addBootstrap() *string {
	return c.fs.String("bootstrap", defaultBootstrap, "comma-separated host:port addresses to join the DHT through")
}

// resolveBootstrap resolves a --bootstrap list. Host names that do not
// resolve are skipped with a warning, as long as one address remains.
func (c *cli) resolveBootstrap(ctx context.Context, list string) ([]netip.AddrPort, error) {
	var out []netip.AddrPort
	var errs []string
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		ap, err := resolveAddr(ctx, s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "cannot resolve") {
				return nil, usagef("--bootstrap: %v", err)
			}
			c.log.Warn().Err(err).Msg("bootstrap address skipped")
			errs = append(errs, err.Error())
			continue
		}
		out = append(out, ap)
	}
	if len(out) == 0 {
		if len(errs) > 0 {
			return nil, usagef("--bootstrap: no address resolves: %s", strings.Join(errs, "; "))
		}
		return nil, usagef("--bootstrap: empty")
	}
	strs := make([]string, len(out))
	for i, a := range out {
		strs[i] = a.String()
	}
	c.log.Debug().Strs("bootstrap", strs).Msg("bootstrap addresses")
	return out, nil
}

// resolveAddr parses host:port, resolving the host name if needed. A
// malformed address is rejected before any name lookup.
func resolveAddr(ctx context.Context, s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if ap.Port() == 0 {
			return ap, usagef("bad address %q: port 0", s)
		}
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return netip.AddrPort{}, usagef("bad address %q: want host:port", s)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return netip.AddrPort{}, usagef("bad address %q: port %q is not a number from 1 to 65535", s, port)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return netip.AddrPortFrom(ip.Unmap(), uint16(p)), nil
	}
	if !validHostname(host) {
		return netip.AddrPort{}, usagef("bad address %q: %q is neither an IP address nor a host name", s, host)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ips, err := lookupHost(ctx, host)
	if err != nil || len(ips) == 0 {
		if err == nil {
			err = fmt.Errorf("no address")
		}
		return netip.AddrPort{}, usagef("cannot resolve %q: %v", host, err)
	}
	ip := ips[0]
	for _, a := range ips {
		if a.Unmap().Is4() {
			ip = a
			break
		}
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(p)), nil
}

func validHostname(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

// parseListen parses a --listen value: an IP address and port (port 0:
// any free port).
func parseListen(flagName, s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return ap, usagef("bad --%s %q: want IP:port, e.g. 0.0.0.0:6881", flagName, s)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// allLocal reports whether every address is loopback, private or
// link-local: a local test network.
func allLocal(addrs []netip.AddrPort) bool {
	for _, a := range addrs {
		ip := a.Addr()
		if !ip.IsLoopback() && !ip.IsPrivate() && !ip.IsLinkLocalUnicast() {
			return false
		}
	}
	return len(addrs) > 0
}

func allLoopback(addrs []netip.AddrPort) bool {
	for _, a := range addrs {
		if !a.Addr().IsLoopback() {
			return false
		}
	}
	return len(addrs) > 0
}

// listenUDP opens a UDP socket on listen, or when listen is empty on an
// ephemeral port of the loopback address when every destination is
// loopback and of the wildcard address otherwise. v6 selects IPv6.
func listenUDP(listen string, flagName string, dests []netip.AddrPort, v6 bool) (*net.UDPConn, error) {
	var la netip.AddrPort
	if listen != "" {
		var err error
		if la, err = parseListen(flagName, listen); err != nil {
			return nil, err
		}
		v6 = la.Addr().Is6()
	} else {
		switch {
		case v6 && allLoopback(dests):
			la = netip.MustParseAddrPort("[::1]:0")
		case v6:
			la = netip.MustParseAddrPort("[::]:0")
		case allLoopback(dests):
			la = netip.MustParseAddrPort("127.0.0.1:0")
		default:
			la = netip.MustParseAddrPort("0.0.0.0:0")
		}
	}
	network := "udp4"
	if v6 {
		network = "udp6"
	}
	return net.ListenUDP(network, net.UDPAddrFromAddrPort(la))
}

// has6 reports whether any address is IPv6.
func has6(addrs []netip.AddrPort) bool {
	for _, a := range addrs {
		if a.Addr().Is6() {
			return true
		}
	}
	return false
}

func has4(addrs []netip.AddrPort) bool {
	for _, a := range addrs {
		if a.Addr().Is4() {
			return true
		}
	}
	return false
}

// parseID parses a 40-hex-digit node ID or infohash; what names it in the
// error ("infohash", "target").
func parseID(what, s string) (krpc.ID, error) {
	var id krpc.ID
	if len(s) != 2*krpc.IDLen {
		return id, usagef("bad %s %q: want %d hex digits, got %d characters", what, s, 2*krpc.IDLen, len(s))
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, usagef("bad %s %q: not hexadecimal", what, s)
	}
	return id, nil
}

// printableVersion renders a "v" client version as the database does:
// two printable letters and the hex of the next two bytes ("LD0001"),
// printable strings as they are, anything else as 0x and hex.
func printableVersion(v []byte) string {
	printable := func(c byte) bool { return c > ' ' && c < 0x7f }
	if len(v) == 4 && printable(v[0]) && printable(v[1]) {
		return string(v[:2]) + hex.EncodeToString(v[2:])
	}
	for _, c := range v {
		if !printable(c) {
			return "0x" + hex.EncodeToString(v)
		}
	}
	return string(v)
}

// nodeJSON is a node in JSON output.
type nodeJSON struct {
	ID   string `json:"id"`
	Addr string `json:"addr"`
}

func nodesJSON(ns []krpc.NodeInfo) []nodeJSON {
	out := make([]nodeJSON, 0, len(ns))
	for _, n := range ns {
		out = append(out, nodeJSON{ID: n.ID.String(), Addr: n.Addr.String()})
	}
	return out
}
