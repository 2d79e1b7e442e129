package peerstore

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"

	"github.com/lightdht/lightdht/krpc"
)

// Defaults used for zero fields of [Config].
const (
	DefaultTTL                 = 30 * time.Minute
	DefaultMaxInfohashes       = 50_000
	DefaultMaxPeersPerInfohash = 2_000
)

// maxPeersLimit bounds Config.MaxPeersPerInfohash so that peer indexes fit
// in an int32.
const maxPeersLimit = math.MaxInt32

// ErrConfig is returned (wrapped) by [New] for an invalid [Config].
var ErrConfig = errors.New("peerstore: invalid config")

// Config configures a [Store]. The zero value gives the defaults.
type Config struct {
	// Now returns the current time. nil means time.Now. Tests pass a
	// stepped fake clock.
	Now func() time.Time

	// TTL is how long a peer stays after its most recent announce. 0
	// means DefaultTTL (30 minutes). Negative is an error.
	TTL time.Duration

	// MaxInfohashes caps the number of infohashes held. 0 means
	// DefaultMaxInfohashes (50,000). When the store is full, a new
	// infohash evicts the one whose most recent announce is oldest.
	// Negative is an error.
	MaxInfohashes int

	// MaxPeersPerInfohash caps the number of peers held for each
	// infohash, both address families together. 0 means
	// DefaultMaxPeersPerInfohash (2,000). When an infohash is full, a new
	// peer replaces the peer whose most recent announce is oldest.
	// Negative, or more than 2^31-1, is an error.
	MaxPeersPerInfohash int
}

// Family selects IPv4 or IPv6 peers.
type Family uint8

// The address families. BEP 32: a get_peers received over IPv4 is answered
// with IPv4 peers, one received over IPv6 with IPv6 peers.
const (
	IPv4 Family = iota // IPv4 peers (compact form: 6 bytes)
	IPv6               // IPv6 peers (compact form: 18 bytes)
)

// FamilyOf returns the family of a: IPv4 for IPv4 and IPv4-mapped IPv6
// addresses, IPv6 for all others (including the invalid zero Addr).
func FamilyOf(a netip.Addr) Family {
	if a.Is4() || a.Is4In6() {
		return IPv4
	}
	return IPv6
}

// String returns "IPv4" or "IPv6".
func (f Family) String() string {
	switch f {
	case IPv4:
		return "IPv4"
	case IPv6:
		return "IPv6"
	}
	return fmt.Sprintf("Family(%d)", uint8(f))
}

// peerKey identifies a peer. IPv4 addresses are stored in IPv4-mapped form;
// since IPv4-mapped input is unmapped first, the family of a key follows
// from its address.
type peerKey struct {
	ip   [16]byte
	port uint16
}

func (k peerKey) addrPort() netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom16(k.ip).Unmap(), k.port)
}

// entry is one stored peer: 40 bytes and no pointers.
type entry struct {
	key   peerKey
	seed  bool
	mark  uint8     // == family.gen: already taken by the current sample
	bloom [2]uint16 // BEP 33 bit indexes of key.ip, computed at announce
	at    int64     // time of the most recent announce (see Store.clock)
	// prev and next link the entries of a family in announce order
	// (oldest first); -1 ends the list.
	prev, next int32
}

// family holds the peers of one address family of one infohash: a dense
// slice for sampling and an intrusive list in announce order for expiry
// and eviction.
type family struct {
	peers          []entry
	oldest, newest int32 // -1 when empty
	seeds          int   // how many of peers are seeds
	gen            uint8 // sample generation, see entry.mark
}

func (f *family) unlink(i int32) {
	e := &f.peers[i]
	if e.prev >= 0 {
		f.peers[e.prev].next = e.next
	} else {
		f.oldest = e.next
	}
	if e.next >= 0 {
		f.peers[e.next].prev = e.prev
	} else {
		f.newest = e.prev
	}
}

func (f *family) pushNewest(i int32) {
	e := &f.peers[i]
	e.prev, e.next = f.newest, -1
	if f.newest >= 0 {
		f.peers[f.newest].next = i
	} else {
		f.oldest = i
	}
	f.newest = i
}

// swarm is everything stored for one infohash.
type swarm struct {
	ih    krpc.ID
	index map[peerKey]int32 // key -> index in fam[familyOfKey(key)].peers
	fam   [2]family
	last  int64 // time of the most recent announce, any family
	// prev and next link all swarms in order of most recent announce,
	// oldest first.
	prev, next *swarm
}

func newSwarm(ih krpc.ID) *swarm {
	return &swarm{
		ih:    ih,
		index: make(map[peerKey]int32),
		fam:   [2]family{{oldest: -1, newest: -1}, {oldest: -1, newest: -1}},
	}
}

func (sw *swarm) len() int { return len(sw.fam[IPv4].peers) + len(sw.fam[IPv6].peers) }

func familyOfKey(k peerKey) Family {
	return FamilyOf(netip.AddrFrom16(k.ip))
}

// remove deletes entry i of family f, moving the last entry into its slot.
func (sw *swarm) remove(f Family, i int32) {
	fm := &sw.fam[f]
	fm.unlink(i)
	delete(sw.index, fm.peers[i].key)
	if fm.peers[i].seed {
		fm.seeds--
	}
	last := int32(len(fm.peers) - 1)
	if i != last {
		fm.peers[i] = fm.peers[last]
		e := &fm.peers[i]
		if e.prev >= 0 {
			fm.peers[e.prev].next = i
		} else {
			fm.oldest = i
		}
		if e.next >= 0 {
			fm.peers[e.next].prev = i
		} else {
			fm.newest = i
		}
		sw.index[e.key] = i
	}
	fm.peers[last] = entry{}
	fm.peers = fm.peers[:last]
}

// prune removes the peers announced at or before cutoff and returns how
// many it removed. Each family's list is in announce order and times never
// decrease, so only list fronts are examined.
func (sw *swarm) prune(cutoff int64) int {
	n := 0
	for f := range sw.fam {
		fm := &sw.fam[f]
		for fm.oldest >= 0 && fm.peers[fm.oldest].at <= cutoff {
			sw.remove(Family(f), fm.oldest)
			n++
		}
	}
	if n > 0 {
		sw.shrink()
	}
	return n
}

// minShrinkCap is the capacity below which peer slices are not shrunk.
const minShrinkCap = 64

// shrink reallocates peer slices that are less than a quarter full, and
// then the index map too (Go maps never shrink), so a swarm that once was
// large and has mostly expired gives the memory back. The copying is paid
// for by the removals that emptied the slice.
func (sw *swarm) shrink() {
	shrunk := false
	for f := range sw.fam {
		fm := &sw.fam[f]
		if c := cap(fm.peers); c > minShrinkCap && len(fm.peers) < c/4 {
			fm.peers = append(make([]entry, 0, 2*len(fm.peers)), fm.peers...)
			shrunk = true
		}
	}
	if !shrunk {
		return
	}
	index := make(map[peerKey]int32, sw.len())
	for f := range sw.fam {
		for i := range sw.fam[f].peers {
			index[sw.fam[f].peers[i].key] = int32(i)
		}
	}
	sw.index = index
}

// evictOldest removes the peer whose most recent announce is oldest. Ties
// between the families go against IPv4.
func (sw *swarm) evictOldest() {
	f4, f6 := &sw.fam[IPv4], &sw.fam[IPv6]
	switch {
	case f4.oldest < 0:
		sw.remove(IPv6, f6.oldest)
	case f6.oldest < 0 || f4.peers[f4.oldest].at <= f6.peers[f6.oldest].at:
		sw.remove(IPv4, f4.oldest)
	default:
		sw.remove(IPv6, f6.oldest)
	}
}

// Store records announced peers per infohash. Create one with [New]. A
// Store is safe for concurrent use; all methods take one mutex.
type Store struct {
	now      func() time.Time
	epoch    time.Time
	ttl      int64
	maxIH    int
	maxPeers int

	mu             sync.Mutex
	lastNow        int64 // latest clock reading, so time never goes back
	swarms         map[krpc.ID]*swarm
	oldest, newest *swarm // by most recent announce
	npeers         int
}

// New returns an empty Store. It fails, with an error wrapping [ErrConfig],
// when a field of cfg is negative or MaxPeersPerInfohash is too large.
func New(cfg Config) (*Store, error) {
	switch {
	case cfg.TTL < 0:
		return nil, fmt.Errorf("%w: negative TTL %v", ErrConfig, cfg.TTL)
	case cfg.MaxInfohashes < 0:
		return nil, fmt.Errorf("%w: negative MaxInfohashes %d", ErrConfig, cfg.MaxInfohashes)
	case cfg.MaxPeersPerInfohash < 0:
		return nil, fmt.Errorf("%w: negative MaxPeersPerInfohash %d", ErrConfig, cfg.MaxPeersPerInfohash)
	case cfg.MaxPeersPerInfohash > maxPeersLimit:
		return nil, fmt.Errorf("%w: MaxPeersPerInfohash %d above %d", ErrConfig, cfg.MaxPeersPerInfohash, maxPeersLimit)
	}
	s := &Store{
		now:      cfg.Now,
		ttl:      int64(cfg.TTL),
		maxIH:    cfg.MaxInfohashes,
		maxPeers: cfg.MaxPeersPerInfohash,
		swarms:   make(map[krpc.ID]*swarm),
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.ttl == 0 {
		s.ttl = int64(DefaultTTL)
	}
	if s.maxIH == 0 {
		s.maxIH = DefaultMaxInfohashes
	}
	if s.maxPeers == 0 {
		s.maxPeers = DefaultMaxPeersPerInfohash
	}
	s.epoch = s.now()
	return s, nil
}

// clock returns the time since New in nanoseconds, never less than on the
// previous call: a clock that steps back is treated as standing still.
// s.mu must be held.
func (s *Store) clock() int64 {
	t := int64(s.now().Sub(s.epoch))
	if t < s.lastNow {
		t = s.lastNow
	}
	s.lastNow = t
	return t
}

func (s *Store) pushSwarm(sw *swarm) {
	sw.prev, sw.next = s.newest, nil
	if s.newest != nil {
		s.newest.next = sw
	} else {
		s.oldest = sw
	}
	s.newest = sw
}

func (s *Store) unlinkSwarm(sw *swarm) {
	if sw.prev != nil {
		sw.prev.next = sw.next
	} else {
		s.oldest = sw.next
	}
	if sw.next != nil {
		sw.next.prev = sw.prev
	} else {
		s.newest = sw.prev
	}
	sw.prev, sw.next = nil, nil
}

func (s *Store) removeSwarm(sw *swarm) {
	s.unlinkSwarm(sw)
	delete(s.swarms, sw.ih)
	s.npeers -= sw.len()
}

// dropExpiredSwarms removes the swarms whose every peer was announced at or
// before cutoff. They are at the front of the swarm list.
func (s *Store) dropExpiredSwarms(cutoff int64) {
	for s.oldest != nil && s.oldest.last <= cutoff {
		s.removeSwarm(s.oldest)
	}
}

// peerKeyOf validates and normalises a peer address.
func peerKeyOf(peer netip.AddrPort) (peerKey, netip.Addr, bool) {
	a := peer.Addr().Unmap().WithZone("")
	if !a.IsValid() || a.IsUnspecified() || a.IsMulticast() || peer.Port() == 0 {
		return peerKey{}, a, false
	}
	return peerKey{ip: a.As16(), port: peer.Port()}, a, true
}

// Announce records that peer announced infohash ih, as a seed (complete
// copy) or not. A repeated announce of the same peer refreshes its expiry
// and seed flag. An IPv4-mapped address is stored as IPv4 and a zone is
// dropped. Announce returns false, storing nothing, when the address is
// invalid, unspecified or multicast or the port is 0; otherwise true.
//
// Before storing, Announce drops infohashes whose peers have all expired
// and the expired peers of ih. If ih is new and the store is full, the
// infohash with the oldest most recent announce is evicted; if ih is full,
// its peer with the oldest announce is replaced.
//
// Checking the announce token, and the BEP 5 implied_port rule, are the
// caller's job: peer is the address to hand out.
func (s *Store) Announce(ih krpc.ID, peer netip.AddrPort, seed bool) bool {
	key, addr, ok := peerKeyOf(peer)
	if !ok {
		return false
	}
	fam := FamilyOf(addr)
	bloom := bloomIndexes(addr) // SHA-1 outside the lock

	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock()
	cutoff := now - s.ttl
	s.dropExpiredSwarms(cutoff)

	sw := s.swarms[ih]
	if sw == nil {
		if len(s.swarms) >= s.maxIH {
			s.removeSwarm(s.oldest)
		}
		sw = newSwarm(ih)
		s.swarms[ih] = sw
	} else {
		s.npeers -= sw.prune(cutoff)
		s.unlinkSwarm(sw)
	}
	s.pushSwarm(sw)
	sw.last = now

	fm := &sw.fam[fam]
	if i, ok := sw.index[key]; ok {
		e := &fm.peers[i]
		if e.seed != seed {
			if seed {
				fm.seeds++
			} else {
				fm.seeds--
			}
		}
		e.seed, e.at = seed, now
		fm.unlink(i)
		fm.pushNewest(i)
		return true
	}
	if sw.len() >= s.maxPeers {
		sw.evictOldest()
		s.npeers--
	}
	i := int32(len(fm.peers))
	fm.peers = append(fm.peers, entry{key: key, seed: seed, bloom: bloom, at: now})
	fm.pushNewest(i)
	if seed {
		fm.seeds++
	}
	sw.index[key] = i
	s.npeers++
	return true
}

// Peers returns up to max live peers of family fam that announced ih,
// without seeds when noSeed is set (BEP 33 noseed=1). When more peers
// qualify, it returns a uniformly random subset of max of them, different
// from call to call. The result holds no duplicates; its order is
// unspecified. It is nil when there are none, max <= 0 or fam is neither
// IPv4 nor IPv6.
//
// The cost is O(max) when at most half the qualifying peers are asked for
// and at least half of the family's peers qualify (the usual case: few
// seeds, or noSeed unset), and one pass over the family's peers otherwise.
//
// A get_peers reply must fit in one UDP packet, so max should be chosen
// accordingly: about 50 for IPv4 and fewer for IPv6.
func (s *Store) Peers(ih krpc.ID, fam Family, max int, noSeed bool) []netip.AddrPort {
	if max <= 0 || fam > IPv6 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sw := s.live(ih)
	if sw == nil {
		return nil
	}
	fm := &sw.fam[fam]
	n := fm.matching(noSeed)
	if n == 0 {
		return nil
	}
	dst := fm.sample(make([]netip.AddrPort, 0, min(max, n)), max, noSeed)
	if len(dst) == 0 {
		return nil
	}
	return dst
}

// AppendPeers is like [Store.Peers] but appends the peers to dst and
// returns the extended slice. It does not allocate when dst has room for
// max more peers.
func (s *Store) AppendPeers(dst []netip.AddrPort, ih krpc.ID, fam Family, max int, noSeed bool) []netip.AddrPort {
	if max <= 0 || fam > IPv6 {
		return dst
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sw := s.live(ih)
	if sw == nil {
		return dst
	}
	return sw.fam[fam].sample(dst, max, noSeed)
}

// live returns the swarm of ih with its expired peers dropped, or nil if
// it has none left. Since the clock never goes back and each family's list
// is in announce order, every peer left is live. s.mu must be held.
func (s *Store) live(ih krpc.ID) *swarm {
	cutoff := s.clock() - s.ttl
	sw := s.swarms[ih]
	if sw == nil {
		return nil
	}
	s.npeers -= sw.prune(cutoff)
	if sw.len() == 0 {
		s.removeSwarm(sw)
		return nil
	}
	return sw
}

// matching returns how many peers of f qualify: all, or the non-seeds.
func (f *family) matching(noSeed bool) int {
	if noSeed {
		return len(f.peers) - f.seeds
	}
	return len(f.peers)
}

// sample appends to dst a uniformly random subset of min(k, m) of the m
// qualifying peers of f (all peers, or only non-seeds when noSeed). All
// peers of f must be live (see Store.live). Three strategies, by cost:
//
//   - m <= k: one pass appending every qualifying peer.
//   - k <= m/2 and m >= n/2 (n peers in all; the usual case): draw random
//     slots, skipping non-qualifying and already taken ones (marked with
//     the generation number f.gen), until k are taken. Each draw succeeds
//     with probability at least 1/4, so about 4k draws at most, whatever n.
//   - otherwise: reservoir sampling (Algorithm R) in one pass over f, one
//     random number per qualifying peer after the first k.
func (f *family) sample(dst []netip.AddrPort, k int, noSeed bool) []netip.AddrPort {
	n := len(f.peers)
	m := f.matching(noSeed)
	switch {
	case m == 0 || k <= 0:
		return dst
	case m <= k:
		for i := range f.peers {
			if e := &f.peers[i]; !(noSeed && e.seed) {
				dst = append(dst, e.key.addrPort())
			}
		}
		return dst
	case 2*k <= m && 2*m >= n:
		if f.gen++; f.gen == 0 { // wrapped: forget the old marks
			for i := range f.peers {
				f.peers[i].mark = 0
			}
			f.gen = 1
		}
		for taken := 0; taken < k; {
			e := &f.peers[rand.IntN(n)]
			if e.mark == f.gen || noSeed && e.seed {
				continue
			}
			e.mark = f.gen
			dst = append(dst, e.key.addrPort())
			taken++
		}
		return dst
	}
	base, seen := len(dst), 0
	for i := range f.peers {
		e := &f.peers[i]
		if noSeed && e.seed {
			continue
		}
		if seen < k {
			dst = append(dst, e.key.addrPort())
		} else if j := rand.IntN(seen + 1); j < k {
			dst[base+j] = e.key.addrPort()
		}
		seen++
	}
	return dst
}

// Scrape returns the BEP 33 Bloom filters of the live peers of ih, both
// address families: seeds (BFsd) holds the addresses of seeds and peers
// (BFpe) those of the others. Filters hash addresses only, so peers that
// share an address count once. Both are empty if ih is unknown.
func (s *Store) Scrape(ih krpc.ID) (seeds, peers Bloom) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sw := s.live(ih)
	if sw == nil {
		return
	}
	for f := range sw.fam {
		for i := range sw.fam[f].peers {
			e := &sw.fam[f].peers[i]
			switch {
			case e.seed:
				seeds.set(e.bloom)
			default:
				peers.set(e.bloom)
			}
		}
	}
	return seeds, peers
}

// Len returns the number of infohashes and of peers (both families) held.
// They may include expired entries not yet dropped; call [Store.Expire]
// first for live counts.
func (s *Store) Len() (infohashes, peers int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.swarms), s.npeers
}

// Expire drops every expired peer and every infohash left without peers.
// It walks all infohashes; Announce and the lookups already drop expired
// entries lazily, so calling Expire is optional (useful before [Store.Len]
// or on a slow timer to return memory sooner).
func (s *Store) Expire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	cutoff := s.clock() - s.ttl
	s.dropExpiredSwarms(cutoff)
	for _, sw := range s.swarms {
		s.npeers -= sw.prune(cutoff)
		if sw.len() == 0 {
			s.removeSwarm(sw)
		}
	}
}

// SampleInfohashes appends to dst a uniform random sample of up to max of
// the infohashes the store holds peers for, and returns it with the number
// of infohashes held (BEP 51's samples and num). It walks every infohash,
// so callers answering sample_infohashes should cache the result for the
// interval they advertise.
func (s *Store) SampleInfohashes(dst []krpc.ID, max int) ([]krpc.ID, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	base := len(dst)
	seen := 0
	for ih := range s.swarms {
		seen++
		switch {
		case max <= 0:
		case seen <= max:
			dst = append(dst, ih)
		default:
			// Reservoir sampling: keep ih with probability max/seen.
			if j := rand.IntN(seen); j < max {
				dst[base+j] = ih
			}
		}
	}
	return dst, len(s.swarms)
}
