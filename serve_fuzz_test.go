package lightdht_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lightdht/lightdht"
	"github.com/lightdht/lightdht/bep44"
	"github.com/lightdht/lightdht/crawler"
	"github.com/lightdht/lightdht/krpc"
	"github.com/lightdht/lightdht/observe"
	"github.com/lightdht/lightdht/table"
)

// feedConn is a net.PacketConn that hands the node one packet at a time
// and reports when the node has finished with it: the node's read loop
// asking for the next packet means it has answered (or dropped) the last
// one. It lets a test drive the whole packet path — decode, handle,
// encode, send — synchronously and without sockets.
type feedConn struct {
	local  netip.AddrPort
	in     chan feedPacket
	ready  chan struct{} // a read is waiting for a packet
	closed chan struct{}
	once   sync.Once

	mu  sync.Mutex
	out []feedPacket // packets the node wrote since the last take
}

type feedPacket struct {
	b    []byte
	addr netip.AddrPort
}

func newFeedConn(local netip.AddrPort) *feedConn {
	return &feedConn{local: local, in: make(chan feedPacket), ready: make(chan struct{}), closed: make(chan struct{})}
}

func (c *feedConn) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	select {
	case c.ready <- struct{}{}:
	case <-c.closed:
		return 0, netip.AddrPort{}, net.ErrClosed
	}
	select {
	case p := <-c.in:
		return copy(b, p.b), p.addr, nil
	case <-c.closed:
		return 0, netip.AddrPort{}, net.ErrClosed
	}
}

func (c *feedConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, ap, err := c.ReadFromUDPAddrPort(b)
	return n, net.UDPAddrFromAddrPort(ap), err
}

func (c *feedConn) WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	c.mu.Lock()
	c.out = append(c.out, feedPacket{bytes.Clone(b), addr})
	c.mu.Unlock()
	return len(b), nil
}

func (c *feedConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, fmt.Errorf("feedConn: address %v is not UDP", addr)
	}
	return c.WriteToUDPAddrPort(b, ua.AddrPort())
}

func (c *feedConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

func (c *feedConn) LocalAddr() net.Addr              { return net.UDPAddrFromAddrPort(c.local) }
func (c *feedConn) SetDeadline(time.Time) error      { return nil }
func (c *feedConn) SetReadDeadline(time.Time) error  { return nil }
func (c *feedConn) SetWriteDeadline(time.Time) error { return nil }

// fedNode is a responder behind feedConns: a node behind two (IPv4 and
// IPv6), with a routing table, stored peers and a stored item, so that
// every handler path has something to answer with; or a crawler in
// Respond mode behind one (newFedCrawler).
type fedNode struct {
	id         krpc.ID // the responder's node ID, in every reply
	node       *lightdht.Node
	conn4      *feedConn
	conn6      *feedConn // nil for the crawler: every input reaches its one socket
	infohash   krpc.ID   // has stored peers
	item       krpc.ID   // target of a stored immutable item
	sightings  int
	nextSource uint32
}

// newFedNode starts the node. limits, if true, keeps the default per-IP
// and per-prefix limits and the amplification cap; otherwise they are
// off, for benchmarks that send everything from a few addresses. The send
// rate cap is off either way: packets fed one at a time as fast as the
// node takes them are not a flood, and every input comes from a new
// source, which counts as heavy, so under the cap the heavy sources'
// share would drop most inputs before they reach the handler.
func newFedNode(tb testing.TB, limits bool) *fedNode {
	tb.Helper()
	fn := &fedNode{
		conn4: newFeedConn(netip.MustParseAddrPort("127.0.0.1:6881")),
		conn6: newFeedConn(netip.MustParseAddrPort("[fd6c:6474::1]:6881")),
	}
	cfg := lightdht.Config{
		Conn4: fn.conn4, Conn6: fn.conn6, NoMaintenance: true, IPsPerBucket: -1,
		Observer: lightdht.ObserverFunc(func(lightdht.Sighting) { fn.sightings++ }),
	}
	cfg.SendRate = -1
	if !limits {
		cfg.PerIPRate, cfg.PrefixReplyRate = -1, -1
	}
	n, err := lightdht.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	fn.node, fn.id = n, n.ID()
	done := make(chan error, 1)
	go func() { done <- n.Serve(context.Background()) }()
	tb.Cleanup(func() {
		n.Close()
		if err := <-done; err != nil && !errors.Is(err, krpc.ErrClosed) {
			tb.Errorf("Serve: %v", err)
		}
	})
	<-fn.conn4.ready // both read loops are waiting
	<-fn.conn6.ready

	for i := range 64 {
		var id krpc.ID
		id[0], id[1], id[19] = byte(i*4), byte(i), 1
		n.Table(false).Update(krpc.NodeInfo{ID: id, Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 1, byte(i), 1}), 6881)}, table.Replied)
		n.Table(true).Update(krpc.NodeInfo{ID: id, Addr: netip.AddrPortFrom(netip.AddrFrom16([16]byte{0xfd, 0x6c, 0x64, 0x74, 1, byte(i), 15: 1}), 6881)}, table.Replied)
	}

	// Peers and an item, stored through the packet path itself: a
	// get_peers (or get) for a token, then the announce (or put).
	fn.infohash = krpc.ID{0x42, 19: 0x42}
	it := bep44.Item{V: []byte("12:hello, world")}
	fn.item = it.Target()
	for i := range 30 {
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 2, byte(i), 1}), 6881)
		tok := fn.token(tb, src, krpc.MethodGetPeers, krpc.Args{InfoHash: fn.infohash})
		fn.mustReply(tb, src, &krpc.Msg{Q: krpc.MethodAnnouncePeer, A: krpc.Args{InfoHash: fn.infohash, Port: 6881, Token: tok}})
	}
	src := netip.MustParseAddrPort("127.3.0.1:6881")
	tok := fn.token(tb, src, krpc.MethodGet, krpc.Args{Target: fn.item})
	fn.mustReply(tb, src, &krpc.Msg{Q: krpc.MethodPut, A: krpc.Args{V: it.V, Token: tok}})
	return fn
}

// deliver hands pkt to the node as if sent from src, waits until the node
// has dealt with it, and returns what the node sent to src.
func (fn *fedNode) deliver(pkt []byte, src netip.AddrPort) [][]byte {
	c := fn.conn4
	if src.Addr().Is6() && fn.conn6 != nil {
		c = fn.conn6
	}
	c.in <- feedPacket{pkt, src}
	<-c.ready
	c.mu.Lock()
	defer c.mu.Unlock()
	var replies [][]byte
	for _, p := range c.out {
		if p.addr == src {
			replies = append(replies, p.b)
		}
	}
	c.out = c.out[:0]
	return replies
}

// source returns a new source address: IPv4 ones differ in their /24 from
// the last 65,536, IPv6 ones in their /48.
func (fn *fedNode) source(v6 bool) netip.AddrPort {
	i := fn.nextSource
	fn.nextSource++
	if v6 {
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte{0xfd, 0x10, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i), 15: 1}), 6881)
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, byte(i), byte(i >> 8), byte(i>>16) | 1}), 6881)
}

// mustReply sends q from src and returns the decoded reply, failing the
// test on anything else.
func (fn *fedNode) mustReply(tb testing.TB, src netip.AddrPort, q *krpc.Msg) *krpc.Msg {
	tb.Helper()
	q.T, q.Y, q.A.ID = []byte("tx"), krpc.KindQuery, krpc.ID{0x99, 19: byte(src.Addr().As16()[14])}
	pkt, err := q.MarshalBinary()
	if err != nil {
		tb.Fatal(err)
	}
	var replies [][]byte // the node may also ping the new querier: not counted
	for _, b := range fn.deliver(pkt, src) {
		var m krpc.Msg
		if krpc.Unmarshal(b, &m) != nil || m.Y != krpc.KindQuery {
			replies = append(replies, b)
		}
	}
	if len(replies) != 1 {
		tb.Fatalf("%s from %v: %d replies, want 1", q.Q, src, len(replies))
	}
	var r krpc.Msg
	if err := krpc.Unmarshal(replies[0], &r); err != nil || r.Y != krpc.KindReply {
		tb.Fatalf("%s from %v: reply %q (%v), want a reply", q.Q, src, replies[0], err)
	}
	return &r
}

func (fn *fedNode) token(tb testing.TB, src netip.AddrPort, method string, a krpc.Args) []byte {
	tb.Helper()
	r := fn.mustReply(tb, src, &krpc.Msg{Q: method, A: a})
	if len(r.R.Token) == 0 {
		tb.Fatalf("%s from %v: no token", method, src)
	}
	return bytes.Clone(r.R.Token)
}

// servePathSeeds are well-formed queries of every method the node
// answers, and a few packets that are not queries.
func servePathSeeds(fn *fedNode) [][]byte {
	id := krpc.ID{0x77, 19: 7}
	seq := int64(3)
	msgs := []krpc.Msg{
		{Q: krpc.MethodPing},
		{Q: krpc.MethodFindNode, A: krpc.Args{Target: id}},
		{Q: krpc.MethodFindNode, A: krpc.Args{Target: id, Want: krpc.WantN4 | krpc.WantN6}},
		{Q: krpc.MethodGetPeers, A: krpc.Args{InfoHash: fn.infohash}},
		{Q: krpc.MethodGetPeers, A: krpc.Args{InfoHash: fn.infohash, Scrape: true, NoSeed: true, Want: krpc.WantN4 | krpc.WantN6}},
		{Q: krpc.MethodGetPeers, A: krpc.Args{InfoHash: id}},
		{Q: krpc.MethodAnnouncePeer, A: krpc.Args{InfoHash: id, Port: 1, ImpliedPort: true, Token: []byte("01234567")}},
		{Q: krpc.MethodGet, A: krpc.Args{Target: fn.item}},
		{Q: krpc.MethodGet, A: krpc.Args{Target: id, Seq: &seq}},
		{Q: krpc.MethodPut, A: krpc.Args{V: []byte("i1e"), Token: []byte("01234567")}},
		{Q: krpc.MethodPut, A: krpc.Args{V: []byte("i1e"), K: [32]byte{1}, Seq: &seq, Sig: [64]byte{2}, Salt: []byte("s"), Token: []byte("x")}},
		{Q: krpc.MethodSampleInfohashes, A: krpc.Args{Target: id}},
		{Q: "vote", A: krpc.Args{Target: id}},
	}
	var seeds [][]byte
	for _, m := range msgs {
		m.T, m.Y, m.A.ID, m.V = []byte("aa"), krpc.KindQuery, krpc.ID{0x55, 19: 5}, []byte("LT\x01\x02")
		b, err := m.MarshalBinary()
		if err != nil {
			panic(fmt.Sprintf("seed %s: %v", m.Q, err))
		}
		seeds = append(seeds, b)
	}
	return append(seeds,
		[]byte("d1:rd2:id20:abcdefghij0123456789e1:t2:aa1:y1:re"),
		[]byte("d1:eli201e5:Errore1:t2:aa1:y1:ee"),
		[]byte("d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:q"),
		[]byte("d1:ad2:id3:abce1:q9:find_node1:t2:aa1:y1:qe"),
	)
}

// FuzzServePath drives the whole packet path of a running node — decode,
// rate limits, handler, reply encoding, amplification cap, send — with one
// packet per input from a fresh source address, and checks what comes
// back: at most one reply, never more than 10 times the input's size,
// always a well-formed reply or error that echoes the query's transaction
// ID, and nothing at all for a packet that is not a query.
func FuzzServePath(f *testing.F) {
	fn := newFedNode(f, true)
	for _, s := range servePathSeeds(fn) {
		f.Add(s, false)
		f.Add(s, true)
	}
	// An input the node has not finished with after hangAfter is a hang:
	// the worker prints the input and every goroutine and exits, which
	// the fuzzing engine reports as a crash and saves the input for.
	var (
		cur     atomic.Pointer[[]byte]
		started atomic.Int64 // Unix nanoseconds; 0 between inputs
	)
	go func() {
		for {
			time.Sleep(time.Second)
			if s := started.Load(); s != 0 && time.Since(time.Unix(0, s)) > hangAfter {
				fmt.Fprintf(os.Stderr, "FuzzServePath: input %q unfinished after %v\n", *cur.Load(), hangAfter)
				pprof.Lookup("goroutine").WriteTo(os.Stderr, 2)
				os.Exit(3)
			}
		}
	}()
	f.Fuzz(func(t *testing.T, pkt []byte, v6 bool) {
		cur.Store(&pkt)
		started.Store(time.Now().UnixNano())
		defer started.Store(0)
		checkServePath(t, fn, pkt, fn.source(v6))
	})
}

// newFedCrawler starts a continuous crawl in Respond mode behind one
// feedConn. Its bootstrap address never answers (the crawler's queries
// are left in the conn's outbox, which deliver ignores), so the crawl
// keeps running and the responder answers what it is fed.
func newFedCrawler(tb testing.TB) *fedNode {
	tb.Helper()
	fn := &fedNode{id: krpc.ID{0xc4, 19: 0x11}, conn4: newFeedConn(netip.MustParseAddrPort("127.0.0.1:6881"))}
	c, err := crawler.New(crawler.Config{Conn: fn.conn4, ID: fn.id, Bootstrap: []netip.AddrPort{netip.MustParseAddrPort("127.9.9.9:6881")},
		TestNet: true, Respond: true, Continuous: true, Rate: 1e6,
		Recorder: crawlerRecorder{func(observe.Sighting) { fn.sightings++ }}})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.Run(ctx)
		done <- err
	}()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			tb.Errorf("crawl: %v", err)
		}
	})
	<-fn.conn4.ready // the read loop is waiting
	return fn
}

// crawlerRecorder is a crawler.Recorder that counts sightings only.
type crawlerRecorder struct{ observe func(observe.Sighting) }

func (r crawlerRecorder) Observe(s observe.Sighting)                               { r.observe(s) }
func (crawlerRecorder) RecordPeer(krpc.ID, netip.AddrPort, string, time.Time)      {}
func (crawlerRecorder) RecordSample(krpc.NodeInfo, time.Time, int, int, []krpc.ID) {}

// FuzzRespondPath is FuzzServePath for the crawler's responder: the same
// shared handler (package serve) in the crawler's role, behind the
// crawler's transport and reply cap, with the same checks.
func FuzzRespondPath(f *testing.F) {
	fn := newFedCrawler(f)
	for _, s := range servePathSeeds(fn) {
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, pkt []byte, v6 bool) {
		checkServePath(t, fn, pkt, fn.source(v6))
	})
}

// hangAfter is how long FuzzServePath waits for one input: long enough
// that only a hang, not a fuzzing worker starved of CPU, reaches it.
const hangAfter = time.Minute

func checkServePath(t *testing.T, fn *fedNode, pkt []byte, src netip.AddrPort) {
	sent := fn.deliver(bytes.Clone(pkt), src)
	var q krpc.Msg
	qerr := krpc.Unmarshal(pkt, &q)
	var de *krpc.DecodeError
	isQuery := q.Y == krpc.KindQuery && (qerr == nil || errors.As(qerr, &de) && de.Field != "")
	// The node may also query the source (its table pings a new node):
	// those must be well-formed queries of its own.
	var replies []*krpc.Msg
	var raw [][]byte
	for _, b := range sent {
		m := new(krpc.Msg)
		if err := krpc.Unmarshal(b, m); err != nil {
			t.Fatalf("the node sent %q, which does not decode: %v", b, err)
		}
		if m.Y == krpc.KindQuery {
			if m.A.ID != fn.id {
				t.Fatalf("the node sent a query %q with ID %v, not its own", b, m.A.ID)
			}
			continue
		}
		replies, raw = append(replies, m), append(raw, b)
	}
	switch {
	case len(replies) > 1:
		t.Fatalf("%d replies to one packet %q", len(replies), pkt)
	case len(replies) == 0:
		return // dropped: fine for anything (a limit, a read-only path)
	case !isQuery:
		t.Fatalf("reply %q to %q, which is not a query (%v)", raw[0], pkt, qerr)
	}
	m, r := replies[0], raw[0]
	if len(r) > lightdht.DefaultMaxAmplification*len(pkt) {
		t.Fatalf("reply of %d bytes to a query of %d: over %dx\nquery %q\nreply %q", len(r), len(pkt), lightdht.DefaultMaxAmplification, pkt, r)
	}
	if m.Y != krpc.KindReply && m.Y != krpc.KindError {
		t.Fatalf("reply %q has kind %q", r, m.Y)
	}
	if !bytes.Equal(m.T, q.T) {
		t.Fatalf("reply transaction %q, query's %q", m.T, q.T)
	}
	if m.Y == krpc.KindReply && m.R.ID != fn.id {
		t.Fatalf("reply carries ID %v, want the responder's %v", m.R.ID, fn.id)
	}
}

// TestServePathSeeds runs every seed of FuzzServePath and checks that the
// well-formed queries are answered, so the fuzz target starts from inputs
// that reach every handler.
func TestServePathSeeds(t *testing.T) {
	fn := newFedNode(t, true)
	for i, s := range servePathSeeds(fn) {
		for _, v6 := range []bool{false, true} {
			src := fn.source(v6)
			var replies int // the node may also ping the new querier: not counted
			for _, b := range fn.deliver(bytes.Clone(s), src) {
				var m krpc.Msg
				if krpc.Unmarshal(b, &m) == nil && m.Y != krpc.KindQuery {
					replies++
				}
			}
			var q krpc.Msg
			if err := krpc.Unmarshal(s, &q); err == nil && q.Y == krpc.KindQuery && replies != 1 {
				t.Errorf("seed %d (%s, v6 %v): %d replies, want 1", i, q.Q, v6, replies)
			}
			checkServePath(t, fn, s, fn.source(v6))
		}
	}
	if fn.sightings == 0 {
		t.Error("the observer saw no sighting")
	}
}

// TestRespondPathSeeds: every well-formed query among the seeds gets one
// reply from the crawler's responder too (error 204 for the methods it
// does not offer), so FuzzRespondPath starts from inputs that reach its
// handler.
func TestRespondPathSeeds(t *testing.T) {
	fn := newFedCrawler(t)
	for i, s := range servePathSeeds(fn) {
		src := fn.source(i%2 == 1)
		var replies int // the crawler may also query the new source: not counted
		for _, b := range fn.deliver(bytes.Clone(s), src) {
			var m krpc.Msg
			if krpc.Unmarshal(b, &m) == nil && m.Y != krpc.KindQuery {
				replies++
			}
		}
		var q krpc.Msg
		if err := krpc.Unmarshal(s, &q); err == nil && q.Y == krpc.KindQuery && replies != 1 {
			t.Errorf("seed %d (%s): %d replies, want 1", i, q.Q, replies)
		}
		checkServePath(t, fn, s, fn.source(i%2 == 1))
	}
	if fn.sightings == 0 {
		t.Error("the recorder saw no sighting")
	}
}
