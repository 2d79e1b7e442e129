package krpc

import (
	"errors"
	"fmt"
	"strconv"
)

// MarshalBinary encodes m as a bencoded KRPC packet; it implements
// encoding.BinaryMarshaler.
func (m *Msg) MarshalBinary() ([]byte, error) { return m.AppendBinary(make([]byte, 0, 256)) }

// AppendBinary appends the bencoding of m to b; it implements
// encoding.BinaryAppender and allocates nothing when b has room.
//
// Dictionary keys are written in sorted order as bencode requires, zero IDs
// and empty fields are left out, and only the section that matches Y is
// written (A for queries, R for replies, E for errors). It fails on a
// message that cannot be valid: no or unknown Y, a query without a method,
// an error without E, a node list with an address of the wrong family, or a
// raw value that is not well-formed bencode. On failure b is returned
// unchanged.
func (m *Msg) AppendBinary(b []byte) ([]byte, error) {
	orig := b
	out, err := m.append(b)
	if err != nil {
		return orig, err
	}
	return out, nil
}

func (m *Msg) append(b []byte) ([]byte, error) {
	var err error
	switch m.Y {
	case KindQuery:
		if m.Q == "" {
			return b, errors.New("krpc: encode: query without a method")
		}
	case KindReply:
	case KindError:
		if m.E == nil {
			return b, errors.New("krpc: encode: error message without E")
		}
	default:
		return b, fmt.Errorf("krpc: encode: unknown message kind %q", m.Y)
	}
	b = append(b, 'd')
	if m.Y == KindQuery {
		b = appendKey(b, "a")
		if b, err = m.A.append(b); err != nil {
			return b, err
		}
	}
	if m.Y == KindError {
		b = appendKey(b, "e")
		b = append(b, 'l')
		b = appendInt(b, int64(m.E.Code))
		b = appendString(b, m.E.Msg)
		b = append(b, 'e')
	}
	if m.IP.IsValid() {
		b = appendKey(b, "ip")
		b = appendCompactPeerString(b, m)
	}
	if m.Y == KindQuery {
		b = appendKey(b, "q")
		b = appendString(b, m.Q)
	}
	if m.Y == KindReply {
		b = appendKey(b, "r")
		if b, err = m.R.append(b); err != nil {
			return b, err
		}
	}
	if m.RO {
		b = appendKey(b, "ro")
		b = appendInt(b, 1)
	}
	b = appendKey(b, "t")
	b = appendBytes(b, m.T)
	if len(m.V) > 0 {
		b = appendKey(b, "v")
		b = appendBytes(b, m.V)
	}
	b = appendKey(b, "y")
	b = appendString(b, m.Y)
	return append(b, 'e'), nil
}

func appendCompactPeerString(b []byte, m *Msg) []byte {
	n := CompactPeerLen6
	if a := m.IP.Addr(); a.Is4() || a.Is4In6() {
		n = CompactPeerLen4
	}
	b = strconv.AppendInt(b, int64(n), 10)
	b = append(b, ':')
	b, _ = AppendCompactPeer(b, m.IP) // valid: checked by the caller
	return b
}

func (a *Args) append(b []byte) ([]byte, error) {
	b = append(b, 'd')
	if a.CAS != nil {
		b = appendKey(b, "cas")
		b = appendInt(b, *a.CAS)
	}
	if !a.ID.IsZero() {
		b = appendKey(b, "id")
		b = appendBytes(b, a.ID[:])
	}
	if a.ImpliedPort {
		b = appendKey(b, "implied_port")
		b = appendInt(b, 1)
	}
	if !a.InfoHash.IsZero() {
		b = appendKey(b, "info_hash")
		b = appendBytes(b, a.InfoHash[:])
	}
	if a.K != [32]byte{} {
		b = appendKey(b, "k")
		b = appendBytes(b, a.K[:])
	}
	if a.NoSeed {
		b = appendKey(b, "noseed")
		b = appendInt(b, 1)
	}
	if a.Port != 0 {
		if a.Port < 0 || a.Port > 65535 {
			return b, fmt.Errorf("krpc: encode: port %d out of range", a.Port)
		}
		b = appendKey(b, "port")
		b = appendInt(b, int64(a.Port))
	}
	if len(a.Salt) > 0 {
		b = appendKey(b, "salt")
		b = appendBytes(b, a.Salt)
	}
	if a.Scrape {
		b = appendKey(b, "scrape")
		b = appendInt(b, 1)
	}
	if a.Seed {
		b = appendKey(b, "seed")
		b = appendInt(b, 1)
	}
	if a.Seq != nil {
		b = appendKey(b, "seq")
		b = appendInt(b, *a.Seq)
	}
	if a.Sig != [64]byte{} {
		b = appendKey(b, "sig")
		b = appendBytes(b, a.Sig[:])
	}
	if !a.Target.IsZero() {
		b = appendKey(b, "target")
		b = appendBytes(b, a.Target[:])
	}
	if len(a.Token) > 0 {
		b = appendKey(b, "token")
		b = appendBytes(b, a.Token)
	}
	if len(a.V) > 0 {
		if err := ValidBencode(a.V); err != nil {
			return b, fmt.Errorf("krpc: encode: a.v: %w", err)
		}
		b = appendKey(b, "v")
		b = append(b, a.V...)
	}
	if a.Want != 0 {
		b = appendKey(b, "want")
		b = append(b, 'l')
		if a.Want&WantN4 != 0 {
			b = appendString(b, "n4")
		}
		if a.Want&WantN6 != 0 {
			b = appendString(b, "n6")
		}
		b = append(b, 'e')
	}
	return append(b, 'e'), nil
}

func (r *Return) append(b []byte) ([]byte, error) {
	var err error
	b = append(b, 'd')
	if len(r.BFpe) > 0 {
		if len(r.BFpe) != BloomLen {
			return b, fmt.Errorf("krpc: encode: r.BFpe: want %d bytes, got %d", BloomLen, len(r.BFpe))
		}
		b = appendKey(b, "BFpe")
		b = appendBytes(b, r.BFpe)
	}
	if len(r.BFsd) > 0 {
		if len(r.BFsd) != BloomLen {
			return b, fmt.Errorf("krpc: encode: r.BFsd: want %d bytes, got %d", BloomLen, len(r.BFsd))
		}
		b = appendKey(b, "BFsd")
		b = appendBytes(b, r.BFsd)
	}
	if !r.ID.IsZero() {
		b = appendKey(b, "id")
		b = appendBytes(b, r.ID[:])
	}
	// A BEP 51 reply carries interval, num and samples together, even
	// when some are zero.
	bep51 := r.Interval != 0 || r.Num != 0 || len(r.Samples) > 0
	if bep51 {
		b = appendKey(b, "interval")
		b = appendInt(b, int64(r.Interval))
	}
	if r.K != [32]byte{} {
		b = appendKey(b, "k")
		b = appendBytes(b, r.K[:])
	}
	if len(r.Nodes) > 0 {
		b = appendKey(b, "nodes")
		if b, err = appendNodes(b, r.Nodes, false); err != nil {
			return b, err
		}
	}
	if len(r.Nodes6) > 0 {
		b = appendKey(b, "nodes6")
		if b, err = appendNodes(b, r.Nodes6, true); err != nil {
			return b, err
		}
	}
	if bep51 {
		b = appendKey(b, "num")
		b = appendInt(b, int64(r.Num))
	}
	if bep51 {
		b = appendKey(b, "samples")
		b = strconv.AppendInt(b, int64(len(r.Samples)*IDLen), 10)
		b = append(b, ':')
		for i := range r.Samples {
			b = append(b, r.Samples[i][:]...)
		}
	}
	if r.Seq != nil {
		b = appendKey(b, "seq")
		b = appendInt(b, *r.Seq)
	}
	if r.Sig != [64]byte{} {
		b = appendKey(b, "sig")
		b = appendBytes(b, r.Sig[:])
	}
	if len(r.Token) > 0 {
		b = appendKey(b, "token")
		b = appendBytes(b, r.Token)
	}
	if len(r.V) > 0 {
		if err := ValidBencode(r.V); err != nil {
			return b, fmt.Errorf("krpc: encode: r.v: %w", err)
		}
		b = appendKey(b, "v")
		b = append(b, r.V...)
	}
	if len(r.Values) > 0 {
		b = appendKey(b, "values")
		b = append(b, 'l')
		for _, ap := range r.Values {
			n := CompactPeerLen6
			if a := ap.Addr(); a.Is4() || a.Is4In6() {
				n = CompactPeerLen4
			}
			b = strconv.AppendInt(b, int64(n), 10)
			b = append(b, ':')
			if b, err = AppendCompactPeer(b, ap); err != nil {
				return b, fmt.Errorf("krpc: encode: r.values: %w", err)
			}
		}
		b = append(b, 'e')
	}
	return append(b, 'e'), nil
}

func appendNodes(b []byte, nodes []NodeInfo, v6 bool) ([]byte, error) {
	size := CompactNodeLen4
	if v6 {
		size = CompactNodeLen6
	}
	b = strconv.AppendInt(b, int64(len(nodes)*size), 10)
	b = append(b, ':')
	b, err := AppendCompactNodes(b, nodes, v6)
	if err != nil {
		return b, fmt.Errorf("krpc: encode: %w", err)
	}
	return b, nil
}

func appendKey(b []byte, k string) []byte { return appendString(b, k) }

func appendString(b []byte, s string) []byte {
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, ':')
	return append(b, s...)
}

func appendBytes(b []byte, s []byte) []byte {
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, ':')
	return append(b, s...)
}

func appendInt(b []byte, v int64) []byte {
	b = append(b, 'i')
	b = strconv.AppendInt(b, v, 10)
	return append(b, 'e')
}
