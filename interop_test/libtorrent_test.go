package interop

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lightdht/lightdht"
	"github.com/lightdht/lightdht/bep44"
	"github.com/lightdht/lightdht/krpc"
)

// systemPython is Debian's interpreter, the one python3-libtorrent
// installs its module for (a python3 earlier on PATH may be another).
const systemPython = "/usr/bin/python3"

// needTool skips the test when a real client is not installed, unless the
// test runs in CI, where .ci/run installs it and its absence is a failure.
func needTool(t *testing.T, what, install string, probe ...string) {
	t.Helper()
	if err := exec.Command(probe[0], probe[1:]...).Run(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not installed (%v): .ci/run installs %s", what, err, install)
		}
		t.Skipf("%s is not installed (%v); apt-get install %s", what, err, install)
	}
}

// ltNode is a libtorrent DHT node run by testdata/lthelper.py on one
// loopback address; do sends it a command and returns its answer.
type ltNode struct {
	addr   netip.AddrPort
	mu     sync.Mutex // one command at a time
	in     *json.Encoder
	lines  chan string
	stderr *bytes.Buffer
}

func startLibtorrent(t *testing.T, ip string) *ltNode {
	t.Helper()
	needTool(t, "python3-libtorrent", "python3-libtorrent", systemPython, "-c", "import libtorrent")
	cmd := exec.Command(systemPython, "testdata/lthelper.py", ip)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	n := &ltNode{in: json.NewEncoder(stdin), lines: make(chan string), stderr: &bytes.Buffer{}}
	cmd.Stderr = n.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			n.lines <- sc.Text()
		}
		close(n.lines)
	}()
	t.Cleanup(func() {
		n.in.Encode(map[string]string{"op": "quit"})
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(hangGuard):
			cmd.Process.Kill()
			<-done
		}
	})
	var hello struct{ Port uint16 }
	n.read(t, &hello)
	n.addr = netip.AddrPortFrom(netip.MustParseAddr(ip), hello.Port)
	return n
}

func (n *ltNode) read(t *testing.T, v any) {
	t.Helper()
	select {
	case line, ok := <-n.lines:
		if !ok {
			t.Fatalf("lthelper.py ended; stderr:\n%s", n.stderr)
		}
		var e struct{ Error string }
		json.Unmarshal([]byte(line), &e)
		if e.Error != "" {
			t.Fatalf("libtorrent: %s", e.Error)
		}
		if err := json.Unmarshal([]byte(line), v); err != nil {
			t.Fatalf("lthelper.py said %q: %v", line, err)
		}
	case <-time.After(hangGuard):
		t.Fatalf("lthelper.py silent for %v; stderr:\n%s", hangGuard, n.stderr)
	}
}

func (n *ltNode) do(t *testing.T, cmd map[string]any, answer any) {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.in.Encode(cmd); err != nil {
		t.Fatalf("lthelper.py: %v", err)
	}
	if answer == nil {
		answer = &struct{}{}
	}
	n.read(t, answer)
}

// eventually polls cond until it holds, failing after hangGuard: for
// effects a real client produces on its own schedule.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(hangGuard); !cond(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("after %v: %s", hangGuard, what)
		}
	}
}

// querySightings records the queries lightdht nodes receive.
type querySightings struct {
	mu sync.Mutex
	s  []lightdht.Sighting
}

func (q *querySightings) Observe(s lightdht.Sighting) {
	if s.Source == lightdht.SourceQuery {
		q.mu.Lock()
		q.s = append(q.s, s)
		q.mu.Unlock()
	}
}

func (q *querySightings) find(match func(lightdht.Sighting) bool) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return slices.ContainsFunc(q.s, match)
}

// libtorrentSecretKey is libtorrent's 64-byte form of an ed25519 private
// key: SHA-512 of the seed, clamped (orlp/ed25519, which libtorrent uses).
func libtorrentSecretKey(priv ed25519.PrivateKey) []byte {
	h := sha512.Sum512(priv.Seed())
	h[0] &= 248
	h[31] &= 63
	h[31] |= 64
	return h[:]
}

// TestLibtorrent runs a libtorrent DHT node (python3-libtorrent) among
// lightdht nodes on loopback and exercises each direction: ping and
// version, find_node, get_peers and announce_peer, sample_infohashes, and
// BEP 44 put and get of both item kinds.
func TestLibtorrent(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a libtorrent process")
	}
	lt := startLibtorrent(t, "127.35.0.1")
	nodes, obs := clientNodes(t, 35)
	ctx := context.Background()
	client := krpcClient(t, "127.35.2.1")
	me := krpc.RandomID()

	t.Run("ping and version, lightdht to libtorrent", func(t *testing.T) {
		r, err := client.Query(ctx, lt.addr, &krpc.Msg{Q: krpc.MethodPing, A: krpc.Args{ID: me}})
		if err != nil {
			t.Fatal(err)
		}
		if r.R.ID.IsZero() || !bytes.HasPrefix(r.V, []byte("LT")) {
			t.Errorf("libtorrent's ping reply: id %v, v %q", r.R.ID, r.V)
		}
		if r.IP.Addr() != netip.MustParseAddr("127.35.2.1") {
			t.Errorf("libtorrent's reply says we are at %v", r.IP)
		}
	})

	t.Run("libtorrent joins through lightdht", func(t *testing.T) {
		lt.do(t, map[string]any{"op": "add_node", "addr": nodes[0].Addr().String()}, nil)
		eventually(t, "no query from libtorrent (version LT) reached a lightdht node", func() bool {
			return obs.find(func(s lightdht.Sighting) bool {
				return s.Node.Addr == lt.addr && strings.HasPrefix(s.Version, "LT") &&
					(s.Method == krpc.MethodFindNode || s.Method == krpc.MethodGetPeers)
			})
		})
		// The nodes it learned answer it: its find_node replies list them.
		eventually(t, "libtorrent's find_node replies list no lightdht node", func() bool {
			r, err := client.Query(ctx, lt.addr, &krpc.Msg{Q: krpc.MethodFindNode, A: krpc.Args{ID: me, Target: nodes[3].ID()}})
			if err != nil {
				return false
			}
			return slices.ContainsFunc(r.R.Nodes, func(ni krpc.NodeInfo) bool { return ni.Addr.Addr().As4()[1] == 35 && ni.Addr.Addr().As4()[2] == 1 })
		})
		// Let lightdht's tables learn libtorrent from its queries.
		for _, n := range nodes {
			n.Ping(ctx, lt.addr)
		}
	})

	ih := krpc.RandomID()
	t.Run("announce from lightdht, get_peers from libtorrent", func(t *testing.T) {
		ar, err := nodes[2].Announce(ctx, ih, 6881)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(ar.AnnouncedTo, func(ni krpc.NodeInfo) bool { return ni.Addr == lt.addr }) {
			t.Errorf("announce reached %d nodes, not libtorrent at %v", len(ar.AnnouncedTo), lt.addr)
		}
		want := netip.AddrPortFrom(nodes[2].Addr().Addr(), 6881).String()
		var got struct{ Peers []string }
		lt.do(t, map[string]any{"op": "get_peers", "ih": ih.String()}, &got)
		if !slices.Contains(got.Peers, want) {
			t.Errorf("libtorrent's get_peers found %v, want %s", got.Peers, want)
		}
		// libtorrent itself stored the announce: it answers with values.
		r, err := client.Query(ctx, lt.addr, &krpc.Msg{Q: krpc.MethodGetPeers, A: krpc.Args{ID: me, InfoHash: ih}})
		if err != nil || !slices.Contains(r.R.Values, netip.MustParseAddrPort(want)) {
			t.Errorf("libtorrent's get_peers reply: %v, values %v", err, r.R.Values)
		}
	})

	t.Run("sample_infohashes to libtorrent", func(t *testing.T) {
		r, err := client.Query(ctx, lt.addr, &krpc.Msg{Q: krpc.MethodSampleInfohashes, A: krpc.Args{ID: me, Target: krpc.RandomID()}})
		if err != nil {
			t.Fatal(err)
		}
		if r.R.Num < 1 || !slices.Contains(r.R.Samples, ih) || r.R.Interval <= 0 {
			t.Errorf("libtorrent's sample: num %d interval %d samples %v, want %v among them", r.R.Num, r.R.Interval, r.R.Samples, ih)
		}
	})

	ih2 := krpc.RandomID()
	t.Run("announce from libtorrent, get_peers from lightdht", func(t *testing.T) {
		var ann struct{ Port uint16 }
		lt.do(t, map[string]any{"op": "announce", "ih": ih2.String(), "dir": t.TempDir()}, &ann)
		want := netip.AddrPortFrom(lt.addr.Addr(), ann.Port)
		eventually(t, fmt.Sprintf("lightdht's get_peers never found libtorrent's announce of %v", want), func() bool {
			res, _ := nodes[5].GetPeers(ctx, ih2)
			return slices.Contains(res.Peers, want)
		})
		if !obs.find(func(s lightdht.Sighting) bool {
			return s.Method == krpc.MethodAnnouncePeer && s.Infohash == ih2 && s.Peer == want
		}) {
			t.Error("no lightdht node saw libtorrent's announce_peer")
		}
	})

	t.Run("sample_infohashes from libtorrent", func(t *testing.T) {
		var got struct {
			Num      int
			Interval int
			Samples  []string
		}
		lt.do(t, map[string]any{"op": "sample", "addr": nodes[2].Addr().String(), "target": krpc.RandomID().String()}, &got)
		if got.Interval <= 0 || got.Num < 0 {
			t.Errorf("lightdht's sample as libtorrent saw it: %+v", got)
		}
	})

	t.Run("immutable item, lightdht to libtorrent and back", func(t *testing.T) {
		it := bep44.Item{V: []byte("13:from lightdht")}
		if _, err := nodes[4].Put(ctx, it, nil); err != nil {
			t.Fatal(err)
		}
		var got struct{ V string }
		lt.do(t, map[string]any{"op": "get_immutable", "target": it.Target().String()}, &got)
		if got.V != hex.EncodeToString(it.V) {
			t.Errorf("libtorrent got %s, want %x", got.V, it.V)
		}
		var put struct {
			Target string
			Stored int
		}
		v := []byte("d3:fooi42ee")
		lt.do(t, map[string]any{"op": "put_immutable", "v": hex.EncodeToString(v)}, &put)
		target, err := krpc.ParseID(put.Target)
		if err != nil || put.Stored == 0 {
			t.Fatalf("libtorrent's put: target %q (%v), stored at %d", put.Target, err, put.Stored)
		}
		res, err := nodes[6].Get(ctx, target)
		if err != nil || !bytes.Equal(res.Item.V, v) {
			t.Errorf("lightdht's get of libtorrent's item: %v, %q", err, res.Item.V)
		}
	})

	t.Run("mutable item, lightdht to libtorrent and back", func(t *testing.T) {
		pub, priv, _ := ed25519.GenerateKey(nil)
		k := [32]byte(pub)
		it := bep44.Item{Mutable: true, K: k, Salt: []byte("lightdht"), Seq: 1, V: []byte("5:hello")}
		it.Sig = bep44.Sign(priv, it.Salt, it.Seq, it.V)
		if _, err := nodes[4].Put(ctx, it, nil); err != nil {
			t.Fatal(err)
		}
		var got struct {
			V   string
			Seq int64
		}
		lt.do(t, map[string]any{"op": "get_mutable", "k": hex.EncodeToString(pub), "salt": hex.EncodeToString(it.Salt)}, &got)
		if got.V != hex.EncodeToString(it.V) || got.Seq != 1 {
			t.Errorf("libtorrent got %s seq %d, want %x seq 1", got.V, got.Seq, it.V)
		}

		salt := []byte("libtorrent")
		var put struct {
			Seq    int64
			Stored int
		}
		lt.do(t, map[string]any{"op": "put_mutable", "sk": hex.EncodeToString(libtorrentSecretKey(priv)), "k": hex.EncodeToString(pub),
			"v": hex.EncodeToString([]byte("world")), "salt": hex.EncodeToString(salt)}, &put)
		if put.Stored == 0 {
			t.Fatalf("libtorrent's mutable put stored at no node (seq %d)", put.Seq)
		}
		res, err := nodes[6].GetMutable(ctx, k, salt)
		if err != nil || string(res.Item.V) != "5:world" || res.Item.Seq != put.Seq {
			t.Errorf("lightdht's get of libtorrent's mutable item: %v, %q seq %d (put seq %d)", err, res.Item.V, res.Item.Seq, put.Seq)
		}
	})
}

// krpcClient is a bare transport on a loopback address, for single queries.
func krpcClient(t *testing.T, ip string) *krpc.Transport {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := krpc.New(krpc.Config{Conn: c, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	go tr.Serve(context.Background())
	t.Cleanup(func() { tr.Close() })
	return tr
}
