package interop

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lightdht/lightdht"
	"github.com/lightdht/lightdht/krpc"
)

// freePort returns a UDP and TCP port that was free on ip a moment ago,
// for a client that must be told its ports.
func freePort(t *testing.T, ip string) int {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// TestAria2 runs aria2 (Debian aria2) fetching a magnet link whose only
// way in is a lightdht network on loopback (--dht-entry-point, bound to
// one loopback address with --interface, no trackers, no local peer
// discovery) and exercises each direction: aria2 joins through lightdht
// and looks up and announces the infohash there; lightdht pings aria2
// (its version), asks it find_node and get_peers, and announces to it.
func TestAria2(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an aria2 process")
	}
	nodes, obs := clientNodes(t, 36)
	ctx := context.Background()

	ih := krpc.RandomID()
	aria, tcpPort := startAria2(t, "127.36.0.1", nodes[0].Addr(), ih)

	t.Run("aria2 joins through lightdht", func(t *testing.T) {
		eventually(t, "no query from aria2 (version A2) reached a lightdht node", func() bool {
			return obs.find(func(s lightdht.Sighting) bool { return s.Node.Addr == aria && strings.HasPrefix(s.Version, "A2") })
		})
	})
	t.Run("aria2 looks up and announces through lightdht", func(t *testing.T) {
		eventually(t, "aria2's get_peers and announce_peer never reached a lightdht node", func() bool {
			return obs.find(func(s lightdht.Sighting) bool {
				return s.Node.Addr == aria && s.Method == krpc.MethodGetPeers && s.Infohash == ih
			}) && obs.find(func(s lightdht.Sighting) bool {
				return s.Node.Addr == aria && s.Method == krpc.MethodAnnouncePeer && s.Infohash == ih &&
					s.Peer == netip.AddrPortFrom(aria.Addr(), uint16(tcpPort))
			})
		})
		res, err := nodes[4].GetPeers(ctx, ih)
		if err != nil || !slices.Contains(res.Peers, netip.AddrPortFrom(aria.Addr(), uint16(tcpPort))) {
			t.Errorf("lightdht's get_peers: %v, peers %v; want aria2 at port %d", err, res.Peers, tcpPort)
		}
	})

	client := krpcClient(t, "127.36.2.1")
	me := krpc.RandomID()
	t.Run("lightdht queries aria2", func(t *testing.T) {
		r, err := client.Query(ctx, aria, &krpc.Msg{Q: krpc.MethodPing, A: krpc.Args{ID: me}})
		if err != nil || r.R.ID.IsZero() || !bytes.HasPrefix(r.V, []byte("A2")) {
			t.Fatalf("aria2's ping reply: %v, id %v, v %q", err, r.R.ID, r.V)
		}
		r, err = client.Query(ctx, aria, &krpc.Msg{Q: krpc.MethodFindNode, A: krpc.Args{ID: me, Target: nodes[2].ID()}})
		if err != nil || !slices.ContainsFunc(r.R.Nodes, func(ni krpc.NodeInfo) bool { return ni.ID == nodes[2].ID() }) {
			t.Errorf("aria2's find_node reply: %v, nodes %v; want %v among them", err, r.R.Nodes, nodes[2].ID())
		}
		ih2 := krpc.RandomID()
		r, err = client.Query(ctx, aria, &krpc.Msg{Q: krpc.MethodGetPeers, A: krpc.Args{ID: me, InfoHash: ih2}})
		if err != nil || len(r.R.Token) == 0 {
			t.Fatalf("aria2's get_peers reply: %v, token %x", err, r.R.Token)
		}
		if _, err := client.Query(ctx, aria, &krpc.Msg{Q: krpc.MethodAnnouncePeer, A: krpc.Args{ID: me, InfoHash: ih2, Port: 5555, Token: r.R.Token}}); err != nil {
			t.Fatalf("aria2 refused the announce: %v", err)
		}
		r, err = client.Query(ctx, aria, &krpc.Msg{Q: krpc.MethodGetPeers, A: krpc.Args{ID: me, InfoHash: ih2}})
		if err != nil || !slices.Contains(r.R.Values, netip.MustParseAddrPort("127.36.2.1:5555")) {
			t.Errorf("aria2's get_peers after the announce: %v, values %v", err, r.R.Values)
		}
	})
}

// startAria2 starts aria2 on loopback address ip, fetching a magnet link
// for ih with entry as its only way into the DHT, and returns its DHT
// address and its TCP port. Its output is logged if the test fails.
func startAria2(t *testing.T, ip string, entry netip.AddrPort, ih krpc.ID) (netip.AddrPort, int) {
	t.Helper()
	needTool(t, "aria2", "aria2", "aria2c", "--version")
	dhtPort, tcpPort := freePort(t, ip), freePort(t, ip)
	dir := t.TempDir()
	cmd := exec.Command("aria2c", "--no-conf", "--quiet",
		"--interface="+ip, "--enable-dht=true", "--enable-dht6=false",
		"--dht-listen-port="+strconv.Itoa(dhtPort), "--listen-port="+strconv.Itoa(tcpPort),
		"--dht-entry-point="+entry.String(), "--dht-file-path="+filepath.Join(dir, "dht.dat"),
		"--bt-enable-lpd=false", "--enable-peer-exchange=false", "--dir="+dir,
		fmt.Sprintf("--stop=%d", int(hangGuard/time.Second)), // a hang guard of its own
		"magnet:?xt=urn:btih:"+ih.String())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("aria2 output:\n%s", out.String())
		}
	})
	return netip.AddrPortFrom(netip.MustParseAddr(ip), uint16(dhtPort)), tcpPort
}
