package synth

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"net/netip"
	"os"
	"reflect"
	"runtime"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lightdht/lightdht/bep42"
	"github.com/lightdht/lightdht/internal/simnet"
	"github.com/lightdht/lightdht/krpc"
)

// newNet builds a network that is closed when the test ends.
func newNet(t testing.TB, cfg Config) *Network {
	t.Helper()
	n, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// client sends queries from a simnet conn and waits for replies. Use it
// in a synctest bubble, where waiting for a reply that never comes costs
// no real time.
type client struct {
	t    testing.TB
	c    *simnet.Conn
	id   krpc.ID
	tid  uint32
	buf  []byte
	wait time.Duration
}

func newClient(t testing.TB, n *Network) *client {
	t.Helper()
	c, err := n.Sim().NewConn4()
	if err != nil {
		t.Fatalf("NewConn4: %v", err)
	}
	return &client{t: t, c: c, id: krpc.ID{0xc1, 0x1e, 0x47}, buf: make([]byte, 4096), wait: time.Second}
}

// raw sends pkt to addr and returns the first packet that comes back
// within c.wait, or nil.
func (c *client) raw(to netip.AddrPort, pkt []byte) []byte {
	c.t.Helper()
	c.send(to, pkt)
	return c.read(time.Now().Add(c.wait))
}

func (c *client) send(to netip.AddrPort, pkt []byte) {
	c.t.Helper()
	if _, err := c.c.WriteToUDPAddrPort(pkt, to); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// read returns the next packet that arrives before deadline, or nil.
func (c *client) read(deadline time.Time) []byte {
	c.t.Helper()
	c.c.SetReadDeadline(deadline)
	k, _, err := c.c.ReadFromUDPAddrPort(c.buf)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil
		}
		c.t.Fatalf("read: %v", err)
	}
	return bytes.Clone(c.buf[:k])
}

// query sends a query with method q and args a to addr and returns the
// decoded answer, or nil if none came within c.wait. Late answers to
// earlier queries are skipped.
func (c *client) query(to netip.AddrPort, q string, a krpc.Args) *krpc.Msg {
	c.t.Helper()
	c.tid++
	if a.ID.IsZero() {
		a.ID = c.id
	}
	m := krpc.Msg{T: []byte{byte(c.tid >> 8), byte(c.tid)}, Y: krpc.KindQuery, Q: q, A: a}
	c.send(to, mustMarshal(c.t, &m))
	deadline := time.Now().Add(c.wait)
	for {
		b := c.read(deadline)
		if b == nil {
			return nil
		}
		var r krpc.Msg
		if err := krpc.Unmarshal(b, &r); err != nil {
			c.t.Fatalf("reply from %v does not decode: %v", to, err)
		}
		if bytes.Equal(r.T, m.T) {
			return &r
		}
	}
}

func TestNewValidates(t *testing.T) {
	bad := []Config{
		{},
		{N: -1},
		{N: 1, K: -1},
		{N: 1, SilentShare: 1.5},
		{N: 1, BEP51Share: -0.1},
		{N: 1, DropUnknownShare: 1.1},
		{N: 1, BEP51Share: 0.6, DropUnknownShare: 0.5},
		{N: 1, Bogons: -1},
		{N: MaxNodes, Bogons: 1},
		{N: 1, Versions: make([]string, 257)},
		{N: 1, Loss: 2},
	}
	for _, cfg := range bad {
		if n, err := New(cfg); err == nil {
			n.Close()
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
	n := newNet(t, Config{N: 1})
	if n.Len() != 1 || len(n.Bootstrap()) != 1 {
		t.Errorf("one-node network: Len %d, Bootstrap %v", n.Len(), n.Bootstrap())
	}
}

func TestDeterminism(t *testing.T) {
	cfg := Config{N: 3000, Seed: 7, SilentShare: 0.1, BEP42Share: 0.5, BEP51Share: 0.3,
		InfohashesPerNode: 40, PublicIPs: true, Bogons: 30}
	a, b := newNet(t, cfg), newNet(t, cfg)
	ta, tb := a.Truth(), b.Truth()
	if !reflect.DeepEqual(ta.Nodes, tb.Nodes) {
		t.Fatal("same seed, different truth")
	}
	for _, i := range []int{0, 17, 2999} {
		if !slices.Equal(a.Infohashes(i), b.Infohashes(i)) {
			t.Errorf("entry %d: different infohashes", i)
		}
		for d := range 12 {
			if !reflect.DeepEqual(a.Bucket(i, d), b.Bucket(i, d)) {
				t.Errorf("entry %d bucket %d differs", i, d)
			}
		}
	}
	cfg.Seed = 8
	c := newNet(t, cfg)
	if reflect.DeepEqual(ta.Nodes, c.Truth().Nodes) {
		t.Error("different seeds, same truth")
	}
}

func TestTruthRoles(t *testing.T) {
	const n = 20000
	net := newNet(t, Config{N: n, Seed: 3, SilentShare: 0.1, BEP42Share: 0.6, BEP51Share: 0.25,
		InfohashesPerNode: 10, PublicIPs: true, Bogons: 200,
		Versions: []string{"LT\x01\x02", "UT\x03\x05", ""}})
	tr := net.Truth()
	if len(tr.Nodes) != n+200 {
		t.Fatalf("%d entries, want %d", len(tr.Nodes), n+200)
	}
	var silent, bogons, b42, b51 int
	addrs := map[netip.Addr]bool{}
	vers := map[string]int{}
	for i, e := range tr.Nodes {
		if i > 0 && tr.Nodes[i-1].ID.Cmp(e.ID) >= 0 {
			t.Fatalf("entries %d and %d not in ascending ID order", i-1, i)
		}
		if addrs[e.Addr.Addr()] {
			t.Fatalf("address %v used twice", e.Addr)
		}
		addrs[e.Addr.Addr()] = true
		if j, ok := tr.Index(e.Addr); !ok || j != i {
			t.Fatalf("Index(%v) = %d, %v; want %d", e.Addr, j, ok, i)
		}
		if got := bep42.Valid(e.ID, e.Addr.Addr()); got != e.BEP42 {
			t.Fatalf("entry %d: BEP42 %v, bep42.Valid %v", i, e.BEP42, got)
		}
		if e.Bogon {
			bogons++
			if IsPublic(e.Addr.Addr()) || e.Answering || e.Silent || e.Version != "" {
				t.Fatalf("bogon %+v", e)
			}
			continue
		}
		if !IsPublic(e.Addr.Addr()) {
			t.Fatalf("node address %v is not public", e.Addr)
		}
		vers[e.Version]++
		if e.Silent {
			silent++
			if e.Answering || e.BEP51 {
				t.Fatalf("silent node %+v answers", e)
			}
		}
		if e.BEP42 {
			b42++
		}
		if e.BEP51 {
			b51++
			if e.Num != 10 || len(tr.Infohashes(i)) != 10 {
				t.Fatalf("BEP 51 node with Num %d", e.Num)
			}
		} else if e.Num != 0 || tr.Infohashes(i) != nil {
			t.Fatalf("non-BEP 51 node with infohashes")
		}
	}
	near := func(name string, got int, want float64) {
		if f := float64(got); f < want*0.9 || f > want*1.1 {
			t.Errorf("%s = %d, want about %.0f", name, got, want)
		}
	}
	near("silent", silent, 0.1*n)
	near("BEP 42 valid", b42, 0.6*n)
	near("BEP 51", b51, 0.9*0.25*n)
	near("answering", tr.Answering(), 0.9*n)
	for _, v := range []string{"LT\x01\x02", "UT\x03\x05", ""} {
		near("version "+v, vers[v], n/3.0)
	}
	if bogons != 200 {
		t.Errorf("%d bogons, want 200", bogons)
	}
}

func TestDefaultAddresses(t *testing.T) {
	tr := newNet(t, Config{N: 1000, Seed: 1, Bogons: 50}).Truth()
	lo, hi := netip.MustParseAddr("127.1.0.0"), netip.MustParseAddr("127.1.3.231")
	for _, e := range tr.Nodes {
		a := e.Addr.Addr()
		if e.Bogon {
			if a.IsLoopback() || IsPublic(a) {
				t.Errorf("bogon at %v", a)
			}
		} else if a.Less(lo) || hi.Less(a) {
			t.Errorf("node at %v, outside %v-%v", a, lo, hi)
		}
	}
}

func TestIsPublic(t *testing.T) {
	for s, want := range map[string]bool{
		"1.1.1.1": true, "8.8.8.8": true, "100.63.255.255": true, "100.128.0.0": true,
		"10.1.2.3": false, "127.0.0.1": false, "172.31.0.1": false, "172.32.0.1": true,
		"192.168.1.1": false, "169.254.1.1": false, "100.64.0.1": false, "0.1.2.3": false,
		"224.0.0.1": false, "255.255.255.255": false, "198.18.0.1": false, "203.0.113.9": false,
		"::ffff:8.8.8.8": true, "2001:db8::1": false,
	} {
		if got := IsPublic(netip.MustParseAddr(s)); got != want {
			t.Errorf("IsPublic(%s) = %v, want %v", s, got, want)
		}
	}
}

// TestTables checks the sorted-range rule for every table of a 10,000-node
// network: bucket d of X holds only entries sharing exactly d bits with X,
// at most K of them, all of the range when it has at most K; X's closest
// entry is in its table; and every entry is in somebody's table.
func TestTables(t *testing.T) {
	const n = 10000
	net := newNet(t, Config{N: n, Seed: 11, SilentShare: 0.1, Bogons: 20})
	tr := net.Truth()
	ids := make([]krpc.ID, len(tr.Nodes))
	for i := range ids {
		ids[i] = tr.Nodes[i].ID
	}
	inSome := make([]bool, len(ids))
	for x := range ids {
		for d := range 64 { // no two of 10,000 random IDs share 64 bits
			b := net.Bucket(x, d)
			if len(b) > DefaultK {
				t.Fatalf("node %d bucket %d has %d entries", x, d, len(b))
			}
			for _, e := range b {
				if cpl := ids[x].CommonPrefixLen(e.ID); cpl != d {
					t.Fatalf("node %d bucket %d holds %v sharing %d bits", x, d, e.ID, cpl)
				}
				y, ok := tr.Index(e.Addr)
				if !ok || ids[y] != e.ID {
					t.Fatalf("bucket entry %v is not an entry", e)
				}
				inSome[y] = true
			}
			if x%50 != 0 {
				continue
			}
			// For some nodes, compare with the full range of the bucket.
			var rangeSize int
			for y := range ids {
				if ids[x].CommonPrefixLen(ids[y]) == d {
					rangeSize++
				}
			}
			if want := min(rangeSize, DefaultK); len(b) != want {
				t.Fatalf("node %d bucket %d: %d entries, want %d (range %d)", x, d, len(b), want, rangeSize)
			}
		}
	}
	// Coverage and nearest neighbours, for all entries: x's nearest
	// neighbour w is in x's table, and x is the only entry of w's bucket
	// at depth cpl(x, w).
	for x := range ids {
		// The entries sharing the most bits with x are contiguous and
		// next to it in ID order.
		d := 0
		if x > 0 {
			d = ids[x].CommonPrefixLen(ids[x-1])
		}
		if x+1 < len(ids) {
			d = max(d, ids[x].CommonPrefixLen(ids[x+1]))
		}
		w := -1
		for _, step := range []int{-1, 1} {
			for y := x + step; y >= 0 && y < len(ids) && ids[x].CommonPrefixLen(ids[y]) == d; y += step {
				if w < 0 || krpc.CloserTo(ids[x], ids[y], ids[w]) {
					w = y
				}
			}
		}
		if !slices.ContainsFunc(net.Bucket(x, d), func(e krpc.NodeInfo) bool { return e.ID == ids[w] }) {
			t.Fatalf("entry %d: nearest entry %d (cpl %d) not in its table", x, w, d)
		}
		b := net.Bucket(w, d)
		if len(b) != 1 || b[0].ID != ids[x] {
			t.Fatalf("entry %d: bucket %d of its nearest entry %d is %v", x, d, w, b)
		}
		inSome[x] = true
	}
	for y, ok := range inSome {
		if !ok {
			t.Errorf("entry %d is in no table", y)
		}
	}
}

// table returns every entry of x's table.
func table(net *Network, x int) []krpc.NodeInfo {
	var all []krpc.NodeInfo
	for d := range 160 {
		all = append(all, net.Bucket(x, d)...)
	}
	return all
}

// crawl runs a naive BFS crawler from the bootstrap nodes: it sends each
// discovered loopback or public node a find_node for its own ID and one
// for a random target, and returns the addresses that answered. check,
// if not nil, sees every reply.
func crawl(t testing.TB, net *Network, check func(to netip.AddrPort, target krpc.ID, r *krpc.Msg)) map[netip.AddrPort]bool {
	c := newClient(t, net)
	rng := rand.New(rand.NewPCG(1, 2))
	type node struct {
		id   krpc.ID
		addr netip.AddrPort
	}
	seen := map[netip.AddrPort]bool{}
	var queue []node
	add := func(ni krpc.NodeInfo) {
		if !seen[ni.Addr] {
			seen[ni.Addr] = true
			queue = append(queue, node{ni.ID, ni.Addr})
		}
	}
	for _, a := range net.Bootstrap() {
		add(krpc.NodeInfo{Addr: a})
	}
	answered := map[netip.AddrPort]bool{}
	for len(queue) > 0 {
		nd := queue[0]
		queue = queue[1:]
		if a := nd.addr.Addr(); !a.IsLoopback() && !IsPublic(a) { // the test crawler's bogon filter
			continue
		}
		if nd.id.IsZero() { // a bootstrap node: learn its ID
			r := c.query(nd.addr, krpc.MethodPing, krpc.Args{})
			if r == nil {
				continue
			}
			nd.id = r.R.ID
		}
		var rnd krpc.ID
		for j := range rnd {
			rnd[j] = byte(rng.Uint32())
		}
		for _, tg := range []krpc.ID{nd.id, rnd} {
			r := c.query(nd.addr, krpc.MethodFindNode, krpc.Args{Target: tg})
			if r == nil {
				break
			}
			answered[nd.addr] = true
			if check != nil {
				check(nd.addr, tg, r)
			}
			for _, ni := range r.R.Nodes {
				add(ni)
			}
		}
	}
	return answered
}

// checkFound fails the test if answered holds a node that should not
// answer or less than 99% of the answering nodes.
func checkFound(t testing.TB, tr Truth, answered map[netip.AddrPort]bool) {
	want, found := tr.Answering(), 0
	for i, e := range tr.Nodes {
		if answered[e.Addr] {
			if !e.Answering {
				t.Fatalf("entry %d (%+v) answered", i, e)
			}
			found++
		}
	}
	t.Logf("found %d of %d answering nodes", found, want)
	if found < want*99/100 {
		t.Errorf("crawl found %d of %d answering nodes, want >= 99%%", found, want)
	}
}

// TestCrawl runs a naive BFS crawler over a 10,000-node network with 10%
// silent nodes and checks that it finds at least 99% of the answering
// nodes, and that the first find_node answers are the K closest entries
// of the answering node's table.
func TestCrawl(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net := newNet(t, Config{N: 10000, Seed: 5, SilentShare: 0.1, Bogons: 50})
		tr := net.Truth()
		checked := 0
		answered := crawl(t, net, func(to netip.AddrPort, tg krpc.ID, r *krpc.Msg) {
			if r.Y != krpc.KindReply || len(r.R.Nodes) != DefaultK {
				t.Fatalf("find_node reply %+v", r)
			}
			if checked++; checked > 300 {
				return
			}
			x, _ := tr.Index(to)
			all := table(net, x)
			slices.SortFunc(all, func(a, b krpc.NodeInfo) int {
				if krpc.CloserTo(tg, a.ID, b.ID) {
					return -1
				}
				return 1
			})
			if !reflect.DeepEqual(r.R.Nodes, all[:DefaultK]) {
				t.Fatalf("node %d: find_node(%v) = %v\nwant the %d closest of its table %v", x, tg, r.R.Nodes, DefaultK, all[:DefaultK])
			}
		})
		checkFound(t, tr, answered)
		if st := net.Stats(); st.Unparseable != 0 || st.NoSuchNode != 0 || st.Queries["find_node"] > 2*10050 {
			t.Errorf("stats %+v", st)
		}
	})
}

// TestCrawl1M crawls a million-node network, 10% silent, with public
// addresses and bogons. It takes about a minute and runs only with
// SYNTH_1M=1 in the environment.
func TestCrawl1M(t *testing.T) {
	if os.Getenv("SYNTH_1M") == "" {
		t.Skip("set SYNTH_1M=1 to crawl a million nodes")
	}
	synctest.Test(t, func(t *testing.T) {
		net := newNet(t, Config{N: 1_000_000, Seed: 1, SilentShare: 0.1, PublicIPs: true, BEP42Share: 0.8, Bogons: 1000})
		answered := crawl(t, net, nil)
		checkFound(t, net.Truth(), answered)
		st := net.Stats()
		t.Logf("queries %v, max per node %d", st.Queries, st.MaxPerNode)
	})
}

func TestMessages(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net := newNet(t, Config{N: 500, Seed: 2, Versions: []string{"LT\x01\x02"}, BEP51Share: 0.5, InfohashesPerNode: 5})
		tr := net.Truth()
		c := newClient(t, net)
		var plain, b51 int = -1, -1
		for i, e := range tr.Nodes {
			if e.BEP51 && b51 < 0 {
				b51 = i
			}
			if !e.BEP51 && plain < 0 {
				plain = i
			}
		}
		to := tr.Nodes[plain].Addr
		r := c.query(to, krpc.MethodPing, krpc.Args{})
		if r == nil || r.Y != krpc.KindReply || r.R.ID != tr.Nodes[plain].ID || string(r.V) != "LT\x01\x02" || r.IP != c.c.AddrPort() {
			t.Fatalf("ping reply %+v", r)
		}
		r = c.query(to, krpc.MethodGetPeers, krpc.Args{InfoHash: krpc.ID{1}})
		if r == nil || len(r.R.Token) == 0 || len(r.R.Nodes) != DefaultK || len(r.R.Values) != 0 {
			t.Fatalf("get_peers reply %+v", r)
		}
		tok := bytes.Clone(r.R.Token)
		if r := c.query(to, krpc.MethodAnnouncePeer, krpc.Args{InfoHash: krpc.ID{1}, Token: tok, Port: 1}); r == nil || r.Y != krpc.KindReply {
			t.Errorf("announce with token: %+v", r)
		}
		errCode := func(r *krpc.Msg) int {
			if r == nil || r.E == nil {
				return 0
			}
			return r.E.Code
		}
		for _, tc := range []struct {
			q    string
			a    krpc.Args
			code int
		}{
			{krpc.MethodAnnouncePeer, krpc.Args{InfoHash: krpc.ID{1}, Token: []byte("bad"), Port: 1}, krpc.CodeProtocol},
			{krpc.MethodFindNode, krpc.Args{}, krpc.CodeProtocol},
			{krpc.MethodGetPeers, krpc.Args{}, krpc.CodeProtocol},
			{krpc.MethodSampleInfohashes, krpc.Args{Target: krpc.ID{1}}, krpc.CodeMethodUnknown},
			{"vote", krpc.Args{}, krpc.CodeMethodUnknown},
			{krpc.MethodGet, krpc.Args{Target: krpc.ID{1}}, krpc.CodeMethodUnknown},
		} {
			if got := errCode(c.query(to, tc.q, tc.a)); got != tc.code {
				t.Errorf("%s %+v: error %d, want %d", tc.q, tc.a, got, tc.code)
			}
		}
		// A query without id is a protocol error.
		if b := c.raw(to, []byte("d1:ad6:target20:aaaaaaaaaaaaaaaaaaaae1:q9:find_node1:t2:xx1:y1:qe")); b == nil || !bytes.Contains(b, []byte("i203e")) {
			t.Errorf("query without id: %q", b)
		}
		// A malformed field is a protocol error too.
		if b := c.raw(to, []byte("d1:ad2:id3:abce1:q4:ping1:t2:xx1:y1:qe")); b == nil || !bytes.Contains(b, []byte("i203e")) {
			t.Errorf("query with a short id: %q", b)
		}
		// Garbage, replies and errors get no answer.
		for _, p := range []string{"", "garbage", "d1:rd2:id20:aaaaaaaaaaaaaaaaaaaae1:t2:xx1:y1:re", "d1:eli201e1:xe1:t2:xx1:y1:ee"} {
			if b := c.raw(to, []byte(p)); b != nil {
				t.Errorf("packet %q answered with %q", p, b)
			}
		}
		// Nobody at this address.
		if r := c.query(netip.MustParseAddrPort("127.1.0.0:1"), krpc.MethodPing, krpc.Args{}); r != nil {
			t.Errorf("reply from a wrong port: %+v", r)
		}
		st := net.Stats()
		if st.Unparseable != 2 || st.NonQuery != 2 || st.NoSuchNode != 1 || st.Errors != 8 || st.Replies != 3 {
			t.Errorf("stats %+v", st)
		}
		if st.Queries["ping"] != 2 || st.Queries["other"] != 2 || st.Queries["announce_peer"] != 2 ||
			st.MaxPerNode != 11 || st.MaxPerNodeIndex != plain || net.QueriesTo(plain) != 11 {
			t.Errorf("stats %+v", st)
		}
	})
}

// TestDropUnknown: nodes of DropUnknownShare answer the BEP 5 methods
// but drop sample_infohashes and any other method they do not know
// without an error, as aria2 1.36 does; the share leaves BEP51Share's
// nodes as they were.
func TestDropUnknown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := Config{N: 2000, Seed: 4, SilentShare: 0.1, BEP51Share: 0.3, InfohashesPerNode: 5}
		base := newNet(t, cfg).Truth()
		cfg.DropUnknownShare = 0.2
		net := newNet(t, cfg)
		tr := net.Truth()
		c := newClient(t, net)
		answering, drops := 0, 0
		first := -1
		for i, e := range tr.Nodes {
			if e.BEP51 != base.Nodes[i].BEP51 || e.Silent != base.Nodes[i].Silent {
				t.Fatalf("node %d: BEP51 %v silent %v, %v %v without DropUnknownShare", i, e.BEP51, e.Silent, base.Nodes[i].BEP51, base.Nodes[i].Silent)
			}
			if e.DropsUnknown && (e.BEP51 || !e.Answering) {
				t.Fatalf("node %d drops unknown methods but is BEP 51 %v, answering %v", i, e.BEP51, e.Answering)
			}
			if e.Answering {
				answering++
			}
			if e.DropsUnknown {
				drops++
				if first < 0 {
					first = i
				}
			}
		}
		if share := float64(drops) / float64(answering); share < 0.17 || share > 0.23 {
			t.Errorf("%d of %d answering nodes drop unknown methods, want about 20%%", drops, answering)
		}
		to := tr.Nodes[first].Addr
		if r := c.query(to, krpc.MethodPing, krpc.Args{}); r == nil || r.Y != krpc.KindReply {
			t.Errorf("ping: %+v", r)
		}
		if r := c.query(to, krpc.MethodFindNode, krpc.Args{Target: krpc.ID{1}}); r == nil || len(r.R.Nodes) != DefaultK {
			t.Errorf("find_node: %+v", r)
		}
		for _, q := range []string{krpc.MethodSampleInfohashes, "vote"} {
			if r := c.query(to, q, krpc.Args{Target: krpc.ID{1}}); r != nil {
				t.Errorf("%s answered: %+v", q, r)
			}
		}
		if st := net.Stats(); st.Dropped != 2 || st.Replies != 2 || st.Errors != 0 {
			t.Errorf("stats %+v", st)
		}
	})
}

func TestBEP51(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net := newNet(t, Config{N: 2000, Seed: 9, BEP51Share: 0.5, InfohashesPerNode: 100, Interval: 30,
			PublicIPs: true, BEP42Share: 1})
		tr := net.Truth()
		c := newClient(t, net)
		var nodes []int
		for i, e := range tr.Nodes {
			if e.BEP51 {
				nodes = append(nodes, i)
			}
		}
		x := nodes[0]
		set := tr.Infohashes(x)
		if len(set) != 100 {
			t.Fatalf("set of %d", len(set))
		}
		var first []krpc.ID
		for k := range 2 {
			c.c.SetReadDeadline(time.Time{})
			raw := c.raw(tr.Nodes[x].Addr, mustMarshal(t, &krpc.Msg{T: []byte{9, byte(k)}, Y: krpc.KindQuery,
				Q: krpc.MethodSampleInfohashes, A: krpc.Args{ID: c.id, Target: krpc.ID{7}}}))
			if len(raw) >= 1500 {
				t.Errorf("sample reply of %d bytes", len(raw))
			}
			var r krpc.Msg
			if err := krpc.Unmarshal(raw, &r); err != nil || r.Y != krpc.KindReply {
				t.Fatalf("sample reply %q: %v", raw, err)
			}
			if r.R.Num != 100 || r.R.Interval != 30 || len(r.R.Samples) != DefaultSampleMax || len(r.R.Nodes) != DefaultK {
				t.Fatalf("num %d interval %d samples %d nodes %d", r.R.Num, r.R.Interval, len(r.R.Samples), len(r.R.Nodes))
			}
			for j, s := range r.R.Samples {
				if !slices.Contains(set, s) {
					t.Fatalf("sample %v not in the set", s)
				}
				if slices.Contains(r.R.Samples[:j], s) {
					t.Fatalf("sample %v twice", s)
				}
			}
			if k == 0 {
				first = slices.Clone(r.R.Samples)
			} else if slices.Equal(first, r.R.Samples) {
				t.Error("two samples are identical")
			}
		}
		if st := net.Stats(); st.Violations != 1 || st.Sampled != 2 {
			t.Errorf("after two quick samples: Violations %d, Sampled %d; want 1, 2", st.Violations, st.Sampled)
		}
		time.Sleep(30 * time.Second)
		c.query(tr.Nodes[x].Addr, krpc.MethodSampleInfohashes, krpc.Args{Target: krpc.ID{7}})
		// Another node sampled once: no violation.
		c.query(tr.Nodes[nodes[1]].Addr, krpc.MethodSampleInfohashes, krpc.Args{Target: krpc.ID{7}})
		time.Sleep(29 * time.Second)
		c.query(tr.Nodes[nodes[1]].Addr, krpc.MethodSampleInfohashes, krpc.Args{Target: krpc.ID{7}})
		if st := net.Stats(); st.Violations != 2 || st.Sampled != 5 {
			t.Errorf("Violations %d, Sampled %d; want 2, 5", st.Violations, st.Sampled)
		}
		if got, want := net.SampleTimes(x), []time.Duration{0, 0, 30 * time.Second}; !slices.Equal(got, want) {
			t.Errorf("SampleTimes = %v, want %v", got, want)
		}
		// A small set is returned whole.
		small := newNet(t, Config{N: 50, Seed: 1, BEP51Share: 1, InfohashesPerNode: 3})
		c2 := newClient(t, small)
		r := c2.query(small.Bootstrap()[0], krpc.MethodSampleInfohashes, krpc.Args{Target: krpc.ID{7}})
		i, _ := small.Truth().Index(small.Bootstrap()[0])
		if r == nil || r.R.Num != 3 || !slices.Equal(r.R.Samples, small.Infohashes(i)) || r.R.Interval != DefaultInterval {
			t.Errorf("small set reply %+v", r)
		}
	})
}

func TestInfohashPool(t *testing.T) {
	net := newNet(t, Config{N: 1000, Seed: 4, BEP51Share: 1, InfohashesPerNode: 30, InfohashPool: 500})
	distinct := map[krpc.ID]int{}
	for i := range net.Len() {
		set := net.Infohashes(i)
		for j, h := range set {
			if slices.Contains(set[:j], h) {
				t.Fatalf("entry %d holds %v twice", i, h)
			}
			distinct[h]++
		}
	}
	if len(distinct) > 500 || len(distinct) < 450 {
		t.Errorf("%d distinct infohashes, want about 500", len(distinct))
	}
	none := newNet(t, Config{N: 100, Seed: 4, BEP51Share: 1, InfohashesPerNode: 30})
	all := map[krpc.ID]bool{}
	for i := range none.Len() {
		for _, h := range none.Infohashes(i) {
			all[h] = true
		}
	}
	if len(all) != 3000 {
		t.Errorf("without a pool: %d distinct infohashes, want 3000", len(all))
	}
}

func TestSilentAndBogons(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net := newNet(t, Config{N: 3000, Seed: 6, SilentShare: 0.2, Bogons: 300, PublicIPs: true})
		tr := net.Truth()
		c := newClient(t, net)
		var silent, bogons int
		inReplies := 0
		for i, e := range tr.Nodes {
			if e.Answering {
				if i%10 == 0 {
					r := c.query(e.Addr, krpc.MethodFindNode, krpc.Args{Target: e.ID})
					if r == nil {
						t.Fatalf("answering node %d silent", i)
					}
					for _, ni := range r.R.Nodes {
						if j, _ := tr.Index(ni.Addr); tr.Nodes[j].Bogon {
							inReplies++
						}
					}
				}
				continue
			}
			if r := c.query(e.Addr, krpc.MethodPing, krpc.Args{}); r != nil {
				t.Fatalf("entry %+v answered", e)
			}
			if e.Bogon {
				bogons++
			} else {
				silent++
			}
		}
		if bogons != 300 || silent < 500 {
			t.Errorf("%d bogons, %d silent", bogons, silent)
		}
		if inReplies == 0 {
			t.Error("no bogon in any find_node reply")
		}
		if st := net.Stats(); st.Unanswered != uint64(bogons+silent) || st.Replies != uint64(st.Queries["find_node"]) {
			t.Errorf("stats %+v", st)
		}
		if ss := net.Sim().Stats(); ss.Handled != net.Stats().Packets {
			t.Errorf("simnet handled %d, synth saw %d", ss.Handled, net.Stats().Packets)
		}
	})
}

func TestLatencyAndLoss(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net := newNet(t, Config{N: 100, Seed: 1, Latency: 40 * time.Millisecond})
		c := newClient(t, net)
		to := net.Bootstrap()[0]
		start := time.Now()
		if r := c.query(to, krpc.MethodPing, krpc.Args{}); r == nil {
			t.Fatal("no reply")
		}
		if rtt := time.Since(start); rtt != 80*time.Millisecond {
			t.Errorf("RTT %v, want 80ms", rtt)
		}
		net.Sim().SetConditions(0, 0, 0.5)
		got := 0
		const tries = 400
		for range tries {
			if c.query(to, krpc.MethodPing, krpc.Args{}) != nil {
				got++
			}
		}
		// Both legs lose half: a quarter of the pings come back.
		if got < tries/4-40 || got > tries/4+40 {
			t.Errorf("%d of %d pings answered at 50%% loss each way, want about %d", got, tries, tries/4)
		}
		lossy := newNet(t, Config{N: 100, Seed: 1, Loss: 1})
		c2 := newClient(t, lossy)
		if c2.query(lossy.Bootstrap()[0], krpc.MethodPing, krpc.Args{}) != nil {
			t.Error("reply at total loss")
		}
	})
}

func TestOnlineAndChurn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net := newNet(t, Config{N: 2000, Seed: 12, ChurnShare: 0.3, ChurnPeriod: time.Minute})
		tr := net.Truth()
		c := newClient(t, net)
		x := -1
		for i, e := range tr.Nodes {
			if e.Online {
				x = i
				break
			}
		}
		to := tr.Nodes[x].Addr
		if c.query(to, krpc.MethodPing, krpc.Args{}) == nil {
			t.Fatal("online node silent")
		}
		net.SetOnline(x, false)
		if c.query(to, krpc.MethodPing, krpc.Args{}) != nil || net.Truth().Nodes[x].Online {
			t.Fatal("offline node answered")
		}
		net.SetOnline(x, true)
		if !net.Truth().Nodes[x].Online || c.query(to, krpc.MethodPing, krpc.Args{}) == nil {
			t.Fatal("node back online is silent")
		}
		// About 30% offline per epoch, different nodes each epoch.
		offline := func() map[int]bool {
			m := map[int]bool{}
			for i, e := range net.Truth().Nodes {
				if !e.Online {
					m[i] = true
				}
			}
			return m
		}
		a := offline()
		time.Sleep(time.Minute)
		b := offline()
		if len(a) < 500 || len(a) > 700 || len(b) < 500 || len(b) > 700 || reflect.DeepEqual(a, b) {
			t.Errorf("offline %d then %d nodes", len(a), len(b))
		}
		for i := range b {
			if c.query(tr.Nodes[i].Addr, krpc.MethodPing, krpc.Args{}) != nil {
				t.Fatalf("churned node %d answered", i)
			}
			break
		}
		for _, ap := range net.Bootstrap() {
			if c.query(ap, krpc.MethodPing, krpc.Args{}) == nil {
				t.Errorf("bootstrap %v churned", ap)
			}
		}
	})
}

func TestMinQueryGap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net := newNet(t, Config{N: 100, Seed: 1, MinQueryGap: 2 * time.Second})
		c := newClient(t, net)
		to := net.Bootstrap()[0]
		c.query(to, krpc.MethodPing, krpc.Args{})
		c.query(to, krpc.MethodPing, krpc.Args{})
		time.Sleep(2 * time.Second)
		c.query(to, krpc.MethodPing, krpc.Args{})
		if v := net.Stats().RateViolations; v != 1 {
			t.Errorf("RateViolations %d, want 1", v)
		}
	})
}

// Test100k builds a 100,000-node network and runs a few lookups; it is
// cheap enough for -short.
func Test100k(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net := newNet(t, Config{N: 100000, Seed: 100, SilentShare: 0.1, BEP51Share: 0.3,
			InfohashesPerNode: 50, PublicIPs: true, BEP42Share: 0.8, Bogons: 100})
		c := newClient(t, net)
		tr := net.Truth()
		rng := rand.New(rand.NewPCG(3, 4))
		// Iterative lookups of random targets converge on the true closest
		// answering node.
		for range 20 {
			var target krpc.ID
			for j := range target {
				target[j] = byte(rng.Uint32())
			}
			best := -1
			for i, e := range tr.Nodes {
				if e.Answering && (best < 0 || krpc.CloserTo(target, e.ID, tr.Nodes[best].ID)) {
					best = i
				}
			}
			seen := map[netip.AddrPort]bool{}
			frontier := net.Bootstrap()
			found := false
			for len(frontier) > 0 && !found {
				var next []krpc.NodeInfo
				for _, a := range frontier {
					if seen[a] {
						continue
					}
					seen[a] = true
					if a == tr.Nodes[best].Addr {
						found = true
					}
					if r := c.query(a, krpc.MethodFindNode, krpc.Args{Target: target}); r != nil {
						next = append(next, r.R.Nodes...)
					}
				}
				slices.SortFunc(next, func(a, b krpc.NodeInfo) int {
					if krpc.CloserTo(target, a.ID, b.ID) {
						return -1
					}
					return 1
				})
				frontier = frontier[:0]
				for _, ni := range next {
					if !seen[ni.Addr] && IsPublic(ni.Addr.Addr()) && len(frontier) < 8 {
						frontier = append(frontier, ni.Addr)
					}
				}
			}
			if !found {
				t.Errorf("lookup of %v missed the closest answering node %d", target, best)
			}
		}
	})
}

func mustMarshal(t testing.TB, m *krpc.Msg) []byte {
	t.Helper()
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// BenchmarkBuild1M builds a million-node network and reports bytes per
// node (live heap after GC, network alive) and build seconds.
func BenchmarkBuild1M(b *testing.B) {
	if testing.Short() {
		b.Skip("skipped under -short")
	}
	const n = 1_000_000
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		start := time.Now()
		net, err := New(Config{N: n, Seed: 1, SilentShare: 0.1, BEP42Share: 0.5, BEP51Share: 0.3,
			InfohashesPerNode: 100, PublicIPs: true, Bogons: 1000})
		if err != nil {
			b.Fatal(err)
		}
		build := time.Since(start)
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "bytes/node")
		b.ReportMetric(build.Seconds(), "build-s")
		runtime.KeepAlive(net)
		net.Close()
	}
}

// BenchmarkFindNode measures one find_node round trip at a million nodes.
func BenchmarkFindNode(b *testing.B) {
	if testing.Short() {
		b.Skip("skipped under -short")
	}
	net, err := New(Config{N: 1_000_000, Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer net.Close()
	c := newClient(b, net)
	to := net.Bootstrap()[0]
	rng := rand.New(rand.NewPCG(1, 1))
	b.ResetTimer()
	for b.Loop() {
		var target krpc.ID
		for j := range target {
			target[j] = byte(rng.Uint32())
		}
		if c.query(to, krpc.MethodFindNode, krpc.Args{Target: target}) == nil {
			b.Fatal("no reply")
		}
	}
}
