package synth

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/lightdht/lightdht/krpc"
)

// Defaults of the live-like fields, applied by New to zero values.
const (
	DefaultSharedIPGroup = 4                // nodes behind one NAT at most
	DefaultRotatePeriod  = 10 * time.Minute // between two IDs of a rotating node
)

// LiveLike returns the Config of an n-node network as dirty as the live
// DHT, with every pathology on, seeded with seed. Each figure is taken
// from a published measurement or a project observation where there is
// one, and says so; where there is none it is a round choice, and says
// that too. Change a field to vary one pathology, or start from a clean
// Config and set one field to see it alone.
func LiveLike(n int, seed uint64) Config {
	return Config{
		N:         n,
		Seed:      seed,
		PublicIPs: true,
		// Bogon contacts in tables: a round 0.1%.
		Bogons: n / 1000,

		// About half of the contacts in nodes lists never answer: NAT'd,
		// firewalled or gone (mldht's author, as quoted in project issue
		// 17). Silent nodes stand in tables like any other.
		SilentShare: 0.5,

		// BEP 42 and BEP 51 support: round choices, not measured here.
		BEP42Share: 0.5,
		BEP51Share: 0.3,
		// Nodes that drop unknown methods without error 204, as aria2
		// 1.36 does (project observation, issue 17): a round 5%.
		DropUnknownShare:  0.05,
		InfohashesPerNode: 15,

		// One-way latency 20 ms, and a per-node hold of median 100 ms
		// with a log-normal tail (σ = 0.8: 1 node in 1,000 above 1.2 s,
		// capped at 5 s): Jimenez, Osmani and Knutsson ("Sub-Second
		// Lookups on a Large-Scale Kademlia-Based Overlay", P2P 2011)
		// find Mainline lookups slowed by a long tail of slow nodes; the
		// parameters are a project choice, not their figures.
		Latency:   20 * time.Millisecond,
		Jitter:    10 * time.Millisecond,
		RTTMedian: 100 * time.Millisecond,
		RTTSigma:  0.8,
		RTTMax:    5 * time.Second,

		// Every node blocks fast sources as libtorrent does: the
		// strictest case for politeness tests.
		RateLimitShare: 1,

		// Churn: 10% of answering nodes away in any 10-minute epoch.
		// Falkner et al. ("Profiling a Million User DHT", IMC 2007) find
		// session times short on average and heavy-tailed; the share is
		// a project choice.
		ChurnShare:  0.1,
		ChurnPeriod: 10 * time.Minute,

		// Many IDs behind one IP: one host of 64 sybils per 10,000
		// nodes (Wang and Kangasharju, Globecom 2012, count about
		// 300,000 sybils in the Mainline DHT), and 10% of nodes behind
		// NATs of up to 4 (a round choice).
		SybilHosts:    max(1, n/10000),
		SybilsPerHost: min(64, max(1, n/100)),
		SharedIPShare: 0.1,
		SharedIPGroup: 4,

		// 2% of nodes draw a new ID every 10 minutes (a round choice).
		RotateShare:  0.02,
		RotatePeriod: 10 * time.Minute,

		// 1% of answering nodes poison (bitmagnet issue 415, libtorrent
		// issue 792), 1% send malformed entries: round choices.
		PoisonShare:    0.01,
		MalformedShare: 0.01,
	}
}

// Live-like roles of an entry, in Network.xf.
const (
	xRateLimit = 1 << iota
	xRotate
	xPoison
	xTruncate
	xPort0
	xZeroID
	xSybil
	xShared
)

// live reports whether any field needing the per-entry roles is set.
func (c *Config) live() bool {
	return c.RateLimitShare > 0 || c.RotateShare > 0 || c.PoisonShare > 0 || c.MalformedShare > 0 ||
		c.SybilHosts > 0 || c.SharedIPShare > 0
}

// checkLive validates the live-like fields and fills their defaults.
func checkLive(c *Config) error {
	switch {
	case c.RTTMedian < 0, c.RTTMax < 0, c.RotatePeriod < 0, c.SybilHosts < 0, c.SybilsPerHost < 0, c.SharedIPGroup < 0:
		return errors.New("synth: negative RTTMedian, RTTMax, RotatePeriod, SybilHosts, SybilsPerHost or SharedIPGroup")
	case math.IsNaN(c.RTTSigma) || c.RTTSigma < 0 || c.RTTSigma > 4:
		return fmt.Errorf("synth: RTTSigma %v outside [0, 4]", c.RTTSigma)
	case c.RTTMedian > 0 && c.Latency == 0:
		return errors.New("synth: RTTMedian needs Latency > 0")
	case c.SybilHosts*c.SybilsPerHost > c.N:
		return fmt.Errorf("synth: SybilHosts × SybilsPerHost %d > N %d", c.SybilHosts*c.SybilsPerHost, c.N)
	case c.SybilHosts > 0 && c.SybilsPerHost > 60000:
		return fmt.Errorf("synth: SybilsPerHost %d > 60000 ports", c.SybilsPerHost)
	}
	if c.SharedIPGroup == 0 {
		c.SharedIPGroup = DefaultSharedIPGroup
	}
	if c.RotatePeriod == 0 {
		c.RotatePeriod = DefaultRotatePeriod
	}
	return nil
}

// liveRoles draws the live-like roles of node i (in drawing order).
func (c *Config) liveRoles(seed, i uint64) uint8 {
	var f uint8
	u := func(k uint64) float64 { return unit(hash(seed, tagLive, i, k)) }
	if u(0) < c.RateLimitShare {
		f |= xRateLimit
	}
	if u(1) < c.RotateShare {
		f |= xRotate
	}
	if u(2) < c.PoisonShare {
		f |= xPoison
	}
	if u(3) < c.MalformedShare {
		f |= []uint8{xTruncate, xPort0, xZeroID}[hash(seed, tagLive, i, 4)%3]
	}
	if i < uint64(c.SybilHosts*c.SybilsPerHost) {
		f |= xSybil
	}
	return f
}

// shareIPs gives sybils and nodes behind NATs the IP of the first node of
// their group, then redraws ports so that no two entries share an
// address. It runs on the drawing order, before IDs are derived, so that
// BEP 42 IDs fit the shared IP.
func (n *Network) shareIPs(es []entry) {
	cfg, seed := &n.cfg, n.seed
	sybils := cfg.SybilHosts * cfg.SybilsPerHost
	if sybils == 0 && cfg.SharedIPShare == 0 {
		return
	}
	g := cfg.SharedIPGroup
	for i := 0; i < cfg.N; i++ {
		lead := -1
		switch {
		case i < sybils:
			lead = i / cfg.SybilsPerHost * cfg.SybilsPerHost
		case unit(hash(seed, tagShare, uint64(i), 0)) < cfg.SharedIPShare:
			if l := i / g * g; l >= sybils {
				lead = l
			}
		}
		if lead < 0 || lead == i {
			continue
		}
		es[i].ip = es[lead].ip
		if i >= sybils {
			es[i].xf |= xShared
			es[lead].xf |= xShared
		}
	}
	used := make(map[uint64]struct{})
	for i := range es {
		if es[i].xf&(xSybil|xShared) == 0 {
			continue
		}
		for a := uint64(0); ; a++ {
			k := uint64(es[i].ip)<<16 | uint64(es[i].port)
			if _, dup := used[k]; !dup {
				used[k] = struct{}{}
				break
			}
			es[i].port = uint16(1024 + hash(seed, tagShare, uint64(i), a+1)%(65536-1024))
		}
	}
}

// hold returns how long entry i holds its replies (RTTMedian), drawn
// from the log-normal distribution by a hash of (Seed, i).
func (n *Network) hold(i int) time.Duration {
	c := &n.cfg
	if c.RTTMedian == 0 {
		return 0
	}
	// Box-Muller from two uniforms in (0, 1].
	u1 := 1 - unit(hash(n.seed, tagRTT, uint64(i), 0))
	u2 := unit(hash(n.seed, tagRTT, uint64(i), 1))
	z := math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2)
	d := time.Duration(float64(c.RTTMedian) * math.Exp(c.RTTSigma*z))
	if c.RTTMax > 0 && d > c.RTTMax {
		d = c.RTTMax
	}
	return d
}

// limiter holds the per-node state of libtorrent's dos_blocker for one
// source each (Config.RateLimitShare).
type limiter struct {
	mu [64]sync.Mutex // striped by entry
	st []limitState
}

// limitState is one node's blocker: the source it tracks, the packets of
// the current window, and the window's end or the block's end.
type limitState struct {
	src   uint32
	count uint32
	limit int64 // ns since the network's start; 0: unused
}

// Rate-limit constants of libtorrent's dos_blocker.
const (
	rateLimitPackets = 5 * 10           // m_message_rate_limit × 10 s
	rateLimitWindow  = 10 * time.Second // the window the packets must fill
	rateLimitBlock   = 5 * time.Minute  // m_block_timeout
)

func newLimiter(total int) *limiter { return &limiter{st: make([]limitState, total)} }

// admit reports whether entry i accepts a packet from src at t (since the
// network's start), and counts bans and blocked packets.
func (n *Network) admit(i int, src netip.Addr, t time.Duration) bool {
	if n.limiter == nil || n.xf[i]&xRateLimit == 0 {
		return true
	}
	var ip uint32
	if a := src.Unmap(); a.Is4() {
		b := a.As4()
		ip = binary.BigEndian.Uint32(b[:])
	}
	l := n.limiter
	m := &l.mu[i%len(l.mu)]
	m.Lock()
	defer m.Unlock()
	s := &l.st[i]
	now := int64(t) + 1 // never 0
	if s.limit == 0 || s.src != ip {
		*s = limitState{src: ip, count: 1, limit: now + int64(rateLimitWindow)}
		return true
	}
	s.count++
	if s.count < rateLimitPackets {
		return true
	}
	if now < s.limit {
		if s.count == rateLimitPackets {
			s.limit = now + int64(rateLimitBlock)
			n.st.rateBans.Add(1)
		}
		n.st.rateLimited.Add(1)
		return false
	}
	s.count, s.limit = 0, now+int64(rateLimitWindow)
	return true
}

// rotatedID returns the ID a rotating entry answers with at t.
func (n *Network) rotatedID(i int, t time.Time) (krpc.ID, bool) {
	if n.xf == nil || n.xf[i]&xRotate == 0 {
		return krpc.ID{}, false
	}
	epoch := uint64(t.Sub(n.start) / n.cfg.RotatePeriod)
	if epoch == 0 {
		return krpc.ID{}, false
	}
	return hashID(n.seed, tagRotate, uint64(i), epoch), true
}

// fakeNodes returns the K fake contacts a poisoning entry i lists for
// target: IDs sharing at least 144 bits with it, at public-looking
// addresses where no entry lives.
func (n *Network) fakeNodes(i int, target krpc.ID) []krpc.NodeInfo {
	out := make([]krpc.NodeInfo, n.k)
	h := hash(n.seed, tagFake, uint64(i), binary.BigEndian.Uint64(target[12:]))
	for j := range out {
		h = mix(h + 0x9e3779b97f4a7c15)
		id := target
		binary.BigEndian.PutUint16(id[18:], uint16(h))
		out[j] = krpc.NodeInfo{ID: id, Addr: n.fakeAddr(h)}
	}
	n.st.fake.Add(uint64(len(out)))
	return out
}

// fakeAddr returns a public-looking address, drawn from h, at an IP no
// entry has.
func (n *Network) fakeAddr(h uint64) netip.AddrPort {
	for ; ; h = mix(h) {
		ip := uint32(h)
		if isPublic4(ip) && !n.hasIP(ip) {
			return netip.AddrPortFrom(addr4(ip), uint16(1024+(h>>32)%(65536-1024)))
		}
	}
}

// hasIP reports whether some entry has ip.
func (n *Network) hasIP(ip uint32) bool {
	j := n.firstIP(ip)
	return j < len(n.byIP) && uint32(n.byIP[j]>>32) == ip
}

// mangle adds the bad entry of a malformed entry i to an encoded reply b
// that lists nodes, and returns the new reply.
func (n *Network) mangle(i int, b []byte) []byte {
	f := n.xf[i] & (xTruncate | xPort0 | xZeroID)
	key := []byte("5:nodes")
	at := bytes.Index(b, key)
	if f == 0 || at < 0 {
		return b
	}
	p := at + len(key)
	colon := bytes.IndexByte(b[p:], ':')
	if colon < 0 {
		return b
	}
	l, err := strconv.Atoi(string(b[p : p+colon]))
	if err != nil || p+colon+1+l > len(b) {
		return b
	}
	start := p + colon + 1
	h := hash(n.seed, tagFake, uint64(i), ^uint64(0))
	fid := hashID(n.seed, tagFake, uint64(i), 1)
	fa := n.fakeAddr(h).Addr().As4()
	var extra []byte
	switch f {
	case xTruncate:
		extra = fid[:10]
	case xPort0:
		extra = append(append(fid[:], fa[:]...), 0, 0)
	case xZeroID:
		extra = append(make([]byte, krpc.IDLen), fa[:]...)
		extra = binary.BigEndian.AppendUint16(extra, 6881)
	}
	out := make([]byte, 0, len(b)+len(extra)+2)
	out = append(out, b[:p]...)
	out = strconv.AppendInt(out, int64(l+len(extra)), 10)
	out = append(out, ':')
	out = append(out, b[start:start+l]...)
	out = append(out, extra...)
	out = append(out, b[start+l:]...)
	n.st.malformed.Add(1)
	return out
}

// OnlineThroughout reports whether entry i answered queries during the
// whole of [from, to]: it is answering, not set offline now, and churned
// out in none of the churn epochs the interval touches. It is the set a
// crawl running from from to to can be asked to find entire: a node
// away at the moment it was asked cannot be.
func (n *Network) OnlineThroughout(i int, from, to time.Time) bool {
	if n.flags[i]&(flagSilent|flagBogon) != 0 || n.offline[i/32].Load()&(1<<(i%32)) != 0 {
		return false
	}
	if n.cfg.ChurnShare == 0 || n.flags[i]&flagBootstrap != 0 {
		return true
	}
	first := from.Sub(n.start) / n.cfg.ChurnPeriod
	last := to.Sub(n.start) / n.cfg.ChurnPeriod
	for e := first; e <= last; e++ {
		if unit(hash(n.seed, tagChurn, uint64(i), uint64(e))) < n.cfg.ChurnShare {
			return false
		}
	}
	return true
}

// Start returns the time New ran, on the clock of the bubble it ran in:
// the origin of churn epochs, rotations and Stats' times.
func (n *Network) Start() time.Time { return n.start }
