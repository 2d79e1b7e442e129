package krpc

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/time/rate"
)

// Transport defaults.
const (
	DefaultTimeout = 2 * time.Second // wait for a reply to each attempt
	DefaultRetries = 1               // resends after a timed-out attempt

	// MinAttemptTimeout is the shortest attempt of an AdaptiveTimeout
	// transport.
	MinAttemptTimeout = 200 * time.Millisecond

	// DefaultMaxAmplification caps each reply at 10 times the bytes of
	// the query that caused it.
	DefaultMaxAmplification = 10
	// DefaultPrefixReplyRate and DefaultPrefixReplyBurst cap the reply
	// bytes sent to one /24 (IPv4) or /48 (IPv6): 64 KiB per second with
	// a bucket of 128 KiB.
	DefaultPrefixReplyRate  = 64 << 10
	DefaultPrefixReplyBurst = 128 << 10
)

// tidLen is the length of the transaction IDs this transport generates.
const tidLen = 4

// ErrClosed is returned for queries that were outstanding when the
// transport closed or that were made after it closed. It satisfies
// errors.Is(err, net.ErrClosed).
var ErrClosed = fmt.Errorf("krpc: transport closed: %w", net.ErrClosed)

// ErrTimeout is returned, wrapped with the method and address, when a query
// gets no reply within its attempts. The wrapped error reports Timeout() ==
// true, as net.Error timeouts do.
var ErrTimeout error = timeoutError{}

type timeoutError struct{}

func (timeoutError) Error() string { return "krpc: query timed out" }
func (timeoutError) Timeout() bool { return true }

// Handler answers incoming queries.
type Handler interface {
	// ServeKRPC is called on the transport's read goroutine for each
	// well-formed query, so it must not block. q and the byte slices in it
	// are valid only during the call. To answer, fill in reply, whose T, Y
	// (KindReply) and V are already set, and return true; to answer with an
	// error set reply.Y to KindError and reply.E. Return false to send
	// nothing.
	ServeKRPC(reply *Msg, q *Msg, src netip.AddrPort) bool
}

// HandlerFunc adapts a function to the Handler interface.
type HandlerFunc func(reply *Msg, q *Msg, src netip.AddrPort) bool

// ServeKRPC calls f(reply, q, src).
func (f HandlerFunc) ServeKRPC(reply *Msg, q *Msg, src netip.AddrPort) bool { return f(reply, q, src) }

// Config configures a Transport. Only Conn is required; every other zero
// value selects the documented default.
type Config struct {
	// Conn is the socket the transport owns: it reads from it, writes to it
	// and closes it. A *net.UDPConn or any other net.PacketConn, such as an
	// in-memory one in tests.
	Conn net.PacketConn

	// Handler answers incoming queries. Nil: queries are dropped and
	// counted, as a read-only node does.
	Handler Handler

	// Timeout is how long each attempt waits for a reply. Zero:
	// DefaultTimeout (2s).
	Timeout time.Duration

	// Retries is how many times a query is resent, with the same
	// transaction ID, after an attempt times out. Zero: DefaultRetries
	// (1, so two attempts in all); NoRetries: none.
	Retries int

	// SendRate caps the packets sent per second; SendBurst is the bucket
	// size (zero: max(1, SendRate/10)). Zero or negative SendRate (NoCap
	// says so explicitly): no cap. Queries over the cap wait their turn
	// (without blocking the caller); replies over the cap are dropped and
	// counted. When Admit is set, a reply to a query it did not mark
	// AdmittedKnown is sent only if it leaves at least half the bucket:
	// that half is kept for the sources with a record, so that a flood
	// from many sources, each within its per-source limit, cannot take
	// the replies of the nodes the node knows.
	SendRate  float64
	SendBurst int

	// Limits bound the decoding of each packet; zero fields take the
	// defaults (1,500-byte packets, see Limits). Larger packets are
	// dropped and counted.
	Limits Limits

	// Version, when set, is sent as the "v" key of every outgoing message
	// (2 client letters and 2 version bytes by convention). Nil: none.
	Version []byte

	// ReadOnly sets BEP 43's "ro" flag on every outgoing query.
	ReadOnly bool

	// AdaptiveTimeout shortens every attempt but the last to a
	// retransmission timeout estimated from the round trips of earlier
	// replies (smoothed RTT plus four deviations, as TCP does, between
	// MinAttemptTimeout and Timeout), so that a lost packet is resent
	// after a few round trips rather than a whole Timeout. The last
	// attempt still waits Timeout, so slow nodes keep their chance, and a
	// late reply to an earlier attempt is accepted (resends keep the
	// transaction ID). Until the first reply, attempts wait Timeout.
	AdaptiveTimeout bool

	// Admit, when set, is asked about every incoming packet that looks
	// like a query, before it is decoded; Refused drops the packet without
	// a reply (counted in Stats.DroppedNotAdmitted). It runs on the
	// reading goroutine and must be fast. For a packet it admits that
	// decodes as a query, the verdict reaches the Handler in
	// Msg.Admission. A node uses it for per-source rate limits, so that a
	// flooding source costs no decoding.
	Admit func(src netip.AddrPort) Admission

	// MaxAmplification caps the size of every reply at this many times
	// the size of the query it answers, so that the transport is a poor
	// reflector for spoofed queries. A reply over the cap is trimmed
	// (values first, then nodes6, nodes, samples and Bloom filters, from
	// the tail) and dropped if it still does not fit (counted in
	// Stats.DroppedAmplification). Zero: DefaultMaxAmplification (10);
	// negative (NoCap): no cap. Between 0 and 1 is an error.
	MaxAmplification float64

	// PrefixReplyRate caps the reply bytes sent per second to any one
	// /24 (IPv4) or /48 (IPv6) network, with a bucket of PrefixReplyBurst
	// bytes; replies over the cap are dropped (counted in
	// Stats.DroppedPrefixCap). Zero PrefixReplyRate: DefaultPrefixReplyRate
	// (64 KiB/s) with DefaultPrefixReplyBurst (128 KiB), whatever
	// PrefixReplyBurst says; negative (NoCap): no cap. With a rate set,
	// zero PrefixReplyBurst is the larger of DefaultPrefixReplyBurst and
	// one second at PrefixReplyRate. The state is a fixed table of 65,536 buckets, so
	// its memory does not grow with the number of sources.
	PrefixReplyRate  float64
	PrefixReplyBurst int

	// Logger receives the transport's log events, tagged component=krpc.
	// The zero value logs nothing.
	Logger zerolog.Logger
}

// DefaultVersion is the "v" client version lightdht's node and crawler
// send: "LD" and version 0.1. The transport itself sends no version
// unless Config.Version is set.
var DefaultVersion = []byte{'L', 'D', 0, 1}

// NoRetries is the Config.Retries value for no resends.
const NoRetries = -1

// NoCap is the value of Config.SendRate, MaxAmplification and
// PrefixReplyRate that turns the cap off; any negative value does the
// same.
const NoCap = -1

// ConfigError reports a Config field that New cannot use. Match it with
// errors.As.
type ConfigError struct {
	Field  string // the field at fault, e.g. "Timeout" or "Limits.MaxSize"
	Reason string // what is wrong with its value
}

func (e *ConfigError) Error() string { return "krpc: config: " + e.Field + ": " + e.Reason }

func configErr(field, format string, args ...any) error {
	return &ConfigError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// withDefaults checks c and returns it with every default filled in, so
// that New reads only explicit values: on return Timeout, Retries (a count
// or NoRetries), Limits, MaxAmplification and PrefixReplyRate with its
// burst are set, and SendRate is either a cap with its burst or NoCap.
func (c Config) withDefaults() (Config, error) {
	switch {
	case c.Conn == nil:
		return c, configErr("Conn", "is required")
	case c.Timeout < 0:
		return c, configErr("Timeout", "is negative (%v)", c.Timeout)
	case c.Retries < NoRetries:
		return c, configErr("Retries", "is %d (use NoRetries for none)", c.Retries)
	case c.SendBurst < 0:
		return c, configErr("SendBurst", "is negative (%d)", c.SendBurst)
	case c.Limits.MaxSize > 65507:
		return c, configErr("Limits.MaxSize", "%d exceeds the largest UDP payload", c.Limits.MaxSize)
	case c.MaxAmplification > 0 && c.MaxAmplification < 1:
		return c, configErr("MaxAmplification", "%v is below 1: no reply could be sent", c.MaxAmplification)
	case c.PrefixReplyBurst < 0:
		return c, configErr("PrefixReplyBurst", "is negative (%d)", c.PrefixReplyBurst)
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Retries == 0 {
		c.Retries = DefaultRetries
	}
	if c.SendRate > 0 {
		if c.SendBurst == 0 {
			c.SendBurst = max(1, int(c.SendRate/10))
		}
	} else {
		c.SendRate, c.SendBurst = NoCap, 0
	}
	c.Limits = c.Limits.withDefaults()
	switch {
	case c.MaxAmplification == 0:
		c.MaxAmplification = DefaultMaxAmplification
	case c.MaxAmplification < 0:
		c.MaxAmplification = NoCap
	}
	switch {
	case c.PrefixReplyRate == 0:
		c.PrefixReplyRate, c.PrefixReplyBurst = DefaultPrefixReplyRate, DefaultPrefixReplyBurst
	case c.PrefixReplyRate > 0:
		if c.PrefixReplyBurst == 0 {
			c.PrefixReplyBurst = max(DefaultPrefixReplyBurst, int(c.PrefixReplyRate))
		}
	default:
		c.PrefixReplyRate, c.PrefixReplyBurst = NoCap, 0
	}
	return c, nil
}

// Response is a reply or error message together with what the transport
// measured while waiting for it.
type Response struct {
	*Msg                    // the reply or error message; nil on timeout, close or cancel
	From     netip.AddrPort // the address the message came from
	RTT      time.Duration  // from the last send of the query to the reply
	Attempts int            // packets sent for the query, resends included
}

// Callback receives the outcome of an asynchronous query. It is called
// exactly once: with the reply and a nil error; with the error message
// and an error wrapping its *Error; or with a zero-Msg Response and an
// error wrapping ErrTimeout, ErrClosed or the context's error. It runs on
// one of the transport's goroutines and must not block; it must not call
// Close.
type Callback func(Response, error)

// Stats is a snapshot of a transport's counters.
type Stats struct {
	PacketsSent, PacketsReceived uint64
	BytesSent, BytesReceived     uint64

	QueriesSent     uint64 // distinct queries, resends not included
	Resends         uint64 // attempts after the first
	RepliesReceived uint64 // replies matched to a query
	ErrorsReceived  uint64 // error messages matched to a query
	Timeouts        uint64 // queries that ran out of attempts
	Cancelled       uint64 // queries ended by their context

	QueriesReceived uint64 // well-formed incoming queries
	RepliesSent     uint64
	ErrorsSent      uint64

	DroppedOversize           uint64 // packets over Limits.MaxSize
	DroppedMalformed          uint64 // packets that do not decode
	DroppedUnknownTransaction uint64 // replies matching no outstanding query
	DroppedWrongAddress       uint64 // replies whose transaction belongs to another address
	DroppedNoHandler          uint64 // queries received with no Handler
	DroppedRateLimited        uint64 // replies not sent because of SendRate
	DroppedNotAdmitted        uint64 // query packets refused by Config.Admit
	DroppedAmplification      uint64 // replies that could not be trimmed under MaxAmplification
	DroppedPrefixCap          uint64 // replies not sent because of PrefixReplyRate
	RepliesTrimmed            uint64 // replies trimmed to fit MaxAmplification, then sent
	ReadErrors, WriteErrors   uint64
}

type counters struct {
	packetsSent, packetsReceived, bytesSent, bytesReceived atomic.Uint64
	queriesSent, resends, repliesReceived, errorsReceived  atomic.Uint64
	timeouts, cancelled                                    atomic.Uint64
	queriesReceived, repliesSent, errorsSent               atomic.Uint64
	oversize, malformed, unknownTx, wrongAddr, noHandler   atomic.Uint64
	rateLimited, readErrors, writeErrors                   atomic.Uint64
	notAdmitted, amplification, prefixCap, trimmed         atomic.Uint64
}

// Transport sends KRPC queries and matches their replies, and hands
// incoming queries to a Handler. It is safe for concurrent use.
type Transport struct {
	conn  net.PacketConn
	fastR interface {
		ReadFromUDPAddrPort([]byte) (int, netip.AddrPort, error)
	}
	fastW interface {
		WriteToUDPAddrPort([]byte, netip.AddrPort) (int, error)
	}
	handler Handler
	timeout time.Duration
	retries int
	limits  Limits
	version []byte
	ro      bool
	lim     *rate.Limiter // nil: no cap
	admit   func(netip.AddrPort) Admission
	maxAmp  float64       // 0: no cap
	prefix  *prefixBudget // nil: no cap
	log     zerolog.Logger
	scratch Msg // replies decoded in place to find their call; Serve's goroutine only

	mu      sync.Mutex
	pending map[uint32]*call
	rng     *rand.Rand // transaction IDs; guarded by mu
	adapt   bool
	srtt    time.Duration // smoothed round trip; 0 before the first sample; guarded by mu
	rttvar  time.Duration // its mean deviation; guarded by mu
	closed  bool
	serving bool

	wg        sync.WaitGroup // timer and deferred callbacks in flight
	served    chan struct{}  // closed when Serve returns
	closeOnce sync.Once
	closeErr  error
	stats     counters
}

// call is one outstanding query.
type call struct {
	tid      uint32
	addr     netip.AddrPort
	method   string
	packet   []byte
	done     Callback
	timer    *time.Timer
	stopCtx  func() bool // stops the context hook; set and read under Transport.mu
	attempts int
	sentAt   time.Time
}

// New checks cfg, fills in its defaults and returns a transport. It starts
// nothing: call Serve to read packets.
func New(cfg Config) (*Transport, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	t := &Transport{
		conn:    cfg.Conn,
		handler: cfg.Handler,
		timeout: cfg.Timeout,
		retries: max(cfg.Retries, 0), // NoRetries: none
		limits:  cfg.Limits,
		version: cfg.Version,
		ro:      cfg.ReadOnly,
		admit:   cfg.Admit,
		adapt:   cfg.AdaptiveTimeout,
		maxAmp:  max(cfg.MaxAmplification, 0), // NoCap: 0, no cap
		log:     cfg.Logger.With().Str("component", "krpc").Logger(),
		pending: make(map[uint32]*call),
		served:  make(chan struct{}),
	}
	if cfg.PrefixReplyRate > 0 {
		t.prefix = newPrefixBudget(cfg.PrefixReplyRate, cfg.PrefixReplyBurst)
	}
	if cfg.SendRate > 0 {
		t.lim = rate.NewLimiter(rate.Limit(cfg.SendRate), cfg.SendBurst)
	}
	var seed [32]byte
	crand.Read(seed[:])
	t.rng = rand.New(rand.NewChaCha8(seed))
	t.fastR, _ = cfg.Conn.(interface {
		ReadFromUDPAddrPort([]byte) (int, netip.AddrPort, error)
	})
	t.fastW, _ = cfg.Conn.(interface {
		WriteToUDPAddrPort([]byte, netip.AddrPort) (int, error)
	})
	return t, nil
}

// LocalAddr returns the address of the transport's socket.
func (t *Transport) LocalAddr() net.Addr { return t.conn.LocalAddr() }

// Stats returns a snapshot of the transport's counters.
func (t *Transport) Stats() Stats {
	c := &t.stats
	return Stats{
		PacketsSent: c.packetsSent.Load(), PacketsReceived: c.packetsReceived.Load(),
		BytesSent: c.bytesSent.Load(), BytesReceived: c.bytesReceived.Load(),
		QueriesSent: c.queriesSent.Load(), Resends: c.resends.Load(),
		RepliesReceived: c.repliesReceived.Load(), ErrorsReceived: c.errorsReceived.Load(),
		Timeouts: c.timeouts.Load(), Cancelled: c.cancelled.Load(),
		QueriesReceived: c.queriesReceived.Load(), RepliesSent: c.repliesSent.Load(), ErrorsSent: c.errorsSent.Load(),
		DroppedOversize: c.oversize.Load(), DroppedMalformed: c.malformed.Load(),
		DroppedUnknownTransaction: c.unknownTx.Load(), DroppedWrongAddress: c.wrongAddr.Load(),
		DroppedNoHandler: c.noHandler.Load(), DroppedRateLimited: c.rateLimited.Load(),
		DroppedNotAdmitted: c.notAdmitted.Load(), DroppedAmplification: c.amplification.Load(),
		DroppedPrefixCap: c.prefixCap.Load(), RepliesTrimmed: c.trimmed.Load(),
		ReadErrors: c.readErrors.Load(), WriteErrors: c.writeErrors.Load(),
	}
}

// Pending returns the number of outstanding queries.
func (t *Transport) Pending() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.pending)
}

// Query sends q to addr and waits for the reply, the timeout of its last
// attempt, the transport's closing or the end of ctx. A KRPC error reply
// is returned as an error wrapping *Error, with the error message in the
// Response. The transport sets q's transaction ID, kind, version and
// read-only flag on its own copy; q itself is not modified.
func (t *Transport) Query(ctx context.Context, addr netip.AddrPort, q *Msg) (Response, error) {
	ch := make(chan result, 1)
	t.QueryAsync(ctx, addr, q, func(r Response, err error) { ch <- result{r, err} })
	select {
	case r := <-ch:
		return r.resp, r.err
	case <-ctx.Done():
		// The callback has fired or will fire with the context's error
		// into the buffered channel; nothing waits on it.
		return Response{}, fmt.Errorf("krpc: %s to %v: %w", q.Q, addr, context.Cause(ctx))
	}
}

type result struct {
	resp Response
	err  error
}

// QueryAsync sends q to addr and returns at once; done is called exactly
// once with the outcome (see Callback). Cancelling ctx abandons the query.
func (t *Transport) QueryAsync(ctx context.Context, addr netip.AddrPort, q *Msg, done Callback) {
	addr = unmap(addr)
	if !addr.IsValid() || addr.Port() == 0 {
		t.fail(done, fmt.Errorf("krpc: %s: invalid address %v", q.Q, addr))
		return
	}
	if err := ctx.Err(); err != nil {
		t.fail(done, fmt.Errorf("krpc: %s to %v: %w", q.Q, addr, context.Cause(ctx)))
		return
	}
	m := *q
	m.Y = KindQuery
	if len(m.V) == 0 {
		m.V = t.version
	}
	m.RO = m.RO || t.ro

	c := &call{addr: addr, method: q.Q, done: done}
	var tb [tidLen]byte
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		t.fail(done, fmt.Errorf("krpc: %s to %v: %w", q.Q, addr, ErrClosed))
		return
	}
	for {
		c.tid = t.rng.Uint32()
		if _, taken := t.pending[c.tid]; !taken {
			break
		}
	}
	binary.BigEndian.PutUint32(tb[:], c.tid)
	m.T = tb[:]
	packet, err := m.AppendBinary(make([]byte, 0, 128))
	if err != nil {
		t.mu.Unlock()
		t.fail(done, fmt.Errorf("krpc: %s to %v: %w", q.Q, addr, err))
		return
	}
	c.packet = packet
	c.timer = time.AfterFunc(time.Hour, func() { t.expire(c) })
	c.timer.Stop() // armed when the packet leaves
	t.pending[c.tid] = c
	// Set under the lock, as finish reads it under the lock. The hook
	// runs on a goroutine of the context's; enter counts it in the wait
	// group that Close waits on, so no callback outlives Close.
	c.stopCtx = context.AfterFunc(ctx, func() {
		if !t.enter() {
			return // closing: shutdown ends the call
		}
		defer t.wg.Done()
		if t.finish(c, Response{}, fmt.Errorf("krpc: %s to %v: %w", c.method, c.addr, context.Cause(ctx))) {
			t.stats.cancelled.Add(1)
		}
	})
	t.mu.Unlock()
	t.stats.queriesSent.Add(1)
	t.transmit(c)
}

// fail reports an error that happened before the query was sent. The
// callback runs on its own goroutine so that it never runs inside the
// caller's QueryAsync.
//
// Until the transport closes, the goroutine is counted in the wait group
// that Close waits on. Once it has closed, it is not: adding to the group
// while Close waits on it would be a race, and the query came after Close
// began, so Close's promise does not cover it.
func (t *Transport) fail(done Callback, err error) {
	counted := t.enter()
	go func() {
		if counted {
			defer t.wg.Done()
		}
		done(Response{}, err)
	}()
}

// transmit sends one attempt of c, after waiting for the send limiter, and
// arms its timer.
func (t *Transport) transmit(c *call) {
	if t.lim != nil {
		if d := t.lim.Reserve().Delay(); d > 0 {
			t.deferCall(d, func() { t.sendAttempt(c) })
			return
		}
	}
	t.sendAttempt(c)
}

// deferCall runs f after d unless the transport closes first.
func (t *Transport) deferCall(d time.Duration, f func()) {
	time.AfterFunc(d, func() {
		if !t.enter() {
			return
		}
		defer t.wg.Done()
		f()
	})
}

// enter registers a timer callback with the WaitGroup that Close waits on,
// or reports false once the transport is closed.
func (t *Transport) enter() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.wg.Add(1)
	return true
}

func (t *Transport) sendAttempt(c *call) {
	t.mu.Lock()
	if t.pending[c.tid] != c {
		t.mu.Unlock()
		return // finished while waiting for the limiter
	}
	c.attempts++
	if c.attempts > 1 {
		t.stats.resends.Add(1)
	}
	c.sentAt = time.Now()
	c.timer.Reset(t.attemptTimeout(c.attempts))
	t.mu.Unlock()
	t.write(c.packet, c.addr)
}

// attemptTimeout is how long attempt n (from 1) waits. t.mu must be held.
func (t *Transport) attemptTimeout(n int) time.Duration {
	if !t.adapt || t.srtt == 0 || n > t.retries {
		return t.timeout
	}
	return min(t.timeout, max(MinAttemptTimeout, t.srtt+4*t.rttvar))
}

// sampleRTT feeds one round trip to the estimator. Only replies to a
// query sent once are sampled (Karn's rule): after a resend, the reply
// may answer either attempt. t.mu must be held.
func (t *Transport) sampleRTT(rtt time.Duration) {
	if t.srtt == 0 {
		t.srtt, t.rttvar = rtt, rtt/2
		return
	}
	d := t.srtt - rtt
	if d < 0 {
		d = -d
	}
	t.rttvar += (d - t.rttvar) / 4
	t.srtt += (rtt - t.srtt) / 8
}

// expire handles the timeout of one attempt: resend, or give up.
func (t *Transport) expire(c *call) {
	if !t.enter() {
		return
	}
	defer t.wg.Done()
	t.mu.Lock()
	if t.pending[c.tid] != c {
		t.mu.Unlock()
		return
	}
	again := c.attempts <= t.retries
	attempts := c.attempts
	t.mu.Unlock()
	if again {
		t.transmit(c)
		return
	}
	t.stats.timeouts.Add(1)
	t.finish(c, Response{Attempts: attempts},
		fmt.Errorf("krpc: %s to %v: no reply after %d attempts: %w", c.method, c.addr, attempts, ErrTimeout))
}

// finish removes c and calls its callback, once: only the caller that
// removes c from the pending map gets to call it.
func (t *Transport) finish(c *call, r Response, err error) bool {
	t.mu.Lock()
	if t.pending[c.tid] != c {
		t.mu.Unlock()
		return false
	}
	delete(t.pending, c.tid)
	stop := c.stopCtx
	t.mu.Unlock()
	c.timer.Stop()
	if stop != nil {
		stop()
	}
	c.done(r, err)
	return true
}

func (t *Transport) write(b []byte, addr netip.AddrPort) bool {
	var err error
	if t.fastW != nil {
		_, err = t.fastW.WriteToUDPAddrPort(b, addr)
	} else {
		_, err = t.conn.WriteTo(b, net.UDPAddrFromAddrPort(addr))
	}
	if err != nil {
		t.stats.writeErrors.Add(1)
		t.log.Debug().Err(err).Stringer("addr", addr).Msg("write failed")
		return false
	}
	t.stats.packetsSent.Add(1)
	t.stats.bytesSent.Add(uint64(len(b)))
	return true
}

// Serve reads and dispatches packets until Close is called or ctx ends,
// which also closes the transport. It returns nil after a clean stop, and
// an error (after closing the transport) if the socket is closed by
// someone else. It may be called once.
func (t *Transport) Serve(ctx context.Context) error {
	t.mu.Lock()
	switch {
	case t.closed:
		t.mu.Unlock()
		return ErrClosed
	case t.serving:
		t.mu.Unlock()
		return errors.New("krpc: Serve called twice")
	}
	t.serving = true
	t.mu.Unlock()
	// When ctx ends, Close runs on the AfterFunc goroutine; Serve then
	// returns only after that Close has finished.
	stop := context.AfterFunc(ctx, func() { t.Close() })
	var lost error // the socket was closed under the transport
	defer func() {
		close(t.served)
		if !stop() || lost != nil {
			t.Close()
		}
	}()

	buf := make([]byte, t.limits.MaxSize+1) // one spare byte detects oversize packets
	var (
		query, reply Msg
		out          = make([]byte, 0, t.limits.MaxSize)
		backoff      time.Duration
	)
	for {
		n, src, err := t.read(buf)
		if err != nil {
			if t.isClosed() {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				// Closed by someone else: nothing more will arrive.
				lost = fmt.Errorf("krpc: socket closed under the transport: %w", err)
				return lost
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue // a deadline set by someone else; keep reading
			}
			t.stats.readErrors.Add(1)
			t.log.Warn().Err(err).Msg("read failed")
			backoff = min(max(2*backoff, time.Millisecond), time.Second)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		t.stats.packetsReceived.Add(1)
		t.stats.bytesReceived.Add(uint64(n))
		if n > t.limits.MaxSize {
			t.stats.oversize.Add(1)
			continue
		}
		pkt := buf[:n]
		// Queries are decoded in place; replies need a buffer of their own
		// because the callback may keep them.
		if isQuery(pkt) {
			verdict := Admitted
			if t.admit != nil {
				if verdict = t.admit(src); verdict == Refused {
					t.stats.notAdmitted.Add(1)
					continue
				}
			}
			out = t.serveQuery(&query, &reply, pkt, src, verdict, out)
			continue
		}
		t.handleReply(pkt, src)
	}
}

// fieldFault returns err's *DecodeError if it is a fault in one field of
// an otherwise well-formed message, and nil otherwise. It is a function of
// its own so that the error variable escapes only when there is an error,
// not on every query.
func fieldFault(err error) *DecodeError {
	var de *DecodeError
	if errors.As(err, &de) && de.Field != "" {
		return de
	}
	return nil
}

// isQuery is a cheap pre-check: a query carries "1:y1:q". A false positive
// is caught by the decoder.
func isQuery(b []byte) bool {
	for i := 0; i+6 <= len(b); i++ {
		if b[i] == '1' && string(b[i:i+6]) == "1:y1:q" {
			return true
		}
	}
	return false
}

func (t *Transport) read(buf []byte) (int, netip.AddrPort, error) {
	if t.fastR != nil {
		n, ap, err := t.fastR.ReadFromUDPAddrPort(buf)
		return n, unmap(ap), err
	}
	n, a, err := t.conn.ReadFrom(buf)
	if err != nil {
		return n, netip.AddrPort{}, err
	}
	var ap netip.AddrPort
	if ua, ok := a.(*net.UDPAddr); ok {
		ap = ua.AddrPort()
	} else if ap, err = netip.ParseAddrPort(a.String()); err != nil {
		return 0, ap, fmt.Errorf("krpc: source address %q: %w", a, err)
	}
	return n, unmap(ap), nil
}

func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func (t *Transport) isClosed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closed
}

// serveQuery decodes and answers one query, reusing q, reply and out.
func (t *Transport) serveQuery(q, reply *Msg, pkt []byte, src netip.AddrPort, verdict Admission, out []byte) []byte {
	if err := t.limits.Unmarshal(pkt, q); err != nil {
		if de := fieldFault(err); de != nil && q.Y == KindQuery {
			// Well-formed query with a bad argument: BEP 5 protocol error.
			t.stats.queriesReceived.Add(1)
			reply.reset()
			reply.T, reply.Y, reply.V = q.T, KindError, t.version
			reply.E = &Error{Code: CodeProtocol, Msg: "invalid argument " + de.Field + ": " + de.Reason}
			return t.sendReply(reply, src, len(pkt), verdict, out)
		}
		t.stats.malformed.Add(1)
		t.log.Debug().Err(err).Stringer("src", src).Msg("malformed packet")
		return out
	}
	if q.Y != KindQuery {
		// Not a query after all (the pre-check matched inside a value):
		// handled as a reply, decoded again since q is done with.
		t.handleReply(pkt, src)
		return out
	}
	t.stats.queriesReceived.Add(1)
	if t.handler == nil {
		t.stats.noHandler.Add(1)
		return out
	}
	q.Admission = verdict
	reply.reset()
	reply.T, reply.Y, reply.V = q.T, KindReply, t.version
	if !t.handler.ServeKRPC(reply, q, src) {
		return out
	}
	return t.sendReply(reply, src, len(pkt), verdict, out)
}

// allowReply takes a send token for a reply to a query with verdict.
// With admission on, a reply to a source without a record must leave at
// least half the bucket, which stays for those with one (AdmittedKnown).
func (t *Transport) allowReply(verdict Admission) bool {
	if t.admit != nil && verdict != AdmittedKnown && t.lim.Tokens()-1 < float64(t.lim.Burst())/2 {
		return false
	}
	return t.lim.Allow()
}

// sendReply encodes reply into out, trims it to the amplification cap of
// a query of qlen bytes, and sends it if the caps allow. It returns the
// buffer for reuse.
func (t *Transport) sendReply(reply *Msg, src netip.AddrPort, qlen int, verdict Admission, out []byte) []byte {
	b, err := reply.AppendBinary(out[:0])
	if err != nil {
		t.log.Error().Err(err).Str("q", reply.Q).Msg("handler produced a reply that does not encode")
		return out
	}
	if t.maxAmp > 0 {
		limit := int(t.maxAmp * float64(qlen))
		if len(b) > limit {
			var ok bool
			if b, ok = trimReply(reply, limit, b); !ok {
				t.stats.amplification.Add(1)
				return b
			}
			t.stats.trimmed.Add(1)
		}
	}
	if t.prefix != nil && !t.prefix.allow(src.Addr(), len(b), time.Now()) {
		t.stats.prefixCap.Add(1)
		return b
	}
	if t.lim != nil && !t.allowReply(verdict) {
		t.stats.rateLimited.Add(1)
		return b
	}
	if t.write(b, src) {
		if reply.Y == KindError {
			t.stats.errorsSent.Add(1)
		} else {
			t.stats.repliesSent.Add(1)
		}
	}
	return b
}

// handleReply decodes a reply or error and completes the matching query.
// The packet is first decoded in place, which allocates nothing, so that
// junk and replies nobody waits for cost no garbage; only a reply that
// matches an outstanding query is copied and decoded into a message of
// its own, since its callback may keep it.
func (t *Transport) handleReply(pkt []byte, src netip.AddrPort) {
	if err := t.limits.Unmarshal(pkt, &t.scratch); err != nil && !usableReply(&t.scratch, err) {
		t.stats.malformed.Add(1)
		t.log.Debug().Err(err).Stringer("src", src).Msg("malformed packet")
		return
	}
	c, r := t.match(&t.scratch, src)
	if c == nil {
		return
	}
	own := make([]byte, len(pkt))
	copy(own, pkt)
	m := new(Msg)
	if err := t.limits.Unmarshal(own, m); err != nil && !usableReply(m, err) {
		t.stats.malformed.Add(1) // unreachable: the same bytes decoded above
		return
	}
	r.Msg = m
	var err error
	if m.Y == KindError {
		t.stats.errorsReceived.Add(1)
		err = fmt.Errorf("krpc: %s to %v: %w", c.method, src, m.Err())
	} else {
		t.stats.repliesReceived.Add(1)
	}
	t.finish(c, r, err) // does nothing if c ended since match
}

// usableReply reports whether a reply that failed to decode with err is
// used all the same: one whose only fault is a nodes or nodes6 list cut
// short (its length not a multiple of the entry size), which the decoder
// has kept the whole entries of. Some nodes on the DHT send such lists;
// dropping the reply would make a node that answers look silent.
func usableReply(m *Msg, err error) bool {
	de := fieldFault(err)
	return de != nil && !de.more && m.Y == KindReply && (de.Field == "r.nodes" || de.Field == "r.nodes6")
}

// match finds the outstanding query a decoded reply or error from src
// answers, and returns it with the Response so far (no Msg yet), taken
// under the lock that resends also hold. It counts the packet as dropped,
// and returns nil, if there is none.
func (t *Transport) match(m *Msg, src netip.AddrPort) (*call, Response) {
	if m.Y == KindQuery {
		// A query the pre-check missed: impossible, since every query
		// holds "1:y1:q"; dropped rather than answered from a copy.
		t.stats.malformed.Add(1)
		return nil, Response{}
	}
	if len(m.T) != tidLen {
		t.stats.unknownTx.Add(1)
		return nil, Response{}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.pending[binary.BigEndian.Uint32(m.T)]
	switch {
	case c == nil:
		t.stats.unknownTx.Add(1)
		return nil, Response{}
	case c.addr != src:
		t.stats.wrongAddr.Add(1)
		t.log.Debug().Stringer("src", src).Stringer("want", c.addr).Msg("reply from the wrong address")
		return nil, Response{}
	}
	r := Response{From: src, RTT: time.Since(c.sentAt), Attempts: c.attempts}
	if t.adapt && c.attempts == 1 {
		t.sampleRTT(r.RTT)
	}
	return c, r
}

// Close stops the transport: it closes the socket, ends every outstanding
// query with ErrClosed, and returns once Serve and every callback the
// transport started have returned. It is safe to call more than once and
// from several goroutines; every call returns after the shutdown is
// complete. It must not be called from a Callback or a Handler.
func (t *Transport) Close() error {
	t.closeOnce.Do(func() { t.closeErr = t.shutdown() })
	return t.closeErr
}

func (t *Transport) shutdown() error {
	t.mu.Lock()
	t.closed = true
	serving := t.serving
	calls := make([]*call, 0, len(t.pending))
	for _, c := range t.pending {
		calls = append(calls, c)
	}
	t.mu.Unlock()

	err := t.conn.Close()
	for _, c := range calls {
		t.finish(c, Response{Attempts: c.attempts}, fmt.Errorf("krpc: %s to %v: %w", c.method, c.addr, ErrClosed))
	}
	if serving {
		<-t.served
	}
	t.wg.Wait()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("krpc: close: %w", err)
	}
	return nil
}
