package krpc

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

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
// Junk and replies nobody waits for cost no garbage: only a reply that
// matches an outstanding query is copied and decoded into a message of
// its own, since its callback may keep it. Which is which is first told
// from the transaction ID alone (awaited), so that such a reply is
// decoded once; any other packet is decoded in place, which allocates
// nothing, and matched or counted from that.
func (t *Transport) handleReply(pkt []byte, src netip.AddrPort) {
	if t.awaited(pkt, src) {
		if m := t.decodeReply(bytes.Clone(pkt), new(Msg), src); m != nil {
			if c, r := t.match(m, src); c != nil {
				t.complete(c, r, m, src)
			}
		}
		return
	}
	if t.decodeReply(pkt, &t.scratch, src) == nil {
		return
	}
	c, r := t.match(&t.scratch, src)
	if c == nil {
		return
	}
	// A match the peek missed: decoded again, into a message of its own.
	// (The same bytes decoded above, so it is not malformed.)
	if m := t.decodeReply(bytes.Clone(pkt), new(Msg), src); m != nil {
		t.complete(c, r, m, src)
	}
}

// decodeReply decodes the reply or error pkt from src into m and returns
// m, or counts the packet as malformed and returns nil.
func (t *Transport) decodeReply(pkt []byte, m *Msg, src netip.AddrPort) *Msg {
	if err := t.limits.Unmarshal(pkt, m); err != nil && !usableReply(m, err) {
		t.stats.malformed.Add(1)
		t.log.Debug().Err(err).Stringer("src", src).Msg("malformed packet")
		return nil
	}
	return m
}

// awaited reports whether pkt from src carries the transaction ID of a
// query outstanding to src (peekTID): most likely its reply.
func (t *Transport) awaited(pkt []byte, src netip.AddrPort) bool {
	tid, ok := t.limits.peekTID(pkt)
	if !ok || len(tid) != tidLen {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.pending[binary.BigEndian.Uint32(tid)]
	return c != nil && c.addr == src
}

// complete hands the decoded reply or error m from src to its call c,
// with the Response match made.
func (t *Transport) complete(c *call, r Response, m *Msg, src netip.AddrPort) {
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
