package krpc

import (
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/rs/zerolog"
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
