package krpc

import (
	"fmt"
	"slices"
)

// Default decoding limits.
const (
	DefaultMaxSize     = 1500 // bytes in one packet
	DefaultMaxDepth    = 16   // nested lists and dictionaries, the message itself being depth 1
	DefaultMaxElements = 1024 // bencode values of any kind in one packet
)

// Limits bounds the work and memory that decoding one packet may cost. They
// are checked before anything proportional to the input is allocated: a
// packet over MaxSize is refused before it is read, every string length is
// checked against the bytes left in the packet, and nesting and element
// counts stop the decoder as soon as they are exceeded. The zero value
// gives the defaults.
type Limits struct {
	MaxSize     int // largest packet accepted; 0 means DefaultMaxSize
	MaxDepth    int // deepest nesting of lists and dictionaries; 0 means DefaultMaxDepth
	MaxElements int // most values in one packet; 0 means DefaultMaxElements
}

func (l Limits) withDefaults() Limits {
	if l.MaxSize <= 0 {
		l.MaxSize = DefaultMaxSize
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultMaxDepth
	}
	if l.MaxElements <= 0 {
		l.MaxElements = DefaultMaxElements
	}
	return l
}

// Unmarshal decodes one KRPC packet into m with the default limits. See
// Limits.Unmarshal.
func Unmarshal(data []byte, m *Msg) error { return Limits{}.Unmarshal(data, m) }

// UnmarshalBinary decodes one KRPC packet into m with the default limits;
// it implements encoding.BinaryUnmarshaler. Byte slices in m alias data.
func (m *Msg) UnmarshalBinary(data []byte) error { return Limits{}.Unmarshal(data, m) }

// Unmarshal decodes one KRPC packet into m, which it clears first. Byte
// slices in m alias data, and the node, peer and sample slices of m are
// reused.
//
// Unknown keys are skipped, so messages from newer protocol extensions
// decode. Every error is a *DecodeError; see its documentation for which
// errors still leave a usable envelope in m.
func (l Limits) Unmarshal(data []byte, m *Msg) error {
	l = l.withDefaults()
	m.reset()
	if len(data) > l.MaxSize {
		return &DecodeError{Reason: fmt.Sprintf("packet of %d bytes exceeds the %d-byte limit", len(data), l.MaxSize)}
	}
	d := decoder{b: data, lim: l}
	if err := d.message(m); err != nil {
		return err
	}
	if d.fieldErr != nil {
		return d.fieldErr
	}
	return nil
}

// peekTID returns the transaction ID ("t") of a packet whose top level
// is a dictionary, reading only as far as that key and decoding nothing
// else; ok is false where there is none to be found that way. It is a
// hint, not a decode: the transport uses it to tell a reply some query
// awaits, which it then decodes once into a message of its own, from
// junk, which it decodes in place (Transport.handleReply). The limits
// apply as in Unmarshal.
func (l Limits) peekTID(data []byte) (tid []byte, ok bool) {
	l = l.withDefaults()
	if len(data) > l.MaxSize || len(data) == 0 || data[0] != 'd' {
		return nil, false
	}
	d := decoder{b: data, lim: l}
	if d.open('d', 0) != nil {
		return nil, false
	}
	for {
		if more, err := d.more(); err != nil || !more {
			return nil, false
		}
		k, err := d.key()
		if err != nil {
			return nil, false
		}
		if string(k) == "t" {
			if c, err := d.peek(); err != nil || c < '0' || c > '9' {
				return nil, false
			}
			v, err := d.str()
			return v, err == nil
		}
		if d.skip(1) != nil {
			return nil, false
		}
	}
}

// decoder reads bencode from b. Byte strings it returns alias b.
type decoder struct {
	b        []byte
	pos      int
	elems    int
	lim      Limits
	fieldErr *DecodeError // first field-level fault; decoding goes on past it
}

func (d *decoder) errorf(format string, args ...any) *DecodeError {
	return &DecodeError{Offset: d.pos, Reason: fmt.Sprintf(format, args...)}
}

// badField records the first field-level fault.
func (d *decoder) badField(field, format string, args ...any) {
	if d.fieldErr == nil {
		d.fieldErr = &DecodeError{Offset: d.pos, Field: field, Reason: fmt.Sprintf(format, args...)}
	} else {
		d.fieldErr.more = true
	}
}

func (d *decoder) count() error {
	d.elems++
	if d.elems > d.lim.MaxElements {
		return d.errorf("more than %d values in one packet", d.lim.MaxElements)
	}
	return nil
}

// peek returns the next byte, or an error at the end of the input.
func (d *decoder) peek() (byte, error) {
	if d.pos >= len(d.b) {
		return 0, d.errorf("unexpected end of packet")
	}
	return d.b[d.pos], nil
}

// open consumes the 'd' or 'l' that starts a container at depth.
func (d *decoder) open(c byte, depth int) error {
	if depth > d.lim.MaxDepth {
		return d.errorf("nesting deeper than %d", d.lim.MaxDepth)
	}
	if err := d.count(); err != nil {
		return err
	}
	d.pos++ // the caller peeked c
	return nil
}

// more reports whether the open container has another item, consuming its
// closing 'e' when it has not.
func (d *decoder) more() (bool, error) {
	c, err := d.peek()
	if err != nil {
		return false, err
	}
	if c == 'e' {
		d.pos++
		return false, nil
	}
	return true, nil
}

// str reads a byte string "<len>:<bytes>".
func (d *decoder) str() ([]byte, error) {
	if err := d.count(); err != nil {
		return nil, err
	}
	start := d.pos
	n := 0
	for {
		if d.pos >= len(d.b) {
			return nil, d.errorf("unexpected end of packet in string length")
		}
		c := d.b[d.pos]
		if c == ':' {
			break
		}
		if c < '0' || c > '9' {
			return nil, d.errorf("invalid byte %q in string length", c)
		}
		if d.pos > start && d.b[start] == '0' {
			return nil, d.errorf("string length with a leading zero")
		}
		n = n*10 + int(c-'0')
		if n > len(d.b) {
			return nil, d.errorf("string length exceeds the packet")
		}
		d.pos++
	}
	if d.pos == start {
		return nil, d.errorf("empty string length")
	}
	d.pos++ // ':'
	if n > len(d.b)-d.pos {
		return nil, d.errorf("string of %d bytes but only %d left in the packet", n, len(d.b)-d.pos)
	}
	s := d.b[d.pos : d.pos+n : d.pos+n]
	d.pos += n
	return s, nil
}

// int reads an integer "i<digits>e" that fits in an int64.
func (d *decoder) int() (int64, error) {
	if err := d.count(); err != nil {
		return 0, err
	}
	d.pos++ // the caller peeked 'i'
	neg := false
	if d.pos < len(d.b) && d.b[d.pos] == '-' {
		neg = true
		d.pos++
	}
	start := d.pos
	var v uint64
	for {
		if d.pos >= len(d.b) {
			return 0, d.errorf("unexpected end of packet in integer")
		}
		c := d.b[d.pos]
		if c == 'e' {
			break
		}
		if c < '0' || c > '9' {
			return 0, d.errorf("invalid byte %q in integer", c)
		}
		if d.pos-start >= 19 {
			return 0, d.errorf("integer out of range")
		}
		v = v*10 + uint64(c-'0')
		d.pos++
	}
	digits := d.pos - start
	d.pos++ // 'e'
	switch {
	case digits == 0:
		return 0, d.errorf("integer without digits")
	case digits > 1 && d.b[start] == '0':
		return 0, d.errorf("integer with a leading zero")
	case neg && v == 0:
		return 0, d.errorf("negative zero")
	case !neg && v > 1<<63-1, neg && v > 1<<63:
		return 0, d.errorf("integer out of range")
	}
	if neg {
		return int64(-v), nil // two's complement also covers -1<<63
	}
	return int64(v), nil
}

// skip reads and discards one value at depth, checking its structure.
func (d *decoder) skip(depth int) error {
	c, err := d.peek()
	if err != nil {
		return err
	}
	switch {
	case c == 'i':
		_, err = d.int()
		return err
	case c >= '0' && c <= '9':
		_, err = d.str()
		return err
	case c == 'l':
		if err := d.open(c, depth); err != nil {
			return err
		}
		for {
			more, err := d.more()
			if err != nil || !more {
				return err
			}
			if err := d.skip(depth + 1); err != nil {
				return err
			}
		}
	case c == 'd':
		if err := d.open(c, depth); err != nil {
			return err
		}
		for {
			more, err := d.more()
			if err != nil || !more {
				return err
			}
			if _, err := d.key(); err != nil {
				return err
			}
			if err := d.skip(depth + 1); err != nil {
				return err
			}
		}
	}
	return d.errorf("invalid byte %q at the start of a value", c)
}

// raw reads one value at depth and returns its encoding.
func (d *decoder) raw(depth int) ([]byte, error) {
	start := d.pos
	if err := d.skip(depth); err != nil {
		return nil, err
	}
	return d.b[start:d.pos:d.pos], nil
}

// key reads a dictionary key, which must be a string.
func (d *decoder) key() ([]byte, error) {
	c, err := d.peek()
	if err != nil {
		return nil, err
	}
	if c < '0' || c > '9' {
		return nil, d.errorf("dictionary key is not a string")
	}
	return d.str()
}

// Typed field readers. Each one checks the type of the next value; on a
// mismatch it records a field fault, skips the value and reports ok=false.
// Structural faults are returned as errors.

func (d *decoder) fieldStr(field string, depth int) (s []byte, ok bool, err error) {
	c, err := d.peek()
	if err != nil {
		return nil, false, err
	}
	if c < '0' || c > '9' {
		d.badField(field, "want a string")
		return nil, false, d.skip(depth)
	}
	s, err = d.str()
	return s, err == nil, err
}

func (d *decoder) fieldInt(field string, depth int) (v int64, ok bool, err error) {
	c, err := d.peek()
	if err != nil {
		return 0, false, err
	}
	if c != 'i' {
		d.badField(field, "want an integer")
		return 0, false, d.skip(depth)
	}
	v, err = d.int()
	return v, err == nil, err
}

// fieldFixed reads a string of exactly len(dst) bytes into dst.
func (d *decoder) fieldFixed(dst []byte, field string, depth int) error {
	s, ok, err := d.fieldStr(field, depth)
	if ok {
		if len(s) != len(dst) {
			d.badField(field, "want %d bytes, got %d", len(dst), len(s))
		} else {
			copy(dst, s)
		}
	}
	return err
}

func (d *decoder) fieldBool(field string, depth int) (bool, error) {
	v, _, err := d.fieldInt(field, depth)
	return v != 0, err
}

func (d *decoder) fieldInt64Ptr(field string, depth int) (*int64, error) {
	v, ok, err := d.fieldInt(field, depth)
	if !ok {
		return nil, err
	}
	return &v, nil
}

// dict checks for a dictionary at depth and opens it; ok=false means the
// value had another type and was skipped after recording a field fault.
func (d *decoder) dict(field string, depth int) (ok bool, err error) {
	c, err := d.peek()
	if err != nil {
		return false, err
	}
	if c != 'd' {
		d.badField(field, "want a dictionary")
		return false, d.skip(depth)
	}
	return true, d.open(c, depth)
}

func (d *decoder) list(field string, depth int) (ok bool, err error) {
	c, err := d.peek()
	if err != nil {
		return false, err
	}
	if c != 'l' {
		d.badField(field, "want a list")
		return false, d.skip(depth)
	}
	return true, d.open(c, depth)
}

func (d *decoder) message(m *Msg) error {
	c, err := d.peek()
	if err != nil {
		return err
	}
	if c != 'd' {
		return d.errorf("packet is not a bencoded dictionary")
	}
	if err := d.open(c, 1); err != nil {
		return err
	}
	var hasT, hasA, hasR bool
	for {
		more, err := d.more()
		if err != nil {
			return err
		}
		if !more {
			break
		}
		k, err := d.key()
		if err != nil {
			return err
		}
		switch string(k) {
		case "t":
			c, err := d.peek()
			if err != nil {
				return err
			}
			if c < '0' || c > '9' {
				return d.errorf("transaction ID is not a string")
			}
			if m.T, err = d.str(); err != nil {
				return err
			}
			hasT = true
		case "y":
			c, err := d.peek()
			if err != nil {
				return err
			}
			if c < '0' || c > '9' {
				return d.errorf("message kind is not a string")
			}
			y, err := d.str()
			if err != nil {
				return err
			}
			switch string(y) {
			case KindQuery:
				m.Y = KindQuery
			case KindReply:
				m.Y = KindReply
			case KindError:
				m.Y = KindError
			default:
				return d.errorf("unknown message kind %q", y)
			}
		case "q":
			c, err := d.peek()
			if err != nil {
				return err
			}
			if c < '0' || c > '9' {
				return d.errorf("method is not a string")
			}
			q, err := d.str()
			if err != nil {
				return err
			}
			m.Q = internMethod(q)
		case "a":
			hasA = true
			if err := d.args(&m.A); err != nil {
				return err
			}
		case "r":
			hasR = true
			if err := d.ret(&m.R); err != nil {
				return err
			}
		case "e":
			if err := d.errList(m); err != nil {
				return err
			}
		case "v":
			if m.V, _, err = d.fieldStr("v", 2); err != nil {
				return err
			}
		case "ip":
			s, ok, err := d.fieldStr("ip", 2)
			if err != nil {
				return err
			}
			if ok {
				if ap, perr := ParseCompactPeer(s); perr != nil {
					d.badField("ip", "%v", perr)
				} else {
					m.IP = ap
				}
			}
		case "ro":
			if m.RO, err = d.fieldBool("ro", 2); err != nil {
				return err
			}
		default:
			if err := d.skip(2); err != nil {
				return err
			}
		}
	}
	if d.pos != len(d.b) {
		return d.errorf("%d bytes after the message", len(d.b)-d.pos)
	}
	switch {
	case !hasT:
		return d.errorf("no transaction ID")
	case m.Y == "":
		return d.errorf("no message kind")
	case m.Y == KindQuery && m.Q == "":
		return d.errorf("query without a method")
	case m.Y == KindQuery && !hasA:
		d.badField("a", "query without arguments")
	case m.Y == KindReply && !hasR:
		d.badField("r", "reply without values")
	case m.Y == KindError && m.E == nil:
		d.badField("e", "error message without an error list")
	}
	return nil
}

func (d *decoder) args(a *Args) error {
	const depth = 3
	ok, err := d.dict("a", 2)
	if !ok {
		return err
	}
	for {
		more, err := d.more()
		if err != nil || !more {
			return err
		}
		k, err := d.key()
		if err != nil {
			return err
		}
		switch string(k) {
		case "id":
			err = d.fieldFixed(a.ID[:], "a.id", depth)
		case "target":
			err = d.fieldFixed(a.Target[:], "a.target", depth)
		case "info_hash":
			err = d.fieldFixed(a.InfoHash[:], "a.info_hash", depth)
		case "token":
			a.Token, _, err = d.fieldStr("a.token", depth)
		case "port":
			var v int64
			var ok bool
			v, ok, err = d.fieldInt("a.port", depth)
			if ok {
				if v < 0 || v > 65535 {
					d.badField("a.port", "port %d out of range", v)
				} else {
					a.Port = int(v)
				}
			}
		case "implied_port":
			a.ImpliedPort, err = d.fieldBool("a.implied_port", depth)
		case "want":
			err = d.want(a)
		case "noseed":
			a.NoSeed, err = d.fieldBool("a.noseed", depth)
		case "scrape":
			a.Scrape, err = d.fieldBool("a.scrape", depth)
		case "seed":
			a.Seed, err = d.fieldBool("a.seed", depth)
		case "v":
			a.V, err = d.raw(depth)
		case "k":
			err = d.fieldFixed(a.K[:], "a.k", depth)
		case "sig":
			err = d.fieldFixed(a.Sig[:], "a.sig", depth)
		case "seq":
			a.Seq, err = d.fieldInt64Ptr("a.seq", depth)
		case "cas":
			a.CAS, err = d.fieldInt64Ptr("a.cas", depth)
		case "salt":
			a.Salt, _, err = d.fieldStr("a.salt", depth)
		default:
			err = d.skip(depth)
		}
		if err != nil {
			return err
		}
	}
}

func (d *decoder) want(a *Args) error {
	ok, err := d.list("a.want", 3)
	if !ok {
		return err
	}
	for {
		more, err := d.more()
		if err != nil || !more {
			return err
		}
		s, ok, err := d.fieldStr("a.want", 4)
		if err != nil {
			return err
		}
		if ok {
			switch string(s) {
			case "n4":
				a.Want |= WantN4
			case "n6":
				a.Want |= WantN6
			}
		}
	}
}

func (d *decoder) ret(r *Return) error {
	const depth = 3
	ok, err := d.dict("r", 2)
	if !ok {
		return err
	}
	for {
		more, err := d.more()
		if err != nil || !more {
			return err
		}
		k, err := d.key()
		if err != nil {
			return err
		}
		switch string(k) {
		case "id":
			err = d.fieldFixed(r.ID[:], "r.id", depth)
		case "nodes":
			r.Nodes, err = d.nodes(r.Nodes, "r.nodes", false)
		case "nodes6":
			r.Nodes6, err = d.nodes(r.Nodes6, "r.nodes6", true)
		case "token":
			r.Token, _, err = d.fieldStr("r.token", depth)
		case "values":
			err = d.values(r)
		case "BFsd":
			r.BFsd, err = d.bloom("r.BFsd")
		case "BFpe":
			r.BFpe, err = d.bloom("r.BFpe")
		case "v":
			r.V, err = d.raw(depth)
		case "k":
			err = d.fieldFixed(r.K[:], "r.k", depth)
		case "sig":
			err = d.fieldFixed(r.Sig[:], "r.sig", depth)
		case "seq":
			r.Seq, err = d.fieldInt64Ptr("r.seq", depth)
		case "samples":
			err = d.samples(r)
		case "num":
			var v int64
			v, _, err = d.fieldInt("r.num", depth)
			r.Num = clampInt(v)
		case "interval":
			var v int64
			v, _, err = d.fieldInt("r.interval", depth)
			r.Interval = clampInt(v)
		default:
			err = d.skip(depth)
		}
		if err != nil {
			return err
		}
	}
}

func clampInt(v int64) int {
	const maxInt = int64(^uint(0) >> 1)
	switch {
	case v > maxInt:
		return int(maxInt)
	case v < -maxInt:
		return int(-maxInt)
	}
	return int(v)
}

func (d *decoder) nodes(dst []NodeInfo, field string, v6 bool) ([]NodeInfo, error) {
	s, ok, err := d.fieldStr(field, 3)
	if !ok {
		return dst, err
	}
	out, perr := ParseCompactNodes(dst, s, v6)
	if perr != nil {
		d.badField(field, "%v", perr)
		// Keep the whole entries before the cut: a reply whose only
		// fault is a list cut short is still used (see usableReply).
		size := CompactNodeLen4
		if v6 {
			size = CompactNodeLen6
		}
		out, _ = ParseCompactNodes(dst, s[:len(s)-len(s)%size], v6)
	}
	return out, nil
}

func (d *decoder) values(r *Return) error {
	ok, err := d.list("r.values", 3)
	if !ok {
		return err
	}
	for {
		more, err := d.more()
		if err != nil || !more {
			return err
		}
		s, ok, err := d.fieldStr("r.values", 4)
		if err != nil {
			return err
		}
		if ok {
			ap, perr := ParseCompactPeer(s)
			if perr != nil {
				d.badField("r.values", "%v", perr)
				continue
			}
			r.Values = append(r.Values, ap)
		}
	}
}

func (d *decoder) bloom(field string) ([]byte, error) {
	s, ok, err := d.fieldStr(field, 3)
	if ok && len(s) != BloomLen {
		d.badField(field, "want %d bytes, got %d", BloomLen, len(s))
		return nil, nil
	}
	return s, err
}

func (d *decoder) samples(r *Return) error {
	s, ok, err := d.fieldStr("r.samples", 3)
	if !ok {
		return err
	}
	if len(s)%IDLen != 0 {
		d.badField("r.samples", "length %d is not a multiple of %d", len(s), IDLen)
		return nil
	}
	r.Samples = slices.Grow(r.Samples, len(s)/IDLen)
	for i := 0; i < len(s); i += IDLen {
		r.Samples = append(r.Samples, ID(s[i:i+IDLen]))
	}
	return nil
}

// errList reads the error list [code, message]. Extra trailing items are
// tolerated; a missing or mistyped code or message is a field fault.
func (d *decoder) errList(m *Msg) error {
	ok, err := d.list("e", 2)
	if !ok {
		return err
	}
	e := &Error{}
	for i := 0; ; i++ {
		more, err := d.more()
		if err != nil {
			return err
		}
		if !more {
			if i < 2 {
				d.badField("e", "want [code, message], got %d items", i)
				return nil
			}
			m.E = e
			return nil
		}
		switch i {
		case 0:
			v, _, err := d.fieldInt("e", 3)
			if err != nil {
				return err
			}
			e.Code = clampInt(v)
		case 1:
			s, _, err := d.fieldStr("e", 3)
			if err != nil {
				return err
			}
			e.Msg = string(s)
		default:
			if err := d.skip(3); err != nil {
				return err
			}
		}
	}
}

// ValidBencode reports whether b holds exactly one well-formed bencode
// value within the default depth and element limits. It is how raw values
// such as BEP 44's "v" are checked before they are sent.
func ValidBencode(b []byte) error {
	d := decoder{b: b, lim: Limits{MaxSize: len(b)}.withDefaults()}
	if err := d.skip(1); err != nil {
		return err
	}
	if d.pos != len(b) {
		return d.errorf("%d bytes after the value", len(b)-d.pos)
	}
	return nil
}
