package krpc

import (
	crand "crypto/rand"
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

// tidLen is the length of the transaction IDs this transport generates.
const tidLen = 4

// ErrClosed is returned for queries that were outstanding when the
// transport closed or that were made after it closed. It satisfies
// errors.Is(err, net.ErrClosed).
var ErrClosed = fmt.Errorf("krpc: transport closed: %w", net.ErrClosed)

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
	// Attempts are read here, under t.mu: once closed is set no attempt
	// is sent, so the count is final.
	type ending struct {
		c        *call
		attempts int
	}
	calls := make([]ending, 0, len(t.pending))
	for _, c := range t.pending {
		calls = append(calls, ending{c, c.attempts})
	}
	t.mu.Unlock()

	err := t.conn.Close()
	for _, e := range calls {
		t.finish(e.c, Response{Attempts: e.attempts}, fmt.Errorf("krpc: %s to %v: %w", e.c.method, e.c.addr, ErrClosed))
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
