package krpc_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lightdht/lightdht/internal/simnet"
	"github.com/lightdht/lightdht/krpc"
)

func newNet(t *testing.T, cfg simnet.Config) *simnet.Network {
	t.Helper()
	n, err := simnet.New(cfg)
	if err != nil {
		t.Fatalf("simnet.New: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// startTransport creates a transport on a new simnet conn, runs Serve and
// closes it at cleanup. cfg.Conn is filled in.
func startTransport(t *testing.T, n *simnet.Network, cfg krpc.Config) (*krpc.Transport, netip.AddrPort) {
	t.Helper()
	c, err := n.NewConn4()
	if err != nil {
		t.Fatalf("NewConn4: %v", err)
	}
	cfg.Conn = c
	tr, err := krpc.New(cfg)
	if err != nil {
		t.Fatalf("krpc.New: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- tr.Serve(context.Background()) }()
	t.Cleanup(func() {
		if err := tr.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		// ErrClosed: the test ended before Serve got to run.
		if err := <-done; err != nil && !errors.Is(err, krpc.ErrClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return tr, c.AddrPort()
}

// pinger answers every ping with id.
func pinger(id krpc.ID) krpc.Handler {
	return krpc.HandlerFunc(func(reply, q *krpc.Msg, src netip.AddrPort) bool {
		if q.Q != krpc.MethodPing {
			reply.Y, reply.E = krpc.KindError, &krpc.Error{Code: krpc.CodeMethodUnknown, Msg: "method unknown"}
			return true
		}
		reply.R.ID = id
		return true
	})
}

func ping(id krpc.ID) *krpc.Msg {
	return &krpc.Msg{Q: krpc.MethodPing, A: krpc.Args{ID: id}}
}

func TestBlockingQuery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t, simnet.Config{Latency: 10 * time.Millisecond})
		serverID, clientID := krpc.RandomID(), krpc.RandomID()
		var sawVersion, sawRO atomic.Bool
		server, serverAddr := startTransport(t, n, krpc.Config{Handler: krpc.HandlerFunc(func(reply, q *krpc.Msg, src netip.AddrPort) bool {
			sawVersion.Store(string(q.V) == "LD\x00\x01")
			sawRO.Store(q.RO)
			reply.R.ID = serverID
			return true
		})})
		client, clientAddr := startTransport(t, n, krpc.Config{Version: []byte("LD\x00\x01"), ReadOnly: true})

		q := ping(clientID)
		resp, err := client.Query(context.Background(), serverAddr, q)
		if err != nil {
			t.Fatalf("Query: %v", err)
		}
		if resp.R.ID != serverID || resp.From != serverAddr || resp.Attempts != 1 {
			t.Errorf("reply id=%v from=%v attempts=%d, want %v from %v after 1 attempt", resp.R.ID, resp.From, resp.Attempts, serverID, serverAddr)
		}
		if resp.RTT != 20*time.Millisecond {
			t.Errorf("RTT %v, want exactly 20ms (two 10ms hops on a fake clock)", resp.RTT)
		}
		if !sawVersion.Load() || !sawRO.Load() {
			t.Errorf("server saw version=%v ro=%v, want both set by the client's config", sawVersion.Load(), sawRO.Load())
		}
		if q.Y != "" || q.T != nil || q.V != nil {
			t.Errorf("Query modified the caller's message: %+v", q)
		}
		cs, ss := client.Stats(), server.Stats()
		if cs.QueriesSent != 1 || cs.RepliesReceived != 1 || ss.QueriesReceived != 1 || ss.RepliesSent != 1 {
			t.Errorf("stats client %+v server %+v", cs, ss)
		}
		_ = clientAddr
	})
}

func TestCallbackQueryDoesNotBlock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t, simnet.Config{Latency: 50 * time.Millisecond})
		serverID := krpc.RandomID()
		_, serverAddr := startTransport(t, n, krpc.Config{Handler: pinger(serverID)})
		client, _ := startTransport(t, n, krpc.Config{})

		var calls atomic.Int32
		var got krpc.Response
		start := time.Now()
		client.QueryAsync(context.Background(), serverAddr, ping(krpc.RandomID()), func(r krpc.Response, err error) {
			if err != nil {
				t.Errorf("callback error: %v", err)
			}
			got = r
			calls.Add(1)
		})
		if time.Since(start) != 0 {
			t.Errorf("QueryAsync took %v of fake time, want 0", time.Since(start))
		}
		synctest.Wait()
		if calls.Load() != 0 {
			t.Fatal("callback ran before the reply could have arrived")
		}
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		if calls.Load() != 1 {
			t.Fatalf("callback ran %d times, want 1", calls.Load())
		}
		if got.R.ID != serverID || got.RTT != 100*time.Millisecond {
			t.Errorf("reply id %v rtt %v", got.R.ID, got.RTT)
		}
	})
}

func TestTimeoutAfterRetries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t, simnet.Config{})
		silent, silentAddr := startTransport(t, n, krpc.Config{}) // no handler: never answers
		client, _ := startTransport(t, n, krpc.Config{Timeout: 300 * time.Millisecond, Retries: 2})

		start := time.Now()
		resp, err := client.Query(context.Background(), silentAddr, ping(krpc.RandomID()))
		if !errors.Is(err, krpc.ErrTimeout) {
			t.Fatalf("err %v, want ErrTimeout", err)
		}
		var ne interface{ Timeout() bool }
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Errorf("error %v does not report Timeout()", err)
		}
		if el := time.Since(start); el != 900*time.Millisecond {
			t.Errorf("gave up after %v, want 3 attempts x 300ms = 900ms", el)
		}
		if resp.Attempts != 3 || resp.Msg != nil {
			t.Errorf("attempts %d msg %v, want 3 and nil", resp.Attempts, resp.Msg)
		}
		st := client.Stats()
		if st.Timeouts != 1 || st.Resends != 2 || st.PacketsSent != 3 {
			t.Errorf("client stats %+v", st)
		}
		if got := silent.Stats().DroppedNoHandler; got != 3 {
			t.Errorf("silent node dropped %d queries, want 3", got)
		}
		if client.Pending() != 0 {
			t.Errorf("%d queries still pending", client.Pending())
		}
	})
}

// TestLossWithRetries: at 30% loss per packet a single attempt succeeds
// about half the time (0.7 x 0.7); four attempts succeed about 94% of the
// time. Every callback fires exactly once either way.
func TestLossWithRetries(t *testing.T) {
	run := func(t *testing.T, retries int) (ok, total int, resends uint64) {
		synctest.Test(t, func(t *testing.T) {
			n := newNet(t, simnet.Config{Seed: 7, Latency: 5 * time.Millisecond, Loss: 0.3})
			_, serverAddr := startTransport(t, n, krpc.Config{Handler: pinger(krpc.RandomID())})
			client, _ := startTransport(t, n, krpc.Config{Timeout: 100 * time.Millisecond, Retries: retries})
			const queries = 400
			var wg sync.WaitGroup
			var succeeded atomic.Int32
			calls := make([]atomic.Int32, queries)
			for i := range queries {
				wg.Add(1)
				client.QueryAsync(context.Background(), serverAddr, ping(krpc.RandomID()), func(r krpc.Response, err error) {
					if calls[i].Add(1) == 1 {
						wg.Done()
					}
					if err == nil {
						succeeded.Add(1)
					} else if !errors.Is(err, krpc.ErrTimeout) {
						t.Errorf("unexpected error %v", err)
					}
				})
			}
			wg.Wait()
			synctest.Wait()
			for i := range calls {
				if c := calls[i].Load(); c != 1 {
					t.Errorf("query %d: callback ran %d times", i, c)
				}
			}
			ok, total, resends = int(succeeded.Load()), queries, client.Stats().Resends
		})
		return ok, total, resends
	}
	okNone, total, _ := run(t, krpc.NoRetries)
	okRetry, _, resends := run(t, 3)
	t.Logf("success without retries %d/%d, with 3 retries %d/%d (%d resends)", okNone, total, okRetry, total, resends)
	if okNone > total*65/100 || okNone < total*35/100 {
		t.Errorf("without retries %d/%d succeeded, want about 49%%", okNone, total)
	}
	if okRetry < total*85/100 {
		t.Errorf("with 3 retries only %d/%d succeeded, want at least 85%%", okRetry, total)
	}
	if resends == 0 {
		t.Error("no resends counted")
	}
}

// TestWrongAddressReplyIgnored: a third node that learns the transaction ID
// and replies first is not believed; the real reply still completes the
// query.
func TestWrongAddressReplyIgnored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t, simnet.Config{Latency: time.Millisecond})
		forger, err := n.NewConn4()
		if err != nil {
			t.Fatal(err)
		}
		realID, fakeID := krpc.RandomID(), krpc.RandomID()
		var clientAddr netip.AddrPort
		_, serverAddr := startTransport(t, n, krpc.Config{Handler: krpc.HandlerFunc(func(reply, q *krpc.Msg, src netip.AddrPort) bool {
			forged := krpc.Msg{T: append([]byte(nil), q.T...), Y: krpc.KindReply, R: krpc.Return{ID: fakeID}}
			b, _ := forged.MarshalBinary()
			forger.WriteToUDPAddrPort(b, src) // arrives before the real reply
			time.Sleep(5 * time.Millisecond)
			reply.R.ID = realID
			return true
		})})
		client, addr := startTransport(t, n, krpc.Config{})
		clientAddr = addr

		resp, err := client.Query(context.Background(), serverAddr, ping(krpc.RandomID()))
		if err != nil {
			t.Fatalf("Query: %v", err)
		}
		if resp.R.ID != realID {
			t.Errorf("accepted the forged reply (id %v)", resp.R.ID)
		}
		if got := client.Stats().DroppedWrongAddress; got != 1 {
			t.Errorf("DroppedWrongAddress = %d, want 1", got)
		}
		// A reply for no outstanding transaction is dropped and counted too.
		stray := krpc.Msg{T: []byte("zzzz"), Y: krpc.KindReply, R: krpc.Return{ID: fakeID}}
		b, _ := stray.MarshalBinary()
		forger.WriteToUDPAddrPort(b, clientAddr)
		time.Sleep(10 * time.Millisecond)
		synctest.Wait()
		if got := client.Stats().DroppedUnknownTransaction; got != 1 {
			t.Errorf("DroppedUnknownTransaction = %d, want 1", got)
		}
	})
}

func TestKRPCErrorReply(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t, simnet.Config{})
		_, serverAddr := startTransport(t, n, krpc.Config{Handler: pinger(krpc.RandomID())})
		client, _ := startTransport(t, n, krpc.Config{})
		resp, err := client.Query(context.Background(), serverAddr, &krpc.Msg{Q: "vote", A: krpc.Args{ID: krpc.RandomID()}})
		var kerr *krpc.Error
		if !errors.As(err, &kerr) || kerr.Code != krpc.CodeMethodUnknown {
			t.Fatalf("err %v, want a *krpc.Error with code 204", err)
		}
		if resp.Msg == nil || resp.Y != krpc.KindError {
			t.Errorf("response does not carry the error message: %+v", resp)
		}
		if client.Stats().ErrorsReceived != 1 {
			t.Errorf("ErrorsReceived = %d", client.Stats().ErrorsReceived)
		}
	})
}

// rawExchange sends pkt from a bare conn to addr and returns the reply, or
// nil if none arrives within a second of fake time.
func rawExchange(t *testing.T, n *simnet.Network, addr netip.AddrPort, pkt []byte) []byte {
	t.Helper()
	c, err := n.NewConn4()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.WriteToUDPAddrPort(pkt, addr); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 2048)
	k, _, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		return nil
	}
	return buf[:k]
}

func TestIncomingGarbage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t, simnet.Config{})
		var handled atomic.Int32
		server, addr := startTransport(t, n, krpc.Config{Handler: krpc.HandlerFunc(func(reply, q *krpc.Msg, src netip.AddrPort) bool {
			handled.Add(1)
			return true
		})})

		// A query with a malformed argument but a usable envelope: 203.
		got := rawExchange(t, n, addr, []byte("d1:ad2:id3:abce1:q4:ping1:t2:aa1:y1:qe"))
		var m krpc.Msg
		if err := krpc.Unmarshal(got, &m); err != nil {
			t.Fatalf("reply to a bad argument: %q: %v", got, err)
		}
		if m.Y != krpc.KindError || m.E.Code != krpc.CodeProtocol || string(m.T) != "aa" {
			t.Errorf("got %+v, want protocol error 203 echoing t=aa", m)
		}

		// Garbage, a truncated packet and an oversize one: no reply at all.
		for _, pkt := range [][]byte{
			[]byte("this is not bencode"),
			[]byte("d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:q"),
			append([]byte("d1:q4:ping1:t2:aa1:y1:q1:z2000:"), make([]byte, 2000)...),
		} {
			if got := rawExchange(t, n, addr, pkt); got != nil {
				t.Errorf("replied %q to %q", got, pkt[:min(len(pkt), 40)])
			}
		}
		st := server.Stats()
		if st.DroppedMalformed != 2 || st.DroppedOversize != 1 || st.ErrorsSent != 1 {
			t.Errorf("stats %+v, want 2 malformed, 1 oversize, 1 error sent", st)
		}
		if handled.Load() != 0 {
			t.Errorf("handler saw %d bad packets", handled.Load())
		}
	})
}

func TestCloseEndsOutstandingQueries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t, simnet.Config{})
		_, silentAddr := startTransport(t, n, krpc.Config{})
		c, err := n.NewConn4()
		if err != nil {
			t.Fatal(err)
		}
		client, err := krpc.New(krpc.Config{Conn: c, Timeout: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		served := make(chan error, 1)
		go func() { served <- client.Serve(context.Background()) }()

		const queries = 100
		calls := make([]atomic.Int32, queries)
		var closedErrs atomic.Int32
		for i := range queries {
			client.QueryAsync(context.Background(), silentAddr, ping(krpc.RandomID()), func(r krpc.Response, err error) {
				calls[i].Add(1)
				if errors.Is(err, net.ErrClosed) && errors.Is(err, krpc.ErrClosed) {
					closedErrs.Add(1)
				}
			})
		}
		synctest.Wait()
		if client.Pending() != queries {
			t.Fatalf("%d pending, want %d", client.Pending(), queries)
		}
		if err := client.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := client.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve returned %v after Close", err)
		}
		for i := range calls {
			if c := calls[i].Load(); c != 1 {
				t.Errorf("query %d: callback ran %d times, want once", i, c)
			}
		}
		if closedErrs.Load() != queries {
			t.Errorf("%d callbacks got ErrClosed, want %d", closedErrs.Load(), queries)
		}
		if _, err := client.Query(context.Background(), silentAddr, ping(krpc.RandomID())); !errors.Is(err, net.ErrClosed) {
			t.Errorf("Query after Close: %v, want ErrClosed", err)
		}
		if err := client.Serve(context.Background()); !errors.Is(err, net.ErrClosed) {
			t.Errorf("Serve after Close: %v", err)
		}
	})
}

func TestContextCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t, simnet.Config{})
		_, silentAddr := startTransport(t, n, krpc.Config{})
		client, _ := startTransport(t, n, krpc.Config{Timeout: time.Hour})
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := client.Query(ctx, silentAddr, ping(krpc.RandomID()))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err %v, want DeadlineExceeded", err)
		}
		if el := time.Since(start); el != 50*time.Millisecond {
			t.Errorf("returned after %v, want 50ms", el)
		}
		synctest.Wait()
		if client.Pending() != 0 || client.Stats().Cancelled != 1 {
			t.Errorf("pending %d cancelled %d, want 0 and 1", client.Pending(), client.Stats().Cancelled)
		}
		// An already-cancelled context fails at once, through the callback.
		_, err = client.Query(ctx, silentAddr, ping(krpc.RandomID()))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err %v with a done context", err)
		}
	})
}

func TestServeStopsWithContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t, simnet.Config{})
		c, _ := n.NewConn4()
		tr, err := krpc.New(krpc.Config{Conn: c})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- tr.Serve(ctx) }()
		synctest.Wait()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if _, err := c.WriteTo([]byte("x"), c.LocalAddr()); !errors.Is(err, net.ErrClosed) {
			t.Errorf("conn still open after Serve returned: %v", err)
		}
	})
}

// TestSendRateLimit: at 100 packets/s with a burst of 1, 50 queries take
// 490ms of fake time to leave, and QueryAsync never waits for the limiter.
func TestSendRateLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t, simnet.Config{})
		_, serverAddr := startTransport(t, n, krpc.Config{Handler: pinger(krpc.RandomID())})
		client, _ := startTransport(t, n, krpc.Config{SendRate: 100, SendBurst: 1})
		start := time.Now()
		var wg sync.WaitGroup
		var last atomic.Int64
		for range 50 {
			wg.Add(1)
			client.QueryAsync(context.Background(), serverAddr, ping(krpc.RandomID()), func(r krpc.Response, err error) {
				if err != nil {
					t.Errorf("query: %v", err)
				}
				last.Store(int64(time.Since(start)))
				wg.Done()
			})
		}
		if el := time.Since(start); el != 0 {
			t.Errorf("QueryAsync blocked for %v", el)
		}
		wg.Wait()
		if el := time.Duration(last.Load()); el != 490*time.Millisecond {
			t.Errorf("last reply after %v, want 490ms (49 waits of 10ms)", el)
		}
	})
}

func TestTransactionIDs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t, simnet.Config{})
		var mu sync.Mutex
		seen := map[string]bool{}
		var prev uint32
		var increasing int
		_, serverAddr := startTransport(t, n, krpc.Config{Handler: krpc.HandlerFunc(func(reply, q *krpc.Msg, src netip.AddrPort) bool {
			mu.Lock()
			defer mu.Unlock()
			if len(q.T) != 4 {
				t.Errorf("transaction ID of %d bytes", len(q.T))
			}
			seen[string(q.T)] = true
			v := uint32(q.T[0])<<24 | uint32(q.T[1])<<16 | uint32(q.T[2])<<8 | uint32(q.T[3])
			if v == prev+1 {
				increasing++
			}
			prev = v
			return true
		})})
		client, _ := startTransport(t, n, krpc.Config{})
		for range 500 {
			if _, err := client.Query(context.Background(), serverAddr, ping(krpc.RandomID())); err != nil {
				t.Fatal(err)
			}
		}
		if len(seen) != 500 {
			t.Errorf("%d distinct transaction IDs in 500 queries", len(seen))
		}
		if increasing > 5 {
			t.Errorf("%d of 500 IDs followed their predecessor by one: predictable", increasing)
		}
	})
}

func TestConfigErrors(t *testing.T) {
	n := newNet(t, simnet.Config{})
	c, _ := n.NewConn4()
	for _, tc := range []struct {
		name      string
		cfg       krpc.Config
		wantField string
	}{
		{"no conn", krpc.Config{}, "Conn"},
		{"negative timeout", krpc.Config{Conn: c, Timeout: -1}, "Timeout"},
		{"retries below NoRetries", krpc.Config{Conn: c, Retries: -2}, "Retries"},
		{"negative send burst", krpc.Config{Conn: c, SendRate: 10, SendBurst: -1}, "SendBurst"},
		{"oversize limit", krpc.Config{Conn: c, Limits: krpc.Limits{MaxSize: 70000}}, "Limits.MaxSize"},
		{"amplification below 1", krpc.Config{Conn: c, MaxAmplification: 0.5}, "MaxAmplification"},
		{"negative prefix burst", krpc.Config{Conn: c, PrefixReplyBurst: -1}, "PrefixReplyBurst"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := krpc.New(tc.cfg)
			if err == nil {
				t.Fatalf("New(%+v) accepted a bad config", tc.cfg)
			}
			var ce *krpc.ConfigError
			if !errors.As(err, &ce) || ce.Field != tc.wantField {
				t.Fatalf("New: %v (%T), want a *krpc.ConfigError for %s", err, err, tc.wantField)
			}
			if want := "krpc: config: " + tc.wantField + ": "; !strings.HasPrefix(err.Error(), want) {
				t.Errorf("error %q does not start with %q", err, want)
			}
		})
	}
}

// TestSendRateNoCap: a negative SendRate (NoCap) is valid and, like zero,
// sends every query at once.
func TestSendRateNoCap(t *testing.T) {
	for _, rate := range []float64{krpc.NoCap, 0} {
		synctest.Test(t, func(t *testing.T) {
			n := newNet(t, simnet.Config{})
			_, serverAddr := startTransport(t, n, krpc.Config{Handler: pinger(krpc.RandomID())})
			client, _ := startTransport(t, n, krpc.Config{SendRate: rate})
			start := time.Now()
			var wg sync.WaitGroup
			for range 50 {
				wg.Add(1)
				client.QueryAsync(context.Background(), serverAddr, ping(krpc.RandomID()), func(r krpc.Response, err error) {
					if err != nil {
						t.Errorf("query: %v", err)
					}
					wg.Done()
				})
			}
			wg.Wait()
			if el := time.Since(start); el != 0 {
				t.Errorf("SendRate %v: 50 replies took %v, want no wait", rate, el)
			}
		})
	}
}

func TestInvalidAddress(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t, simnet.Config{})
		client, _ := startTransport(t, n, krpc.Config{})
		for _, addr := range []netip.AddrPort{{}, netip.MustParseAddrPort("127.0.0.1:0")} {
			if _, err := client.Query(context.Background(), addr, ping(krpc.RandomID())); err == nil {
				t.Errorf("query to %v succeeded", addr)
			}
		}
	})
}

// TestNoGoroutineLeak runs a busy transport pair over real time and checks
// that closing it returns the goroutine count to where it started.
func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		n, err := simnet.New(simnet.Config{Latency: time.Millisecond, Loss: 0.2, Seed: 3})
		if err != nil {
			t.Fatal(err)
		}
		defer n.Close()
		sc, _ := n.NewConn4()
		cc, _ := n.NewConn4()
		server, _ := krpc.New(krpc.Config{Conn: sc, Handler: pinger(krpc.RandomID())})
		client, _ := krpc.New(krpc.Config{Conn: cc, Timeout: 20 * time.Millisecond, SendRate: 5000})
		go server.Serve(context.Background())
		go client.Serve(context.Background())
		var wg sync.WaitGroup
		for range 200 {
			wg.Add(1)
			client.QueryAsync(context.Background(), sc.AddrPort(), ping(krpc.RandomID()), func(krpc.Response, error) { wg.Done() })
		}
		time.Sleep(15 * time.Millisecond) // close with queries in every state
		client.Close()
		server.Close()
		wg.Wait()
	}()
	// Close has returned, but the goroutines it ended may not have been
	// scheduled to exit yet: wait for them, a minute at most (a leak
	// never exits; a busy machine only delays the exits).
	deadline := time.Now().Add(time.Minute)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if after := runtime.NumGoroutine(); after > before {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines before, %d after close\n%s", before, after, buf[:runtime.Stack(buf, true)])
	}
}

// TestSocketClosedUnderTransport: when the socket is closed by its owner
// rather than through Close, Serve ends with an error and the transport
// closes, failing its outstanding queries.
func TestSocketClosedUnderTransport(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t, simnet.Config{})
		_, silentAddr := startTransport(t, n, krpc.Config{})
		c, _ := n.NewConn4()
		tr, err := krpc.New(krpc.Config{Conn: c, Timeout: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		served := make(chan error, 1)
		go func() { served <- tr.Serve(context.Background()) }()
		got := make(chan error, 1)
		tr.QueryAsync(context.Background(), silentAddr, ping(krpc.RandomID()), func(_ krpc.Response, err error) { got <- err })
		synctest.Wait()
		c.Close()
		if err := <-served; !errors.Is(err, net.ErrClosed) {
			t.Errorf("Serve returned %v, want an error wrapping net.ErrClosed", err)
		}
		if err := <-got; !errors.Is(err, krpc.ErrClosed) {
			t.Errorf("outstanding query ended with %v, want ErrClosed", err)
		}
		if err := tr.Close(); err != nil {
			t.Errorf("Close after the socket was lost: %v", err)
		}
	})
}
