package krpc

import (
	"hash/maphash"
	"net/netip"
	"time"
)

// trimReply shrinks reply until its encoding fits in limit bytes, taking
// entries from the tail of the lists a reply may carry, least useful
// first: peers (values), IPv6 nodes, IPv4 nodes, BEP 51 samples, then the
// BEP 33 Bloom filters. It returns the new encoding (in b's buffer) and
// whether it fits; a reply whose fixed part alone is over the limit (a
// large BEP 44 value, say) does not.
func trimReply(reply *Msg, limit int, b []byte) ([]byte, bool) {
	r := &reply.R
	for len(b) > limit {
		excess := len(b) - limit
		// Take entries off the tail until their encoded bytes cover the
		// excess; the shorter length prefix of the list may leave a few
		// bytes to spare.
		switch {
		case len(r.Values) > 0:
			for excess > 0 && len(r.Values) > 0 {
				v := r.Values[len(r.Values)-1]
				excess -= 2 + 6 // "6:" and the address and port
				if v.Addr().Is6() {
					excess -= 13 // "18:" and 12 more address bytes
				}
				r.Values = r.Values[:len(r.Values)-1]
			}
		case len(r.Nodes6) > 0:
			r.Nodes6 = r.Nodes6[:max(0, len(r.Nodes6)-ceilDiv(excess, IDLen+18))]
		case len(r.Nodes) > 0:
			r.Nodes = r.Nodes[:max(0, len(r.Nodes)-ceilDiv(excess, IDLen+6))]
		case len(r.Samples) > 0:
			r.Samples = r.Samples[:max(0, len(r.Samples)-ceilDiv(excess, IDLen))]
		case len(r.BFsd) > 0 || len(r.BFpe) > 0:
			r.BFsd, r.BFpe = nil, nil
		default:
			return b, false
		}
		var err error
		if b, err = reply.AppendBinary(b[:0]); err != nil {
			return b, false // unreachable: it encoded before, with more
		}
	}
	return b, true
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// prefixBudget is a token bucket of bytes per network prefix (/24 for
// IPv4, /48 for IPv6) in a fixed-size table: prefixes hash to slots, and
// the rare prefixes that share a slot share a bucket, which only makes the
// cap stricter for them. It is used by Serve's goroutine only.
type prefixBudget struct {
	rate, burst float64 // bytes per second; bucket size in bytes
	seed        maphash.Seed
	slots       []byteBucket
}

type byteBucket struct {
	tokens float64
	last   int64 // Unix nanoseconds of the last update; 0 = unused
}

const prefixSlots = 1 << 16

func newPrefixBudget(rate float64, burst int) *prefixBudget {
	return &prefixBudget{rate: rate, burst: float64(burst), seed: maphash.MakeSeed(), slots: make([]byteBucket, prefixSlots)}
}

// allow takes n bytes from the bucket of ip's prefix at time now.
func (p *prefixBudget) allow(ip netip.Addr, n int, now time.Time) bool {
	ip = ip.Unmap()
	a := ip.As16()
	key := a[:6] // an IPv6 /48
	if ip.Is4() {
		key = a[12:15] // an IPv4 /24
	}
	b := &p.slots[maphash.Bytes(p.seed, key)&(prefixSlots-1)]
	t := now.UnixNano()
	if b.last == 0 {
		b.tokens = p.burst
	} else if dt := float64(t-b.last) / 1e9; dt > 0 {
		b.tokens = min(p.burst, b.tokens+dt*p.rate)
	}
	b.last = t
	if b.tokens < float64(n) {
		return false
	}
	b.tokens -= float64(n)
	return true
}
