package krpc

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"
)

// ErrTimeout is returned, wrapped with the method and address, when a query
// gets no reply within its attempts. The wrapped error reports Timeout() ==
// true, as net.Error timeouts do.
var ErrTimeout error = timeoutError{}

type timeoutError struct{}

func (timeoutError) Error() string { return "krpc: query timed out" }
func (timeoutError) Timeout() bool { return true }

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
	// group that Close waits on, so no callback outlives Close. A context
	// that cannot be cancelled (Done is nil) needs no hook: the crawler
	// sends all its queries so, and the hook cost an allocation each.
	if ctx.Done() != nil {
		c.stopCtx = context.AfterFunc(ctx, func() {
			if !t.enter() {
				return // closing: shutdown ends the call
			}
			defer t.wg.Done()
			if t.finish(c, Response{}, fmt.Errorf("krpc: %s to %v: %w", c.method, c.addr, context.Cause(ctx))) {
				t.stats.cancelled.Add(1)
			}
		})
	}
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
	if t.closed || t.pending[c.tid] != c {
		// Finished while waiting for the limiter, or the transport is
		// closing: shutdown has read the attempts it reports.
		t.mu.Unlock()
		return
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
