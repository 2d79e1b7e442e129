package interop

// BenchmarkServeVsAnacrolix measures how many queries one node answers per
// second on loopback UDP, for lightdht and for anacrolix/dht/v2, under the
// same load generator. Run it with
//
//	go test -run '^$' -bench ServeVsAnacrolix -benchtime 100000x ./interop_test/
//
// Sub-benchmarks are <server>/<method> for the methods ping, find_node and
// get_peers. Besides the two implementations there is "echo": a goroutine
// that answers every query with a fixed ping reply and allocates nothing.
// It is the generator's own ceiling and shows that the generator allocates
// nothing per query, so that allocs/query and B/query of the other two are
// the server's.
//
// Both servers get the same node ID and the same routing table before
// measuring: serveFakeNodes fake nodes on 127.0.0.1, each of which answers
// the server's ping and then closes its socket (anacrolix returns
// only good nodes, those that have answered it, to find_node and
// get_peers; tables are only read while measuring, so the nodes need not
// exist any more). get_peers asks for infohashes nobody announced, so both
// answer with nodes and a token (the anacrolix server has an in-memory
// peer store: without one it issues no token). anacrolix answers find_node
// with the nodes closest to the query's info_hash, which find_node does
// not carry: its find_node replies hold the 8 nodes closest to the zero
// ID, as many as lightdht's but not the ones asked for.
//
// The lightdht node runs with its per-IP limit (PerIPRate), its per-/24
// reply budget (PrefixReplyRate) and its send cap (SendRate) off: they
// exist to shed exactly this load, a flood from a few addresses, and would
// measure the limits instead of the server. Its amplification cap stays at
// its default: the replies are well under it. The anacrolix server has an
// unlimited send limiter of its own (newAnacrolixTB) and no table
// maintainer, as the lightdht node runs no maintenance.
//
// The load generator is serveWorkers goroutines, each with its own UDP
// socket on 127.0.0.1 and a window of serveWindow queries outstanding.
// (More in all made the server's socket buffer overflow now and then on a
// loaded 2-core machine, and each lost query idles its slot for
// serveResendAfter.) The query packets are encoded once; only their 4-byte
// transaction IDs (slot and sequence number) are rewritten before each
// send, and replies are read into one buffer per worker and matched by a
// scan of the bencoded dictionary, so the generator allocates nothing per
// query. A query unanswered after serveResendAfter counts as lost and its
// slot sends a fresh one, so a lost packet never stalls a window. The
// generator's clients have IDs that fall into the server's farthest
// bucket, which the fake nodes have filled with good nodes, so the load
// does not change either server's table. The generator shares the cores
// with the server: queries/s is the throughput of the pair, and the echo
// rows are the generator's ceiling.
//
// Each run answers b.N queries in all (the generator counts a query once
// its reply arrives) and reports:
//
//   - ns/op: wall time per reply;
//   - queries/s: replies per second of wall time;
//   - allocs/query, B/query: heap allocations (runtime.MemStats Mallocs and
//     TotalAlloc) of the whole process while measuring, per reply;
//   - lost-%: queries that got no reply within serveResendAfter, as a
//     share of those sent.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2"
	akrpc "github.com/anacrolix/dht/v2/krpc"
	peer_store "github.com/anacrolix/dht/v2/peer-store"
	alog "github.com/anacrolix/log"

	"github.com/lightdht/lightdht"
	"github.com/lightdht/lightdht/krpc"
)

const (
	serveFakeNodes   = 200 // nodes offered to each server's routing table
	serveSeed        = 11
	serveWorkers     = 2  // generator goroutines, one socket each
	serveWindow      = 32 // queries outstanding per worker
	serveResendAfter = 200 * time.Millisecond
	serveSweepEvery  = 50 * time.Millisecond // how often lost queries are looked for
)

// serveMethods are the methods measured.
var serveMethods = []string{krpc.MethodPing, krpc.MethodFindNode, krpc.MethodGetPeers}

// serveServer is a server under test.
type serveServer struct {
	addr netip.AddrPort
	id   krpc.ID
	// tableLen returns the size of its routing table; nil for echo.
	tableLen func() int
}

// serveImpl starts a server with node ID id on a loopback socket, closed
// at cleanup. ping, nil for echo, pings an address synchronously: it
// fills the server's table.
type serveImpl struct {
	name  string
	start func(tb testing.TB, id krpc.ID) (s serveServer, ping func(netip.AddrPort) error)
}

var serveImpls = []serveImpl{
	{"lightdht", startServeLightdht},
	{"anacrolix", startServeAnacrolix},
	{"echo", startServeEcho},
}

// listenLoopback returns a UDP socket on 127.0.0.1, closed at cleanup.
func listenLoopback(tb testing.TB) *net.UDPConn {
	tb.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatalf("listen on 127.0.0.1: %v", err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

func localAddrPort(c *net.UDPConn) netip.AddrPort {
	ap := c.LocalAddr().(*net.UDPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func startServeLightdht(tb testing.TB, id krpc.ID) (serveServer, func(netip.AddrPort) error) {
	tb.Helper()
	n := newNodeWith(tb, listenLoopback(tb), func(c *lightdht.Config) {
		c.ID = id
		c.QueryTimeout = 0 // the default
	})
	ping := func(ap netip.AddrPort) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _, err := n.Ping(ctx, ap)
		return err
	}
	return serveServer{addr: n.Addr(), id: n.ID(), tableLen: func() int { return n.Table(false).Len() }}, ping
}

func startServeAnacrolix(tb testing.TB, id krpc.ID) (serveServer, func(netip.AddrPort) error) {
	tb.Helper()
	conn := listenLoopback(tb)
	s := newAnacrolixTB(tb, conn, func(cfg *dht.ServerConfig) {
		cfg.NodeId = akrpc.ID(id)
		cfg.PeerStore = &peer_store.InMemory{}
		cfg.Logger = alog.Default.FilterLevel(alog.Critical)
	})
	ping := func(ap netip.AddrPort) error { return s.Ping(udpAddr(ap)).Err }
	return serveServer{addr: localAddrPort(conn), id: krpc.ID(s.ID()), tableLen: s.NumNodes}, ping
}

// startServeEcho starts the echo server: it answers every query that has a
// 4-byte transaction ID with a reply carrying only id, and allocates
// nothing.
func startServeEcho(tb testing.TB, id krpc.ID) (serveServer, func(netip.AddrPort) error) {
	tb.Helper()
	conn := listenLoopback(tb)
	reply, tOff := encodeWithT(tb, &krpc.Msg{Y: krpc.KindReply, R: krpc.Return{ID: id}})
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return // closed
			}
			t, _, _, ok := scanMsg(buf[:n])
			if !ok || len(t) != 4 {
				continue
			}
			copy(reply[tOff:], t)
			conn.WriteToUDPAddrPort(reply, from)
		}
	}()
	tb.Cleanup(func() {
		conn.Close()
		<-done
	})
	return serveServer{addr: localAddrPort(conn), id: id}, nil
}

// encodeWithT encodes m with a 4-byte transaction ID and returns the
// packet and the offset of the ID's bytes in it. "t" is the last key
// before "v" and "y", so its last occurrence is the real one even if
// random IDs in the packet happen to contain the same bytes.
func encodeWithT(tb testing.TB, m *krpc.Msg) ([]byte, int) {
	tb.Helper()
	m.T = []byte{0xff, 0xfe, 0xfd, 0xfc}
	b, err := m.AppendBinary(nil)
	if err != nil {
		tb.Fatalf("encode %s: %v", m.Q, err)
	}
	i := bytes.LastIndex(b, []byte("1:t4:\xff\xfe\xfd\xfc"))
	if i < 0 {
		tb.Fatalf("no transaction ID in %q", b)
	}
	return b, i + len("1:t4:")
}

// fillTable offers the server one fake node per id, in order: a socket on
// 127.0.0.1 that answers the server's pings with the fake ID until one of
// them has succeeded, then closes. A ping that fails (its reply was late
// on a busy machine) is sent again; hangGuard stops a server that never
// hears the answers.
func fillTable(tb testing.TB, ping func(netip.AddrPort) error, ids []krpc.ID) {
	tb.Helper()
	hung := time.Now().Add(hangGuard)
	for _, id := range ids {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			tb.Fatalf("listen on 127.0.0.1: %v", err)
		}
		answered := make(chan error, 1)
		go func() {
			buf := make([]byte, 1500)
			for {
				n, from, err := c.ReadFromUDPAddrPort(buf)
				if err != nil {
					answered <- nil // closed
					return
				}
				var q krpc.Msg
				if err := krpc.Unmarshal(buf[:n], &q); err != nil {
					answered <- err
					return
				}
				r := krpc.Msg{T: q.T, Y: krpc.KindReply, R: krpc.Return{ID: id}}
				b, err := r.AppendBinary(nil)
				if err == nil {
					_, err = c.WriteToUDPAddrPort(b, from)
				}
				if err != nil {
					answered <- err
					return
				}
			}
		}()
		err = ping(localAddrPort(c))
		for err != nil && time.Now().Before(hung) {
			err = ping(localAddrPort(c))
		}
		c.Close()
		if aerr := <-answered; err == nil {
			err = aerr
		}
		if err != nil {
			tb.Fatalf("ping of fake node %v: %v", id, err)
		}
	}
}

// serveIDs returns the servers' node ID and the fake nodes' IDs, the same
// on every call.
func serveIDs() (server krpc.ID, fakes []krpc.ID) {
	rng := rand.New(rand.NewChaCha8([32]byte{serveSeed}))
	randomID := func() (id krpc.ID) {
		for i := range id {
			id[i] = byte(rng.Uint32())
		}
		return id
	}
	server = randomID()
	fakes = make([]krpc.ID, serveFakeNodes)
	for i := range fakes {
		fakes[i] = randomID()
	}
	return server, fakes
}

// startServe starts impl with the shared server ID and, unless it is
// echo, fills its table with the fake nodes.
func startServe(tb testing.TB, impl serveImpl) serveServer {
	tb.Helper()
	id, fakes := serveIDs()
	s, ping := impl.start(tb, id)
	if s.id != id {
		tb.Fatalf("%s: node ID %v, want %v", impl.name, s.id, id)
	}
	if ping != nil {
		fillTable(tb, ping, fakes)
	}
	return s
}

// genStats are a load generator run's counts.
type genStats struct {
	sent    int // queries sent, resends of lost ones included
	replies int // replies matched to an outstanding query
	bad     int // of those, not a reply ("y" other than "r") or from another ID
	lost    int // queries given up after serveResendAfter
}

func (s *genStats) add(o genStats) {
	s.sent += o.sent
	s.replies += o.replies
	s.bad += o.bad
	s.lost += o.lost
}

// loadGen is the load generator; see the comment at the top of the file.
type loadGen struct {
	server   netip.AddrPort
	serverID krpc.ID
	workers  []*genWorker
	// check, if not nil, is called with every matched reply, from the
	// workers' goroutines at once; an error stops the run.
	check func(reply []byte) error
}

type genWorker struct {
	g     *loadGen
	conn  *net.UDPConn
	buf   []byte
	slots []genSlot
	stats genStats
}

// genSlot is one query of a worker's window.
type genSlot struct {
	pkt     []byte // the encoded query
	tOff    int    // offset of the transaction ID in pkt: slot (2 bytes), seq (2 bytes)
	seq     uint16
	sentAt  time.Time
	waiting bool
}

// newLoadGen returns a generator of method queries to s, with workers
// sockets and window queries outstanding per socket. The targets and
// infohashes are random, distinct per slot and seeded.
func newLoadGen(tb testing.TB, method string, s serveServer, workers, window int) *loadGen {
	tb.Helper()
	g := &loadGen{server: s.addr, serverID: s.id}
	rng := rand.New(rand.NewChaCha8([32]byte{serveSeed, 1}))
	randomID := func() (id krpc.ID) {
		for i := range id {
			id[i] = byte(rng.Uint32())
		}
		return id
	}
	for range workers {
		client := randomID()
		// The first bit differs from the server's: the farthest bucket.
		client[0] = client[0]&0x7f | ^s.id[0]&0x80
		w := &genWorker{g: g, conn: listenLoopback(tb), buf: make([]byte, 2048), slots: make([]genSlot, window)}
		for i := range w.slots {
			q := &krpc.Msg{Y: krpc.KindQuery, Q: method, A: krpc.Args{ID: client}}
			switch method {
			case krpc.MethodFindNode:
				q.A.Target = randomID()
			case krpc.MethodGetPeers:
				q.A.InfoHash = randomID()
			}
			sl := &w.slots[i]
			sl.pkt, sl.tOff = encodeWithT(tb, q)
			sl.pkt[sl.tOff], sl.pkt[sl.tOff+1] = byte(i>>8), byte(i)
		}
		g.workers = append(g.workers, w)
	}
	return g
}

// run gets n replies in all, n/workers per worker, and returns the counts.
func (g *loadGen) run(n int) (genStats, error) {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total genStats
		errs  []error
	)
	for i, w := range g.workers {
		quota := n / len(g.workers)
		if i < n%len(g.workers) {
			quota++
		}
		wg.Go(func() {
			w.stats = genStats{}
			err := w.run(quota)
			mu.Lock()
			defer mu.Unlock()
			total.add(w.stats)
			if err != nil {
				errs = append(errs, err)
			}
		})
	}
	wg.Wait()
	return total, errors.Join(errs...)
}

func (w *genWorker) send(i int, now time.Time) error {
	sl := &w.slots[i]
	sl.seq++
	sl.pkt[sl.tOff+2], sl.pkt[sl.tOff+3] = byte(sl.seq>>8), byte(sl.seq)
	sl.sentAt, sl.waiting = now, true
	w.stats.sent++
	_, err := w.conn.WriteToUDPAddrPort(sl.pkt, w.g.server)
	return err
}

// run sends queries until quota of them have been answered.
func (w *genWorker) run(quota int) error {
	now := time.Now()
	inflight := 0
	for i := range w.slots {
		if inflight == quota {
			break
		}
		if err := w.send(i, now); err != nil {
			return err
		}
		inflight++
	}
	lastSweep := now
	if err := w.conn.SetReadDeadline(now.Add(2 * serveSweepEvery)); err != nil {
		return err
	}
	for w.stats.replies < quota {
		n, from, err := w.conn.ReadFromUDPAddrPort(w.buf)
		now = time.Now()
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
		case err != nil:
			return err
		case from == w.g.server:
			i, ok := w.match(w.buf[:n])
			if !ok {
				break
			}
			inflight--
			if w.g.check != nil {
				if err := w.g.check(w.buf[:n]); err != nil {
					return err
				}
			}
			if w.stats.replies+inflight < quota {
				if err := w.send(i, now); err != nil {
					return err
				}
				inflight++
			}
		}
		if err != nil || now.Sub(lastSweep) >= serveSweepEvery {
			for i := range w.slots {
				if sl := &w.slots[i]; sl.waiting && now.Sub(sl.sentAt) >= serveResendAfter {
					w.stats.lost++
					if err := w.send(i, now); err != nil {
						return err
					}
				}
			}
			lastSweep = now
			if err := w.conn.SetReadDeadline(now.Add(2 * serveSweepEvery)); err != nil {
				return err
			}
		}
	}
	return nil
}

// match counts a reply to an outstanding query and returns its slot; ok
// is false for anything else (garbage, late replies to lost queries).
func (w *genWorker) match(pkt []byte) (slot int, ok bool) {
	t, y, id, ok := scanMsg(pkt)
	if !ok || len(t) != 4 {
		return 0, false
	}
	slot = int(t[0])<<8 | int(t[1])
	if slot >= len(w.slots) {
		return 0, false
	}
	sl := &w.slots[slot]
	if !sl.waiting || uint16(t[2])<<8|uint16(t[3]) != sl.seq {
		return 0, false
	}
	sl.waiting = false
	w.stats.replies++
	if len(y) != 1 || y[0] != 'r' || !bytes.Equal(id, w.g.serverID[:]) {
		w.stats.bad++
	}
	return slot, true
}

// scanMsg reads the top-level dictionary of a bencoded KRPC message and
// returns its "t" and "y" values and the "id" of its "r" dictionary (nil
// if absent), aliasing b. ok is false if b is not a well-formed
// dictionary. It allocates nothing.
func scanMsg(b []byte) (t, y, id []byte, ok bool) {
	if len(b) < 2 || b[0] != 'd' {
		return nil, nil, nil, false
	}
	i := 1
	for i < len(b) && b[i] != 'e' {
		var k []byte
		if k, i, ok = bstr(b, i); !ok {
			return nil, nil, nil, false
		}
		switch string(k) {
		case "t":
			t, i, ok = bstr(b, i)
		case "y":
			y, i, ok = bstr(b, i)
		case "r":
			id, i, ok = scanID(b, i)
		default:
			i, ok = bskip(b, i)
		}
		if !ok {
			return nil, nil, nil, false
		}
	}
	return t, y, id, i == len(b)-1
}

// scanID reads the dictionary at b[i:] and returns its "id" value and the
// offset after the dictionary.
func scanID(b []byte, i int) (id []byte, next int, ok bool) {
	if i >= len(b) || b[i] != 'd' {
		return nil, 0, false
	}
	i++
	for i < len(b) && b[i] != 'e' {
		var k []byte
		if k, i, ok = bstr(b, i); !ok {
			return nil, 0, false
		}
		if string(k) == "id" {
			id, i, ok = bstr(b, i)
		} else {
			i, ok = bskip(b, i)
		}
		if !ok {
			return nil, 0, false
		}
	}
	if i >= len(b) {
		return nil, 0, false
	}
	return id, i + 1, true
}

// bstr reads the bencoded string at b[i:] and returns it and the offset
// after it.
func bstr(b []byte, i int) (s []byte, next int, ok bool) {
	n, j := 0, i
	for ; j < len(b) && b[j] >= '0' && b[j] <= '9'; j++ {
		if n = n*10 + int(b[j]-'0'); n > len(b) {
			return nil, 0, false
		}
	}
	if j == i || j >= len(b) || b[j] != ':' || n > len(b)-j-1 {
		return nil, 0, false
	}
	j++
	return b[j : j+n], j + n, true
}

// bskip returns the offset after the bencoded value at b[i:].
func bskip(b []byte, i int) (next int, ok bool) {
	depth := 0
	for {
		if i >= len(b) {
			return 0, false
		}
		switch c := b[i]; c {
		case 'd', 'l':
			depth++
			i++
			continue
		case 'e':
			if depth == 0 {
				return 0, false
			}
			depth--
			i++
		case 'i':
			j := bytes.IndexByte(b[i:], 'e')
			if j < 0 {
				return 0, false
			}
			i += j + 1
		default:
			if _, i, ok = bstr(b, i); !ok {
				return 0, false
			}
		}
		if depth == 0 {
			return i, true
		}
	}
}

// BenchmarkServeVsAnacrolix measures queries answered per second by one
// lightdht node, one anacrolix server and the echo server; see the comment
// at the top of the file. Each server is started once and serves the three
// methods in turn.
func BenchmarkServeVsAnacrolix(b *testing.B) {
	for _, impl := range serveImpls {
		b.Run(impl.name, func(b *testing.B) {
			s := startServe(b, impl)
			if s.tableLen != nil {
				b.Logf("%s: routing table of %d nodes", impl.name, s.tableLen())
			}
			for _, method := range serveMethods {
				b.Run(method, func(b *testing.B) {
					measureServe(b, newLoadGen(b, method, s, serveWorkers, serveWindow))
				})
			}
		})
	}
}

// measureServe runs g for b.N replies and reports the figures.
func measureServe(b *testing.B, g *loadGen) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	start := time.Now()
	st, err := g.run(b.N)
	wall := time.Since(start)
	b.StopTimer()
	runtime.ReadMemStats(&after)
	if err != nil {
		b.Fatal(err)
	}
	if st.bad > 0 {
		b.Fatalf("%d of %d replies were errors or from another node", st.bad, st.replies)
	}
	n := float64(st.replies)
	b.ReportMetric(float64(wall)/n, "ns/op")
	b.ReportMetric(n/wall.Seconds(), "queries/s")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/n, "allocs/query")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/n, "B/query")
	b.ReportMetric(100*float64(st.lost)/float64(st.sent), "lost-%")
}

// TestServeLoadGenerator runs the load generator of BenchmarkServeVsAnacrolix
// briefly against each server and checks that what it counts are real
// replies: every matched reply decodes, comes from the server's ID, and
// for lightdht and anacrolix carries what the method asks for.
func TestServeLoadGenerator(t *testing.T) {
	const queries = 300
	_, fakeIDs := serveIDs()
	fakes := make(map[krpc.ID]bool)
	for _, id := range fakeIDs {
		fakes[id] = true
	}
	for _, impl := range serveImpls {
		t.Run(impl.name, func(t *testing.T) {
			s := startServe(t, impl)
			if s.tableLen != nil {
				if n := s.tableLen(); n < 8 {
					t.Fatalf("routing table of %d nodes, want at least 8", n)
				}
			}
			for _, method := range serveMethods {
				t.Run(method, func(t *testing.T) {
					g := newLoadGen(t, method, s, 2, 8)
					g.check = func(pkt []byte) error {
						var m krpc.Msg
						if err := krpc.Unmarshal(pkt, &m); err != nil {
							return fmt.Errorf("%s reply %q: %w", method, pkt, err)
						}
						switch {
						case m.Y != krpc.KindReply:
							return fmt.Errorf("%s: got %q, want a reply", method, pkt)
						case m.R.ID != s.id:
							return fmt.Errorf("%s: reply from %v, want %v", method, m.R.ID, s.id)
						case len(m.T) != 4:
							return fmt.Errorf("%s: transaction ID %x, want 4 bytes", method, m.T)
						case impl.name == "echo" || method == krpc.MethodPing:
							return nil
						case method == krpc.MethodGetPeers && len(m.R.Token) == 0:
							return fmt.Errorf("get_peers reply without a token: %q", pkt)
						case len(m.R.Nodes) != 8:
							return fmt.Errorf("%s reply with %d nodes, want 8: %q", method, len(m.R.Nodes), pkt)
						}
						for _, ni := range m.R.Nodes {
							if !fakes[ni.ID] {
								return fmt.Errorf("%s reply with node %v, not one of the table's", method, ni)
							}
						}
						return nil
					}
					st, err := g.run(queries)
					if err != nil {
						t.Fatal(err)
					}
					if st.replies != queries || st.bad != 0 {
						t.Errorf("%d replies (%d bad), want %d good", st.replies, st.bad, queries)
					}
					if st.sent != st.replies+st.lost {
						t.Errorf("sent %d queries, want %d replies + %d lost", st.sent, st.replies, st.lost)
					}
				})
			}
		})
	}
}

// TestServeLoadGeneratorAllocs checks the claim that makes allocs/query
// the server's: the generator, against the echo server (which allocates
// nothing either), allocates nothing per query. The threshold leaves room
// for the runtime's and other goroutines' occasional allocations; a
// generator that allocated per query would make at least one per query.
func TestServeLoadGeneratorAllocs(t *testing.T) {
	const queries = 2000
	s := startServe(t, serveImpl{"echo", startServeEcho})
	g := newLoadGen(t, krpc.MethodFindNode, s, serveWorkers, serveWindow)
	if _, err := g.run(100); err != nil { // warm up: sockets, goroutine stacks
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	st, err := g.run(queries)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if st.replies != queries || st.bad != 0 {
		t.Fatalf("%d replies (%d bad), want %d good", st.replies, st.bad, queries)
	}
	if perQuery := float64(after.Mallocs-before.Mallocs) / queries; perQuery > 0.25 {
		t.Errorf("%.3f allocations per query with the echo server, want none", perQuery)
	}
}
