package tokens

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"github.com/lightdht/lightdht/internal/clocktest"
	"io"
	"net/netip"
	"sync"
	"testing"
	"testing/iotest"
	"time"
)

// fakeClock is the stepped clock the tests pass as Config.Now.
type fakeClock = clocktest.Clock

func newFakeClock() *fakeClock { return clocktest.New(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)) }

// countingReader is a deterministic, distinct-valued secret source.
type countingReader struct {
	mu sync.Mutex
	n  uint64
}

func (r *countingReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := range p {
		r.n++
		p[k] = byte(r.n ^ r.n>>8 ^ r.n>>16)
	}
	return len(p), nil
}

// flakyReader serves ok bytes from an underlying reader, then fails.
type flakyReader struct {
	mu  sync.Mutex
	r   io.Reader
	ok  int
	err error
}

func (f *flakyReader) Read(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ok <= 0 {
		return 0, f.err
	}
	if len(p) > f.ok {
		p = p[:f.ok]
	}
	n, err := f.r.Read(p)
	f.ok -= n
	return n, err
}

var (
	ip4       = netip.MustParseAddr("192.0.2.7")
	ip4Mapped = netip.MustParseAddr("::ffff:192.0.2.7")
	ip4Other  = netip.MustParseAddr("192.0.2.8")
	ip6       = netip.MustParseAddr("2001:db8::1")
	ip6Other  = netip.MustParseAddr("2001:db8::2")
)

func newTestIssuer(t testing.TB, clk *fakeClock) *Issuer {
	t.Helper()
	iss, err := New(Config{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return iss
}

// TestLifetime issues a token and checks it after a given total delay,
// reached in the given steps (each step calls Valid, driving rotation).
func TestLifetime(t *testing.T) {
	tests := []struct {
		name  string
		issue time.Duration   // when the token is issued, after New
		steps []time.Duration // further steps, Valid checked after each
		want  []bool          // expected Valid after each step
	}{
		{"immediately", 0, []time.Duration{0}, []bool{true}},
		{"4m59s same secret", 0, []time.Duration{4*time.Minute + 59*time.Second}, []bool{true}},
		{"5m previous secret", 0, []time.Duration{5 * time.Minute}, []bool{true}},
		{"9m59s previous secret", 0, []time.Duration{9*time.Minute + 59*time.Second}, []bool{true}},
		{"10m two rotations", 0, []time.Duration{10 * time.Minute}, []bool{false}},
		{"stepwise to 10m",
			0,
			[]time.Duration{time.Minute, 4 * time.Minute, 4*time.Minute + 59*time.Second, time.Second, time.Hour},
			[]bool{true, true, true, false, false}},
		{"long pause", 0, []time.Duration{time.Hour}, []bool{false}},
		{"pause of 15m", 0, []time.Duration{15 * time.Minute}, []bool{false}},
		{"issued late in period lives at least 5m",
			4*time.Minute + 59*time.Second,
			[]time.Duration{5 * time.Minute, time.Second},
			[]bool{true, false}},
		{"issued after long pause",
			time.Hour + 30*time.Second,
			[]time.Duration{0, 4 * time.Minute, 5 * time.Minute, 30 * time.Second},
			[]bool{true, true, true, false}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := newFakeClock()
			iss := newTestIssuer(t, clk)
			clk.Step(tc.issue)
			tok := iss.Token(ip4)
			var total time.Duration
			for k, d := range tc.steps {
				clk.Step(d)
				total += d
				if got := iss.Valid(tok, ip4); got != tc.want[k] {
					t.Fatalf("step %d (%v after issue): Valid = %v, want %v", k, total, got, tc.want[k])
				}
			}
		})
	}
}

// TestAppendDrivesRotation checks that rotation also happens through Append,
// and that the grid stays aligned however sparse the calls are.
func TestAppendDrivesRotation(t *testing.T) {
	clk := newFakeClock()
	iss := newTestIssuer(t, clk)
	tok := iss.Token(ip4)
	clk.Step(7 * time.Minute)
	if bytes.Equal(iss.Token(ip4), tok) {
		t.Fatal("token did not change after one rotation")
	}
	// Period boundaries are at 5m, 10m, ...; 10m is two periods after
	// issue even though the last call was at 7m.
	clk.Step(3 * time.Minute)
	if iss.Valid(tok, ip4) {
		t.Fatal("token valid two periods after issue")
	}
}

func TestCustomRotation(t *testing.T) {
	clk := newFakeClock()
	iss, err := New(Config{Now: clk.Now, Rotation: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	tok := iss.Token(ip6)
	clk.Step(time.Minute + 59*time.Second)
	if !iss.Valid(tok, ip6) {
		t.Fatal("token invalid within two periods")
	}
	clk.Step(time.Second)
	if iss.Valid(tok, ip6) {
		t.Fatal("token valid after two periods")
	}
}

func TestClockBackwards(t *testing.T) {
	clk := newFakeClock()
	iss := newTestIssuer(t, clk)
	tok := iss.Token(ip4)
	clk.Step(-time.Hour)
	if !iss.Valid(tok, ip4) {
		t.Fatal("token invalid after clock went backwards")
	}
	// Once the clock is back past the boundaries, rotation resumes.
	clk.Step(time.Hour + 10*time.Minute)
	if iss.Valid(tok, ip4) {
		t.Fatal("token still valid after clock recovered")
	}
}

func TestAddresses(t *testing.T) {
	clk := newFakeClock()
	iss := newTestIssuer(t, clk)
	tests := []struct {
		name    string
		issueTo netip.Addr
		checkAt netip.Addr
		want    bool
	}{
		{"IPv4", ip4, ip4, true},
		{"IPv4 other", ip4, ip4Other, false},
		{"IPv4 then mapped", ip4, ip4Mapped, true},
		{"mapped then IPv4", ip4Mapped, ip4, true},
		{"IPv6", ip6, ip6, true},
		{"IPv6 other", ip6, ip6Other, false},
		{"IPv6 zone ignored", netip.MustParseAddr("fe80::1%eth0"), netip.MustParseAddr("fe80::1"), true},
		{"IPv6 zones differ", netip.MustParseAddr("fe80::1%eth0"), netip.MustParseAddr("fe80::1%eth1"), true},
		{"IPv4 vs IPv6 unrelated", ip4, ip6, false},
		{"IPv4-compatible is not IPv4", ip4, netip.MustParseAddr("::192.0.2.7"), false},
		{"port is not part of token",
			netip.MustParseAddrPort("192.0.2.7:6881").Addr(),
			netip.MustParseAddrPort("192.0.2.7:51413").Addr(), true},
		{"invalid issue, invalid check", netip.Addr{}, netip.Addr{}, false},
		{"invalid issue, :: check", netip.Addr{}, netip.IPv6Unspecified(), false},
		{"invalid issue, 0.0.0.0 check", netip.Addr{}, netip.IPv4Unspecified(), false},
		{"valid issue, invalid check", ip4, netip.Addr{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok := iss.Token(tc.issueTo)
			if len(tok) != Len {
				t.Fatalf("len(token) = %d, want %d", len(tok), Len)
			}
			if got := iss.Valid(tok, tc.checkAt); got != tc.want {
				t.Fatalf("Valid(Token(%v), %v) = %v, want %v", tc.issueTo, tc.checkAt, got, tc.want)
			}
		})
	}
}

func TestInvalidAddrDeterministic(t *testing.T) {
	clk := newFakeClock()
	iss := newTestIssuer(t, clk)
	a, b := iss.Token(netip.Addr{}), iss.Token(netip.Addr{})
	if !bytes.Equal(a, b) {
		t.Fatalf("tokens for invalid address differ within a period: %x %x", a, b)
	}
	if bytes.Equal(a, iss.Token(netip.IPv6Unspecified())) {
		t.Fatal("invalid address shares the token of ::")
	}
}

func TestMalformedTokens(t *testing.T) {
	clk := newFakeClock()
	iss := newTestIssuer(t, clk)
	tok := iss.Token(ip4)
	tests := []struct {
		name string
		tok  []byte
	}{
		{"nil", nil},
		{"empty", []byte{}},
		{"short", tok[:Len-1]},
		{"long", append(append([]byte{}, tok...), 0)},
		{"doubled", append(append([]byte{}, tok...), tok...)},
		{"zeros", make([]byte, Len)},
	}
	for bit := 0; bit < 8*Len; bit++ {
		f := append([]byte{}, tok...)
		f[bit/8] ^= 1 << (bit % 8)
		tests = append(tests, struct {
			name string
			tok  []byte
		}{fmt.Sprintf("flip bit %d", bit), f})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if iss.Valid(tc.tok, ip4) {
				t.Fatalf("Valid(%x) = true", tc.tok)
			}
		})
	}
	if !iss.Valid(tok, ip4) {
		t.Fatal("original token no longer valid")
	}
}

func TestIssuersDiffer(t *testing.T) {
	clk := newFakeClock()
	a, b := newTestIssuer(t, clk), newTestIssuer(t, clk)
	ta, tb := a.Token(ip4), b.Token(ip4)
	if bytes.Equal(ta, tb) {
		t.Fatalf("two issuers gave the same token %x", ta)
	}
	if b.Valid(ta, ip4) || a.Valid(tb, ip4) {
		t.Fatal("token accepted by the wrong issuer")
	}
}

func TestDeterministicRand(t *testing.T) {
	clk := newFakeClock()
	mk := func() *Issuer {
		iss, err := New(Config{Now: clk.Now, Rand: &countingReader{}})
		if err != nil {
			t.Fatal(err)
		}
		return iss
	}
	a, b := mk(), mk()
	if !bytes.Equal(a.Token(ip6), b.Token(ip6)) {
		t.Fatal("same Rand stream gave different tokens")
	}
	// Short reads must be tolerated.
	c, err := New(Config{Now: clk.Now, Rand: iotest.OneByteReader(&countingReader{})})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Token(ip6), c.Token(ip6)) {
		t.Fatal("short reads changed the secret")
	}
}

func TestNewErrors(t *testing.T) {
	if _, err := New(Config{Rotation: -time.Second}); !errors.Is(err, ErrNegativeRotation) {
		t.Fatalf("negative rotation: err = %v, want ErrNegativeRotation", err)
	}
	boom := errors.New("boom")
	for _, ok := range []int{0, 1, SecretLen, 2*SecretLen - 1} {
		r := &flakyReader{r: &countingReader{}, ok: ok, err: boom}
		if _, err := New(Config{Rand: r}); !errors.Is(err, boom) {
			t.Fatalf("reader failing after %d bytes: err = %v, want %v", ok, err, boom)
		}
	}
	if _, err := New(Config{Rand: iotest.ErrReader(io.EOF)}); err == nil {
		t.Fatal("reader at EOF: New succeeded")
	}
}

func TestZeroConfig(t *testing.T) {
	iss, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if tok := iss.Token(ip4); !iss.Valid(tok, ip4) {
		t.Fatal("zero Config: token invalid")
	}
	if iss.rotation != DefaultRotation {
		t.Fatalf("rotation = %v, want %v", iss.rotation, DefaultRotation)
	}
}

// TestRandFailureAfterNew checks the documented fallback: rotation goes on
// with derived secrets, old tokens expire on schedule, new tokens work.
func TestRandFailureAfterNew(t *testing.T) {
	clk := newFakeClock()
	r := &flakyReader{r: &countingReader{}, ok: 2 * SecretLen, err: errors.New("boom")}
	iss, err := New(Config{Now: clk.Now, Rand: r})
	if err != nil {
		t.Fatal(err)
	}
	t0 := iss.Token(ip4)

	clk.Step(5 * time.Minute) // one rotation, read fails
	t1 := iss.Token(ip4)
	if got := iss.RandFailures(); got != 1 {
		t.Fatalf("RandFailures = %d, want 1", got)
	}
	if bytes.Equal(t0, t1) {
		t.Fatal("secret did not change on failed rotation")
	}
	if !iss.Valid(t0, ip4) || !iss.Valid(t1, ip4) {
		t.Fatal("current or previous token invalid")
	}

	clk.Step(5 * time.Minute)
	t2 := iss.Token(ip4)
	if iss.Valid(t0, ip4) {
		t.Fatal("token from two rotations ago still valid")
	}
	if !iss.Valid(t1, ip4) || !iss.Valid(t2, ip4) {
		t.Fatal("current or previous token invalid")
	}

	clk.Step(time.Hour) // long pause: both secrets derived afresh
	t3 := iss.Token(ip4)
	if iss.Valid(t1, ip4) || iss.Valid(t2, ip4) {
		t.Fatal("token survived a long pause")
	}
	if !iss.Valid(t3, ip4) {
		t.Fatal("new token invalid")
	}
	if got := iss.RandFailures(); got != 4 {
		t.Fatalf("RandFailures = %d, want 4", got)
	}
	// Derived secrets must differ from each other.
	iss.mu.Lock()
	same := iss.cur == iss.prev
	iss.mu.Unlock()
	if same {
		t.Fatal("derived current and previous secrets are equal")
	}
}

func TestAppend(t *testing.T) {
	clk := newFakeClock()
	iss := newTestIssuer(t, clk)
	prefix := []byte("5:token8:")
	buf := make([]byte, len(prefix), 64)
	copy(buf, prefix)
	out := iss.Append(buf, ip4)
	if !bytes.Equal(out[:len(prefix)], prefix) {
		t.Fatal("Append clobbered dst")
	}
	if &out[0] != &buf[0] {
		t.Fatal("Append reallocated despite capacity")
	}
	if !bytes.Equal(out[len(prefix):], iss.Token(ip4)) {
		t.Fatal("Append and Token disagree")
	}
	if got := iss.Append(nil, ip4); !iss.Valid(got, ip4) {
		t.Fatal("Append(nil) token invalid")
	}
}

// TestMACConstruction pins the documented construction so that changes to
// it are deliberate.
func TestMACConstruction(t *testing.T) {
	var secret [SecretLen]byte
	for k := range secret {
		secret[k] = byte(k)
	}
	want := sha256.Sum256(append(append(secret[:], tagIP), ip4Mapped.AsSlice()...))
	if got := mac(&secret, ip4); got != want {
		t.Fatalf("mac = %x, want %x", got, want)
	}
}

func TestAllocs(t *testing.T) {
	clk := newFakeClock()
	iss := newTestIssuer(t, clk)
	buf := make([]byte, 0, Len)
	tok := iss.Token(ip6)
	if n := testing.AllocsPerRun(1000, func() { buf = iss.Append(buf[:0], ip6) }); n != 0 {
		t.Errorf("Append: %v allocs/op, want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() { iss.Valid(tok, ip6) }); n != 0 {
		t.Errorf("Valid: %v allocs/op, want 0", n)
	}
	// Rotation itself must not allocate either.
	if n := testing.AllocsPerRun(100, func() {
		clk.Step(5 * time.Minute)
		buf = iss.Append(buf[:0], ip6)
	}); n != 0 {
		t.Errorf("Append with rotation: %v allocs/op, want 0", n)
	}
}

func TestConcurrent(t *testing.T) {
	clk := newFakeClock()
	iss := newTestIssuer(t, clk)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ip := netip.AddrFrom4([4]byte{10, 0, 0, byte(g)})
			buf := make([]byte, 0, Len)
			for k := range 2000 {
				if g == 0 && k%100 == 0 {
					clk.Step(time.Minute)
				}
				t1 := clk.Now()
				buf = iss.Append(buf[:0], ip)
				ok := iss.Valid(buf, ip)
				// If less than one period passed between issue and
				// check, at most one rotation happened in between.
				if !ok && clk.Now().Sub(t1) < DefaultRotation {
					t.Errorf("goroutine %d: fresh token invalid", g)
					return
				}
				if iss.Valid(buf, ip6) {
					t.Errorf("goroutine %d: token valid for other IP", g)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func FuzzValid(f *testing.F) {
	f.Add([]byte{}, []byte{192, 0, 2, 7})
	f.Add(make([]byte, Len), make([]byte, 16))
	clk := newFakeClock()
	iss := newTestIssuer(f, clk)
	f.Fuzz(func(t *testing.T, tok, ipb []byte) {
		ip, _ := netip.AddrFromSlice(ipb)
		// The clock never moves, so apart from a 2^-64 chance of hitting
		// the previous secret's token, only the current token is valid.
		want := ip.IsValid() && bytes.Equal(tok, iss.Token(ip))
		if got := iss.Valid(tok, ip); got != want {
			t.Fatalf("Valid(%x, %v) = %v, want %v", tok, ip, got, want)
		}
		if ip.IsValid() && !iss.Valid(iss.Token(ip), ip) {
			t.Fatalf("fresh token for %v invalid", ip)
		}
	})
}

func BenchmarkAppend(b *testing.B) {
	iss, err := New(Config{})
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, Len)
	b.ReportAllocs()
	for b.Loop() {
		buf = iss.Append(buf[:0], ip4)
	}
}

func BenchmarkValid(b *testing.B) {
	iss, err := New(Config{})
	if err != nil {
		b.Fatal(err)
	}
	tok := iss.Token(ip6)
	b.ReportAllocs()
	for b.Loop() {
		if !iss.Valid(tok, ip6) {
			b.Fatal("invalid")
		}
	}
}

func BenchmarkValidParallel(b *testing.B) {
	iss, err := New(Config{})
	if err != nil {
		b.Fatal(err)
	}
	tok := iss.Token(ip6)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if !iss.Valid(tok, ip6) {
				b.Error("invalid")
				return
			}
		}
	})
}
