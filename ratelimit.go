package lightdht

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/lightdht/lightdht/krpc"
)

// ipLimiter is a token bucket per source IP in a fixed-size table, so its
// memory does not grow with the number of sources. Each IP has two
// candidate slots (two-choice hashing) and a slot remembers whose bucket
// it holds, so an IP shares no bucket with another: when both slots are
// taken by other IPs, the one that has been quieter (more tokens) is
// evicted, and a quiet source loses little by starting over. A new
// source's bucket starts half full, so that its first queries count as
// heavy (see heavyShare): the full burst is for sources that have been quiet for
// a while. Safe for concurrent use.
type ipLimiter struct {
	rate  float64 // tokens per second
	burst float64
	seed  maphash.Seed

	mu    sync.Mutex
	slots []ipBucket
}

type ipBucket struct {
	ip     [16]byte
	tokens float64
	last   int64 // Unix nanoseconds of the last update; 0 = unused
}

const ipLimiterSlots = 1 << 16 // 2 MiB of buckets

func newIPLimiter(rate float64, burst int) *ipLimiter {
	return &ipLimiter{rate: rate, burst: float64(burst), seed: maphash.MakeSeed(), slots: make([]ipBucket, ipLimiterSlots)}
}

// bucket returns ip's bucket, refilled up to t, claiming a slot for it if
// it has none. l.mu must be held.
func (l *ipLimiter) bucket(ip netip.Addr, t int64) *ipBucket {
	a := ip.Unmap().As16()
	h := maphash.Bytes(l.seed, a[:])
	b1, b2 := &l.slots[h&(ipLimiterSlots-1)], &l.slots[(h>>32)&(ipLimiterSlots-1)]
	var b *ipBucket
	switch {
	case b1.last != 0 && b1.ip == a:
		b = b1
	case b2.last != 0 && b2.ip == a:
		b = b2
	default:
		// Claim the slot whose owner has more tokens now: an unused slot
		// counts as full.
		b = b1
		if l.level(b2, t) > l.level(b1, t) {
			b = b2
		}
		*b = ipBucket{ip: a, tokens: l.burst / 2, last: t}
		return b
	}
	b.tokens = l.level(b, t)
	b.last = t
	return b
}

// level is b's token count at time t.
func (l *ipLimiter) level(b *ipBucket, t int64) float64 {
	if b.last == 0 {
		return l.burst
	}
	if dt := float64(t-b.last) / 1e9; dt > 0 {
		return min(l.burst, b.tokens+dt*l.rate)
	}
	return b.tokens
}

// take takes one token from ip's bucket at time now, and returns the
// tokens left (what was there, if ok is false).
func (l *ipLimiter) take(ip netip.Addr, now time.Time) (ok bool, left float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucket(ip, now.UnixNano())
	if b.tokens < 1 {
		return false, b.tokens
	}
	b.tokens--
	return true, b.tokens
}

// heavyShare is the share of the node's send rate that heavy sources may
// use together: those whose bucket is below half its burst, having sent
// much more than PerIPRate lately (new sources among them). The rest stays for the others, so that
// a flood spread over many sources, each within its per-IP limit, cannot
// crowd out the queries of ordinary nodes.
const heavyShare = 0.5

// admitter is a node's krpc.Config.Admit: the per-IP limit, then the
// heavy sources' shared cap, then the sources with a record first.
type admitter struct {
	ips   *ipLimiter    // nil: no per-IP limit
	heavy *rate.Limiter // nil: no shared cap (no send rate)
	known *knownAddrs   // addresses that have answered the node or shown a valid token; nil without a send cap, where it would change nothing
	now   func() time.Time
	drops func() // counts a refused query
}

// verdict is admit in the form krpc.Config.Admit takes. A source that has
// answered the node's queries lately is AdmittedKnown: it skips the heavy
// sources' shared cap (it is still held to its per-IP limit) and its
// replies come first when the send cap is short.
func (a *admitter) verdict(src netip.AddrPort) krpc.Admission {
	if a.ips == nil && a.known == nil {
		return krpc.Admitted // no limits: nothing to read the clock for
	}
	now := a.now()
	known := a.known != nil && a.known.has(src, now)
	switch ok, flooding := a.admitAt(src, now, known); {
	case !ok:
		return krpc.Refused
	case flooding:
		return krpc.AdmittedHeavy
	case known:
		return krpc.AdmittedKnown
	}
	return krpc.Admitted
}

// admit takes a token for src. ok reports that its query is to be
// answered; flooding, that src has used up its per-IP budget with it: such
// a source does not enter the routing table (a node that floods us is no
// good contact, and its fresh IDs would set full buckets pinging).
func (a *admitter) admit(src netip.AddrPort) (ok, flooding bool) {
	return a.admitAt(src, a.now(), false)
}

// admitAt is admit at time now, for a source that is known or not.
func (a *admitter) admitAt(src netip.AddrPort, now time.Time, known bool) (ok, flooding bool) {
	if a.ips == nil {
		return true, false
	}
	ok, left := a.ips.take(src.Addr(), now)
	if ok && !known && left < a.ips.burst/2 && a.heavy != nil {
		ok = a.heavy.AllowN(now, 1)
	}
	if !ok {
		a.drops()
	}
	return ok, left < 1
}

// knownFor is how long an address that answered one of the node's queries
// counts as known: BEP 5's "good" node has answered within 15 minutes.
const knownFor = 15 * time.Minute

// knownAddrs remembers the addresses (IP and port) that have answered the
// node's queries, in a fixed table so that its memory does not grow with
// the number of nodes: each address has two candidate slots, and a new
// one takes the slot whose answer is older. A node forgotten that way
// counts as unknown until it answers again. Only an answer to a query the
// node sent puts an address here; a flood of queries cannot. Safe for
// concurrent use.
type knownAddrs struct {
	seed maphash.Seed

	mu    sync.Mutex
	slots []knownSlot
}

type knownSlot struct {
	ip   [16]byte
	port uint16
	at   int64 // Unix nanoseconds of the latest answer; 0 = unused
}

const knownSlots = 1 << 16 // 2 MiB, as the per-IP limiter

func newKnownAddrs() *knownAddrs {
	return &knownAddrs{seed: maphash.MakeSeed(), slots: make([]knownSlot, knownSlots)}
}

func (k *knownAddrs) candidates(ip [16]byte) (*knownSlot, *knownSlot) {
	h := maphash.Bytes(k.seed, ip[:])
	return &k.slots[h&(knownSlots-1)], &k.slots[(h>>32)&(knownSlots-1)]
}

// add records that a answered at now.
func (k *knownAddrs) add(a netip.AddrPort, now time.Time) {
	ip, t := a.Addr().Unmap().As16(), now.UnixNano()
	k.mu.Lock()
	defer k.mu.Unlock()
	s1, s2 := k.candidates(ip)
	for _, s := range [2]*knownSlot{s1, s2} {
		if s.at != 0 && s.ip == ip && s.port == a.Port() {
			s.at = max(s.at, t)
			return
		}
	}
	if s2.at < s1.at { // the older answer gives way
		s1 = s2
	}
	*s1 = knownSlot{ip: ip, port: a.Port(), at: t}
}

// has reports whether a answered within knownFor of now.
func (k *knownAddrs) has(a netip.AddrPort, now time.Time) bool {
	ip := a.Addr().Unmap().As16()
	k.mu.Lock()
	defer k.mu.Unlock()
	s1, s2 := k.candidates(ip)
	for _, s := range [2]*knownSlot{s1, s2} {
		if s.at != 0 && s.ip == ip && s.port == a.Port() {
			return now.UnixNano()-s.at < int64(knownFor)
		}
	}
	return false
}
