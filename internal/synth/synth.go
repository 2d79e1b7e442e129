package synth

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lightdht/lightdht/bep42"
	"github.com/lightdht/lightdht/internal/simnet"
	"github.com/lightdht/lightdht/krpc"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultK           = 8                // bucket size, as in BEP 5
	DefaultSampleMax   = 20               // samples per sample_infohashes reply
	DefaultInterval    = 60               // BEP 51 interval in seconds
	DefaultChurnPeriod = 10 * time.Minute // length of a churn epoch
)

// MaxNodes is the largest Config.N + Config.Bogons that New accepts: the
// number of addresses from 127.1.0.0 to 127.255.255.254.
const MaxNodes = 0x7ffffffe - 0x7f010000 + 1

// DefaultVersions is the client version mix used when Config.Versions is
// nil: libtorrent, µTorrent, Transmission, a mainline-style client and
// clients that send no "v". Pass []string{""} for a network without
// versions.
var DefaultVersions = []string{"LT\x01\x02", "LT\x02\x00", "UT\x03\x05", "TR\x04\x00", "ML\x01\x00", ""}

// Config describes a synthetic network. Only N is required; every other
// zero value means "none" or the documented default.
type Config struct {
	// N is the number of simulated DHT nodes, at least 1. Bogon entries
	// come on top of N.
	N int

	// Seed determines everything: IDs, addresses, roles, routing tables,
	// infohash sets, samples, churn and the loss and jitter draws of the
	// underlying simnet. The same Config gives the same network.
	Seed uint64

	// K is the bucket size and the number of nodes in a reply. 0 means 8.
	K int

	// SilentShare is the share of nodes, in [0, 1], that never answer but
	// appear in other nodes' tables (firewalled or gone nodes).
	SilentShare float64

	// BEP42Share is the share of nodes, in [0, 1], whose ID is BEP 42
	// valid for their IP ([bep42.Derive] of a random ID). The other IDs
	// are random (and so, with overwhelming odds, not valid). With the
	// default 127/8 addresses BEP 42 does not apply (loopback is exempt),
	// but the IDs are derived all the same.
	BEP42Share float64

	// BEP51Share is the share of answering nodes, in [0, 1], that support
	// sample_infohashes. The others answer it with error 204, unless
	// they drop unknown methods (DropUnknownShare).
	BEP51Share float64

	// DropUnknownShare is the share of answering nodes, in [0, 1], that
	// do not support BEP 51 and silently drop every query of a method
	// they do not know, sample_infohashes included, instead of answering
	// with error 204 as BEP 5 asks; they answer ping, find_node, get_peers
	// and announce_peer. aria2 1.36 behaves so (seen against its DHT on
	// loopback, project issue 17). BEP51Share + DropUnknownShare must not
	// exceed 1.
	DropUnknownShare float64

	// InfohashesPerNode is the number of infohashes each BEP 51 node
	// holds (its "num"): every BEP 51 node holds exactly this many. It is
	// clamped to InfohashPool when a pool is set.
	InfohashesPerNode int

	// InfohashPool, if positive, makes infohash sets overlap the way
	// popular torrents are seen by many nodes: every infohash is drawn
	// from a pool of this many, a node holding a run of consecutive pool
	// entries starting at a random place. 0 means every infohash of every
	// node is distinct (with overwhelming odds).
	InfohashPool int

	// SampleMax is the most samples a reply carries. 0 means 20, which
	// keeps replies near 750 bytes, well below a 1500-byte MTU; keep
	// SampleMax*20 + 400 below 1500 for realistic packets.
	SampleMax int

	// Interval is the BEP 51 "interval" in seconds that nodes return and
	// enforce in Stats.Violations. 0 means 60 (real libtorrent nodes
	// default to 21600, the BEP 51 maximum); tests use small values.
	Interval int

	// Versions is the mix of client "v" strings; node i takes one of them
	// picked by a hash of Seed and i, and "" means no "v". nil means
	// DefaultVersions. At most 256 entries.
	Versions []string

	// Loss, Latency and Jitter are passed to the simnet network (see
	// simnet.Config); they apply to queries and replies alike. Change
	// them later with Sim().SetConditions.
	Loss    float64
	Latency time.Duration
	Jitter  time.Duration

	// PublicIPs draws node addresses from public-looking IPv4 space
	// (never private, loopback, link-local, CGNAT, multicast, reserved or
	// documentation ranges) instead of 127.1.0.0 upwards. They exist only
	// in memory; no packet is ever sent to them.
	PublicIPs bool

	// Bogons is the number of extra table entries whose addresses are
	// private, loopback, link-local, CGNAT, "this network", benchmarking,
	// multicast or reserved. They appear in routing tables like any node
	// and never answer: a crawler's bogon filter should never query them.
	Bogons int

	// ChurnShare is the share of answering nodes, in [0, 1], that are
	// offline during any churn epoch; which nodes are offline is drawn
	// anew for every epoch of ChurnPeriod (0 means 10 minutes), counted on
	// the clock (fake in a synctest bubble) from New. Bootstrap nodes are
	// exempt. SetOnline overrides this per node in one direction only: a
	// node set offline stays offline.
	ChurnShare  float64
	ChurnPeriod time.Duration

	// MinQueryGap, if positive, makes Stats count RateViolations: queries
	// that reach a node (answering or not) less than MinQueryGap after the
	// previous query to it, to test a crawler's politeness (PROTOCOL.md
	// asks for at most one query per 2 s per IP). It costs 8 bytes per
	// node.
	MinQueryGap time.Duration

	// The fields below make the network as dirty as the live DHT, one
	// pathology each, every one off at its zero value; LiveLike turns
	// them all on, with the figure each comes from. (SilentShare,
	// ChurnShare and DropUnknownShare above are pathologies too.)

	// RTTMedian and RTTSigma give every node a round-trip time of its
	// own, heavy-tailed across nodes rather than one latency for all: a
	// node holds each reply for a time drawn once per node from a
	// log-normal distribution of median RTTMedian and shape RTTSigma
	// (the standard deviation of its logarithm), capped at RTTMax (0: no
	// cap), on top of the network's Latency and Jitter both ways. A
	// node whose hold exceeds a crawler's timeout answers, but too late;
	// Truth gives every node's RTT so that tests can tell. RTTMedian > 0
	// needs Latency > 0, so that the handler runs on a timer's
	// goroutine, which may wait, rather than on the sender's.
	RTTMedian time.Duration
	RTTSigma  float64
	RTTMax    time.Duration

	// RateLimitShare is the share of answering nodes, in [0, 1], that
	// block a source IP the way libtorrent's dos_blocker does
	// (src/kademlia/dos_blocker.cpp: a rate limit of 5 packets/s and a
	// block of 5*60 s): a source whose 50th packet (5/s × 10 s) comes
	// less than 10 s after the first of its window is ignored until 5
	// minutes after that packet; a window that lasts longer starts again.
	// Stats counts RateBans and RateLimited, so that politeness tests can
	// assert that no block was tripped. Each node tracks one source (the
	// last that started a window), where libtorrent tracks 20; it costs
	// 16 bytes per node.
	RateLimitShare float64

	// SybilHosts IPs each carry SybilsPerHost answering nodes, on
	// distinct ports, with IDs of their own: the many IDs behind one IP
	// that Wang and Kangasharju ("Real-World Sybil Attacks in BitTorrent
	// Mainline DHT", Globecom 2012) count in the hundreds of thousands.
	// SybilHosts × SybilsPerHost must not exceed N. Sybil nodes are
	// never silent.
	SybilHosts, SybilsPerHost int

	// SharedIPShare is the share of nodes, in [0, 1], that share their
	// IP with other nodes on other ports, in groups of at most
	// SharedIPGroup (0 means 4): several DHT clients behind one NAT.
	SharedIPShare float64
	SharedIPGroup int

	// RotateShare is the share of answering nodes, in [0, 1], that take
	// a new random ID every RotatePeriod (0 means 10 minutes) counted
	// from New, as clients do that draw a fresh ID at every start; other
	// nodes' tables keep listing the ID they had at first (ListedID).
	RotateShare  float64
	RotatePeriod time.Duration

	// PoisonShare is the share of answering nodes, in [0, 1], that
	// answer find_node, get_peers and sample_infohashes with K fake
	// contacts, each with an ID sharing at least 144 bits with the
	// target (so they look like the best contacts for every target) at
	// a public-looking address where no node lives: the routing-table
	// poisoning reported by bitmagnet users (bitmagnet issue 415: nodes
	// of a hosting network answering with neighbours that do not exist
	// or never reply) and by mldht's author (libtorrent issue 792: IDs
	// spoofed from the lookup's target). Stats counts FakeContacts.
	PoisonShare float64

	// MalformedShare is the share of answering nodes, in [0, 1], whose
	// replies with nodes carry one bad entry after the K good ones, of
	// one kind per node: a nodes string cut short (a partial 27th entry,
	// so its length is not a multiple of 26), an entry with port 0, or
	// an entry with the all-zero ID. Sloppy and hostile implementations
	// send all three; a strict decoder rejects the whole of the first
	// kind. Stats counts MalformedReplies.
	MalformedShare float64
}

// Entry flags.
const (
	flagSilent = 1 << iota
	flagBEP42
	flagBEP51
	flagBogon
	flagBootstrap
	flagDropUnknown
)

// Network is a synthetic DHT of Config.N nodes and Config.Bogons bogon
// entries answering through one simnet handler. Create it with New; its
// methods are safe for concurrent use.
//
// Entries (nodes and bogons) are numbered 0 to N+Bogons-1 in ascending ID
// order; this index is the one of Truth().Nodes, SetOnline, Bucket,
// Infohashes and SampleTimes.
type Network struct {
	cfg   Config
	seed  uint64
	k     int
	vers  [][]byte
	start time.Time
	sim   *simnet.Network

	// Per-entry columns, indexed by entry (ID order).
	ids   []krpc.ID
	ip    []uint32
	port  []uint16
	flags []uint8
	xf    []uint8 // live-like roles (live.go), nil without any
	ver   []uint8
	byIP  []uint64 // ip<<32 | index, sorted

	offline    []atomic.Uint32           // bitset set by SetOnline(i, false)
	over       atomic.Pointer[overrides] // SetID and SetPort; nil until one is called
	overrideMu sync.Mutex                // serialises writers of over
	queries    []atomic.Uint32           // queries received per entry
	lastQ      []atomic.Int64            // time of the last query (ns since start), with MinQueryGap
	limiter    *limiter                  // RateLimitShare's per-node blockers; nil without
	done       chan struct{}             // closed by Close: ends the replies being held
	closeOnce  sync.Once
	boot       []int32 // bootstrap entries

	msgPool sync.Pool

	st      counters
	sampleM sync.Mutex
	samples map[int32][]time.Duration // answered sample_infohashes, since start
}

// counters are the live values behind Stats.
type counters struct {
	packets, unparseable, noSuchNode, nonQuery atomic.Uint64
	byMethod                                   krpc.MethodCounts
	unanswered, replies, errors, dropped       atomic.Uint64
	sampled, violations, rateViolations        atomic.Uint64
	rateBans, rateLimited, fake, malformed     atomic.Uint64
}

// New builds the network described by cfg: it draws every entry, sorts
// them by ID, creates the simnet network and installs the handler. It
// returns an error for an invalid Config.
func New(cfg Config) (*Network, error) {
	if err := check(&cfg); err != nil {
		return nil, err
	}
	sim, err := simnet.New(simnet.Config{
		Seed:    int64(cfg.Seed),
		Latency: cfg.Latency,
		Jitter:  cfg.Jitter,
		Loss:    cfg.Loss,
	})
	if err != nil {
		return nil, fmt.Errorf("synth: %w", err)
	}
	n := &Network{
		cfg:     cfg,
		seed:    cfg.Seed,
		k:       cfg.K,
		start:   time.Now(),
		sim:     sim,
		samples: make(map[int32][]time.Duration),
		done:    make(chan struct{}),
	}
	for _, v := range cfg.Versions {
		n.vers = append(n.vers, []byte(v))
	}
	n.msgPool.New = func() any { return new(krpc.Msg) }
	n.build()
	sim.SetHandler(n.handle)
	return n, nil
}

// check validates cfg and fills in defaults.
func check(cfg *Config) error {
	share := func(name string, v float64) error {
		if math.IsNaN(v) || v < 0 || v > 1 {
			return fmt.Errorf("synth: %s %v outside [0, 1]", name, v)
		}
		return nil
	}
	switch {
	case cfg.N < 1:
		return fmt.Errorf("synth: N %d < 1", cfg.N)
	case cfg.Bogons < 0:
		return fmt.Errorf("synth: negative Bogons %d", cfg.Bogons)
	case cfg.N+cfg.Bogons > MaxNodes:
		return fmt.Errorf("synth: N+Bogons %d > %d", cfg.N+cfg.Bogons, MaxNodes)
	case cfg.K < 0, cfg.SampleMax < 0, cfg.Interval < 0, cfg.InfohashesPerNode < 0,
		cfg.InfohashPool < 0, cfg.ChurnPeriod < 0, cfg.MinQueryGap < 0:
		return errors.New("synth: negative K, SampleMax, Interval, InfohashesPerNode, InfohashPool, ChurnPeriod or MinQueryGap")
	case len(cfg.Versions) > 256:
		return fmt.Errorf("synth: %d Versions > 256", len(cfg.Versions))
	}
	for _, s := range []struct {
		name string
		v    float64
	}{{"SilentShare", cfg.SilentShare}, {"BEP42Share", cfg.BEP42Share},
		{"BEP51Share", cfg.BEP51Share}, {"ChurnShare", cfg.ChurnShare},
		{"DropUnknownShare", cfg.DropUnknownShare}, {"RateLimitShare", cfg.RateLimitShare},
		{"SharedIPShare", cfg.SharedIPShare}, {"RotateShare", cfg.RotateShare},
		{"PoisonShare", cfg.PoisonShare}, {"MalformedShare", cfg.MalformedShare}} {
		if err := share(s.name, s.v); err != nil {
			return err
		}
	}
	if cfg.BEP51Share+cfg.DropUnknownShare > 1 {
		return fmt.Errorf("synth: BEP51Share %v + DropUnknownShare %v > 1", cfg.BEP51Share, cfg.DropUnknownShare)
	}
	if err := checkLive(cfg); err != nil {
		return err
	}
	if cfg.K == 0 {
		cfg.K = DefaultK
	}
	if cfg.SampleMax == 0 {
		cfg.SampleMax = DefaultSampleMax
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.ChurnPeriod == 0 {
		cfg.ChurnPeriod = DefaultChurnPeriod
	}
	if cfg.Versions == nil {
		cfg.Versions = DefaultVersions
	}
	if cfg.InfohashPool > 0 && cfg.InfohashesPerNode > cfg.InfohashPool {
		cfg.InfohashesPerNode = cfg.InfohashPool
	}
	return nil
}

// Hash tags that separate the pseudo-random streams.
const (
	tagIP = iota + 1
	tagPort
	tagRole
	tagVersion
	tagID
	tagBogon
	tagBucket
	tagInfohash
	tagPool
	tagSample
	tagChurn
	tagToken
	tagRTT
	tagLive
	tagShare
	tagRotate
	tagFake
)

// mix is the splitmix64 finalizer, a bijective 64-bit hash.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// hash returns a pseudo-random 64-bit value for (seed, tag, a, b).
func hash(seed, tag, a, b uint64) uint64 {
	return mix(mix(mix(seed+tag*0x9e3779b97f4a7c15)+a) ^ b*0xd1b54a32d192ed03)
}

// unit maps a hash to [0, 1).
func unit(h uint64) float64 { return float64(h>>11) / (1 << 53) }

// hashID returns a pseudo-random ID for (seed, tag, a, b).
func hashID(seed, tag, a, b uint64) krpc.ID {
	var id krpc.ID
	h := hash(seed, tag, a, b)
	binary.BigEndian.PutUint64(id[0:], h)
	h = mix(h + 1)
	binary.BigEndian.PutUint64(id[8:], h)
	h = mix(h + 1)
	binary.BigEndian.PutUint32(id[16:], uint32(h))
	return id
}

// entry is one node or bogon during the build.
type entry struct {
	key   uint64 // first 8 bytes of id, for fast sorting
	id    krpc.ID
	ip    uint32
	port  uint16
	flags uint8
	xf    uint8
	ver   uint8
}

// build draws all entries and fills the columns.
func (n *Network) build() {
	cfg, seed := &n.cfg, n.seed
	total := cfg.N + cfg.Bogons
	es := make([]entry, total)
	for i := range es {
		e := &es[i]
		if i < cfg.N {
			if cfg.PublicIPs {
				e.ip = publicIP(seed, uint64(i), 0)
			} else {
				e.ip = 0x7f010000 + uint32(i)
			}
			h := hash(seed, tagRole, uint64(i), 0)
			if unit(h) < cfg.SilentShare {
				e.flags |= flagSilent
			} else if u := unit(mix(h)); u < cfg.BEP51Share {
				e.flags |= flagBEP51
			} else if u < cfg.BEP51Share+cfg.DropUnknownShare {
				e.flags |= flagDropUnknown
			}
			if unit(mix(h+1)) < cfg.BEP42Share {
				e.flags |= flagBEP42
			}
			e.ver = uint8(hash(seed, tagVersion, uint64(i), 0) % uint64(len(cfg.Versions)))
			e.xf = cfg.liveRoles(seed, uint64(i))
			if e.xf&xSybil != 0 {
				e.flags &^= flagSilent
			}
		} else {
			e.ip = bogonIP(seed, uint64(i), 0, cfg.PublicIPs)
			e.flags = flagBogon
		}
		e.port = portFor(seed, uint64(i))
	}
	// Public and bogon addresses are drawn at random: redraw duplicates.
	for attempt := uint64(1); ; attempt++ {
		dups := duplicateIPs(es)
		if len(dups) == 0 {
			break
		}
		for _, i := range dups {
			if i < cfg.N {
				es[i].ip = publicIP(seed, uint64(i), attempt)
			} else {
				es[i].ip = bogonIP(seed, uint64(i), attempt, cfg.PublicIPs)
			}
		}
	}
	n.shareIPs(es)
	for i := range es {
		e := &es[i]
		base := hashID(seed, tagID, uint64(i), 0)
		if e.flags&flagBEP42 != 0 {
			base = bep42.Derive(addr4(e.ip), base)
		}
		e.id = base
		e.key = binary.BigEndian.Uint64(base[:8])
	}
	cmp := func(a, b entry) int {
		if a.key != b.key {
			if a.key < b.key {
				return -1
			}
			return 1
		}
		return bytes.Compare(a.id[8:], b.id[8:])
	}
	slices.SortFunc(es, cmp)
	// Equal IDs are astronomically unlikely; make them distinct anyway by
	// changing byte 18, which BEP 42 leaves free.
	for fixed := true; fixed; {
		fixed = false
		for i := 1; i < len(es); i++ {
			if es[i].id == es[i-1].id {
				es[i].id[18]++
				fixed = true
			}
		}
		if fixed {
			slices.SortFunc(es, cmp)
		}
	}
	// Recompute BEP 42 validity from the final IDs.
	n.ids = make([]krpc.ID, total)
	n.ip = make([]uint32, total)
	n.port = make([]uint16, total)
	n.flags = make([]uint8, total)
	n.ver = make([]uint8, total)
	n.byIP = make([]uint64, total)
	if cfg.live() {
		n.xf = make([]uint8, total)
	}
	for i := range es {
		e := &es[i]
		n.ids[i], n.ip[i], n.port[i], n.ver[i] = e.id, e.ip, e.port, e.ver
		if n.xf != nil {
			n.xf[i] = e.xf
		}
		f := e.flags &^ flagBEP42
		if bep42.Valid(e.id, addr4(e.ip)) {
			f |= flagBEP42
		}
		n.flags[i] = f
		n.byIP[i] = uint64(e.ip)<<32 | uint64(i)
	}
	es = nil
	slices.Sort(n.byIP)
	n.offline = make([]atomic.Uint32, (total+31)/32)
	n.queries = make([]atomic.Uint32, total)
	if cfg.MinQueryGap > 0 {
		n.lastQ = make([]atomic.Int64, total)
	}
	if cfg.RateLimitShare > 0 {
		n.limiter = newLimiter(total)
	}
	// Bootstrap: the first answering node after each of 8 evenly spaced
	// points of the ID space.
	for b := range 8 {
		for i := b * total / 8; i < total && i < (b+1)*total/8; i++ {
			if n.flags[i]&(flagSilent|flagBogon) == 0 {
				n.flags[i] |= flagBootstrap
				n.boot = append(n.boot, int32(i))
				break
			}
		}
	}
}

// duplicateIPs returns the indexes of entries whose IP an earlier entry
// already has.
func duplicateIPs(es []entry) []int {
	keys := make([]uint64, len(es))
	for i := range es {
		keys[i] = uint64(es[i].ip)<<32 | uint64(i)
	}
	slices.Sort(keys)
	var dups []int
	for j := 1; j < len(keys); j++ {
		if keys[j]>>32 == keys[j-1]>>32 {
			dups = append(dups, int(uint32(keys[j])))
		}
	}
	return dups
}

// addr4 converts a uint32 to an IPv4 address.
func addr4(ip uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(ip >> 24), byte(ip >> 16), byte(ip >> 8), byte(ip)})
}

// portFor returns entry i's UDP port: 6881 for half the entries, a random
// port from 1024 to 65535 for the rest.
func portFor(seed, i uint64) uint16 {
	h := hash(seed, tagPort, i, 0)
	if h&1 == 0 {
		return 6881
	}
	return uint16(1024 + (h>>1)%(65536-1024))
}

// prefix is an IPv4 prefix as a value and a length.
type prefix struct {
	ip   uint32
	bits uint8
}

func (p prefix) contains(ip uint32) bool {
	return ip>>(32-p.bits) == p.ip>>(32-p.bits)
}

// nonPublic lists the IPv4 ranges that are not public unicast space: the
// IANA special-purpose registry (RFC 6890 and successors) plus multicast
// and the reserved 240/4.
var nonPublic = []prefix{
	{0x00000000, 8},  // 0.0.0.0/8 "this network"
	{0x0a000000, 8},  // 10.0.0.0/8 private
	{0x64400000, 10}, // 100.64.0.0/10 CGNAT
	{0x7f000000, 8},  // 127.0.0.0/8 loopback
	{0xa9fe0000, 16}, // 169.254.0.0/16 link-local
	{0xac100000, 12}, // 172.16.0.0/12 private
	{0xc0000000, 24}, // 192.0.0.0/24 IETF protocol assignments
	{0xc0000200, 24}, // 192.0.2.0/24 TEST-NET-1
	{0xc0586300, 24}, // 192.88.99.0/24 6to4 relay
	{0xc0a80000, 16}, // 192.168.0.0/16 private
	{0xc6120000, 15}, // 198.18.0.0/15 benchmarking
	{0xc6336400, 24}, // 198.51.100.0/24 TEST-NET-2
	{0xcb007100, 24}, // 203.0.113.0/24 TEST-NET-3
	{0xe0000000, 4},  // 224.0.0.0/4 multicast
	{0xf0000000, 4},  // 240.0.0.0/4 reserved, broadcast
}

// IsPublic reports whether ip is a public-looking unicast IPv4 address,
// outside every range in the IANA special-purpose registry, multicast and
// 240/4. It is the rule PublicIPs addresses obey and bogon addresses
// break, for tests of a crawler's own bogon filter.
func IsPublic(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.Is4() {
		return false
	}
	b := ip.As4()
	return isPublic4(binary.BigEndian.Uint32(b[:]))
}

func isPublic4(v uint32) bool {
	for _, p := range nonPublic {
		if p.contains(v) {
			return false
		}
	}
	return true
}

// publicIP draws a public-looking address for node i.
func publicIP(seed, i, attempt uint64) uint32 {
	for h := hash(seed, tagIP, i, attempt); ; h = mix(h) {
		if v := uint32(h); isPublic4(v) {
			return v
		}
	}
}

// bogonRanges are where bogon entries live. 127.0.0.0/9 is left out
// because simnet.NewConn4 hands out 127.0.0.2 upwards (the crawler's conn)
// and the default node addresses start at 127.1.0.0; with PublicIPs the
// loopback bogons use 127.128.0.0/9.
var bogonRanges = []prefix{
	{0x0a000000, 8}, {0xac100000, 12}, {0xc0a80000, 16}, {0xa9fe0000, 16},
	{0x64400000, 10}, {0x00000000, 8}, {0xc6120000, 15}, {0xe0000000, 4},
	{0xf0000000, 4},
}

// bogonIP draws a bogon address for entry i.
func bogonIP(seed, i, attempt uint64, loopback bool) uint32 {
	h := hash(seed, tagBogon, i, attempt)
	n := uint64(len(bogonRanges))
	if loopback {
		n++
	}
	r := h % n
	p := prefix{0x7f800000, 9}
	if r < uint64(len(bogonRanges)) {
		p = bogonRanges[r]
	}
	host := uint32(mix(h)) & (1<<(32-p.bits) - 1)
	if host == 0 {
		host = 1
	}
	return p.ip | host
}
