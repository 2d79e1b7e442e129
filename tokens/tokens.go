package tokens

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"time"
)

// Len is the length of a token in bytes.
//
// Eight bytes keep get_peers replies small (the bencoded field
// "5:token8:" plus the value is 17 bytes) while making blind guessing
// hopeless: an attacker spoofing an address never sees the reply, so it
// must guess, and with two secrets accepted each guess succeeds with
// probability 2^-63. Even at a million guesses per second for a whole
// ten-minute acceptance window, far beyond any per-IP rate limit, the chance
// of success is about 6.5e-11.
const Len = 8

// DefaultRotation is the secret rotation period used when
// Config.Rotation is zero, as prescribed by BEP 5.
const DefaultRotation = 5 * time.Minute

// SecretLen is the size in bytes of each secret drawn from Config.Rand.
const SecretLen = 32

// ErrNegativeRotation is returned (wrapped) by New when Config.Rotation is
// negative.
var ErrNegativeRotation = errors.New("tokens: negative rotation period")

// Config configures an Issuer. The zero value is usable and gives the
// BEP 5 behaviour with the system clock and crypto/rand.
type Config struct {
	// Now is the clock that drives rotation; nil means time.Now.
	Now func() time.Time
	// Rotation is how often the secret changes; 0 means DefaultRotation
	// (5 minutes). Tokens are accepted for between one and two periods.
	// A negative value makes New fail.
	Rotation time.Duration
	// Rand is the source of secrets; nil means crypto/rand.Reader. Tests
	// may inject a deterministic reader. See Issuer for what happens when
	// it fails after New.
	Rand io.Reader
}

// Issuer issues announce tokens and checks them.
//
// An Issuer is safe for concurrent use by multiple goroutines: rotation
// state is guarded by a mutex, and hashing happens outside the lock on
// copies of the secrets.
//
// If the Rand reader fails during a later rotation (crypto/rand never does;
// an injected reader might), the Issuer does not panic and does not stop
// rotating: the new secret is derived with SHA-256 from the secret it
// replaces plus a counter. Derived secrets are as unpredictable to an
// outsider as the secret they came from, and tokens made with the replaced
// secrets still stop validating on schedule. Such failures are counted by
// RandFailures.
type Issuer struct {
	now      func() time.Time
	rotation time.Duration
	rand     io.Reader

	mu       sync.Mutex
	start    time.Time // start of the period of cur
	cur      [SecretLen]byte
	prev     [SecretLen]byte
	scratch  [SecretLen]byte // read buffer for refresh
	derived  uint64          // counter mixed into derived secrets
	failures uint64          // number of failed reads from rand after New
}

// New returns an Issuer configured by cfg. It fails if cfg.Rotation is
// negative or if the initial secrets cannot be read from cfg.Rand.
func New(cfg Config) (*Issuer, error) {
	if cfg.Rotation < 0 {
		return nil, fmt.Errorf("%w: %v", ErrNegativeRotation, cfg.Rotation)
	}
	i := &Issuer{
		now:      cfg.Now,
		rotation: cfg.Rotation,
		rand:     cfg.Rand,
	}
	if i.now == nil {
		i.now = time.Now
	}
	if i.rotation == 0 {
		i.rotation = DefaultRotation
	}
	if i.rand == nil {
		i.rand = rand.Reader
	}
	if _, err := io.ReadFull(i.rand, i.cur[:]); err != nil {
		return nil, fmt.Errorf("tokens: reading secret: %w", err)
	}
	if _, err := io.ReadFull(i.rand, i.prev[:]); err != nil {
		return nil, fmt.Errorf("tokens: reading secret: %w", err)
	}
	i.start = i.now()
	return i, nil
}

// Append appends the token for ip to dst and returns the extended slice.
// It does not allocate when dst has room for Len more bytes.
//
// The port is not part of the token (pass AddrPort.Addr()), the IPv6 zone
// is ignored, and an IPv4 address and its IPv4-mapped IPv6 form get the
// same token.
//
// For the invalid address (netip.Addr{}) Append still appends Len bytes,
// computed from the current secret in a separate domain so that they differ
// from the token of every real address (up to a 2^-64 chance), and Valid
// never accepts any token for the invalid address.
func (i *Issuer) Append(dst []byte, ip netip.Addr) []byte {
	cur, _ := i.secrets()
	sum := mac(&cur, ip)
	return append(dst, sum[:Len]...)
}

// Token returns a new slice holding the token for ip. See Append.
func (i *Issuer) Token(ip netip.Addr) []byte {
	return i.Append(make([]byte, 0, Len), ip)
}

// Valid reports whether tok was issued to ip with the current or the
// previous secret. Comparison is constant-time with respect to the token's
// contents. Valid always returns false for the invalid address and for
// tokens whose length is not Len.
func (i *Issuer) Valid(tok []byte, ip netip.Addr) bool {
	if !ip.IsValid() || len(tok) != Len {
		return false
	}
	cur, prev := i.secrets()
	a := mac(&cur, ip)
	b := mac(&prev, ip)
	// Evaluate both comparisons so timing does not reveal which secret
	// matched.
	return subtle.ConstantTimeCompare(tok, a[:Len])|subtle.ConstantTimeCompare(tok, b[:Len]) == 1
}

// RandFailures returns how many times reading a fresh secret from the
// configured Rand failed after New, forcing a derived secret instead.
// It is always zero with crypto/rand.
func (i *Issuer) RandFailures() uint64 {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.failures
}

// secrets rotates if due and returns copies of the current and previous
// secrets.
func (i *Issuer) secrets() (cur, prev [SecretLen]byte) {
	now := i.now()
	i.mu.Lock()
	defer i.mu.Unlock()
	// A clock that goes backwards (possible with an injected clock or a
	// wall clock without monotonic reading) yields a negative elapsed time;
	// no rotation happens until it catches up.
	if elapsed := now.Sub(i.start); elapsed >= i.rotation {
		periods := elapsed / i.rotation
		if periods == 1 {
			i.prev = i.cur
			i.refresh(&i.cur, &i.prev)
		} else {
			// A long pause: no token from before it may survive.
			old := i.cur
			i.refresh(&i.cur, &old)
			i.refresh(&i.prev, &old)
		}
		// Stay on the grid so every token lives between one and two
		// periods, however sparse the calls are.
		i.start = i.start.Add(periods * i.rotation)
	}
	return i.cur, i.prev
}

// refresh fills dst with a fresh secret, or, if the reader fails, with one
// derived from old. dst and old may be equal. The caller holds i.mu.
func (i *Issuer) refresh(dst, old *[SecretLen]byte) {
	// Read into a field rather than a local array: a local passed to an
	// interface method escapes and would cost an allocation per rotation.
	if _, err := io.ReadFull(i.rand, i.scratch[:]); err == nil {
		*dst = i.scratch
		i.scratch = [SecretLen]byte{}
		return
	}
	i.failures++
	i.derived++
	var buf [len(deriveLabel) + SecretLen + 8]byte
	n := copy(buf[:], deriveLabel)
	n += copy(buf[n:], old[:])
	for k := range 8 {
		buf[n+k] = byte(i.derived >> (8 * k))
	}
	*dst = sha256.Sum256(buf[:])
}

const deriveLabel = "lightdht tokens: derived secret\x00"

// Domain tags for the MAC input.
const (
	tagInvalid = 0
	tagIP      = 1
)

// mac computes SHA-256(secret || tag || ip16) over a stack buffer. The input
// is 49 bytes, which fits in a single SHA-256 block.
func mac(secret *[SecretLen]byte, ip netip.Addr) [sha256.Size]byte {
	var buf [SecretLen + 1 + 16]byte
	copy(buf[:SecretLen], secret[:])
	if ip.IsValid() {
		buf[SecretLen] = tagIP
		// As16 yields the IPv4-mapped form for IPv4, so a.b.c.d and
		// ::ffff:a.b.c.d agree; the zone is not included.
		a := ip.Unmap().As16()
		copy(buf[SecretLen+1:], a[:])
	} else {
		buf[SecretLen] = tagInvalid
	}
	return sha256.Sum256(buf[:])
}
