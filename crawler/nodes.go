package crawler

import (
	"cmp"
	"encoding/binary"
	"slices"

	"github.com/lightdht/lightdht/krpc"
	"github.com/lightdht/lightdht/observe"
)

// Node states in the crawl.
const (
	stNew      uint8 = iota // seen, not yet queued
	stQueued                // waiting for a query
	stInFlight              // a query is out
	stReplied               // answered
	stFailed                // never answered
	stSkipped               // bogon or outside the zone: never queried
)

// BEP 51 support as learnt.
const (
	bep51Unknown    uint8 = iota
	bep51Yes              // answered sample_infohashes
	bep51No               // answered it with error 204
	bep51Unanswered       // sample_infohashes timed out: asked find_node next
	bep51Resample         // then answered find_node: asked sample_infohashes again
	bep51Silent           // ignored sample_infohashes but answered find_node
)

// node is what the crawl keeps per address: 112 bytes. The nodes live in
// Crawler.nodes, found through Crawler.index, and are owned by the event
// loop; the queues, the gap targets and the results refer to them by
// index.
type node struct {
	id            krpc.ID // zero until learnt (a bootstrap address)
	key           addrKey
	state         uint8        // stNew, …
	bep51         uint8        // bep51Unknown, …
	queries       uint8        // queries sent to it in this pass (a revisit starts a new pass)
	queried       bool         // queried at least once in the crawl
	nearest       bool         // the next query asks for its nearest neighbours
	replied       bool         // answered at least once in the crawl
	listed        bool         // has sent us a list of nodes
	local         bool         // first heard of in a reply listing someone's nearest neighbours
	nbrs          bool         // has listed its nearest neighbours to us
	retry         bool         // the next query to it resends one that timed out
	inZone        bool         // its ID lies in Config.Zone
	skip          observe.Skip // why it is stSkipped
	link          int32        // 1 + its parent's index in the forest of listings (see island), 0 for a root; here it fills padding
	next          int64        // Unix nanoseconds before which it is not asked again (BEP 51 interval, revisits)
	num, interval uint32       // the last BEP 51 reply's num and interval
	round         round        // what it did in its current round, for its visit (visits.go)

	// Sanitizing (sanitize.go).
	introducer                 int32            // the node whose reply first listed it; noIntroducer: none
	introAnswered, introFailed uint16           // of the contacts it introduced: resolved answering, never answering
	discount                   observe.Discount // why its contacts are discounted; DiscountNone: they are not
	corroborated               bool             // listed by a node other than its introducer
	probe                      bool             // queried to test its introducer's implausible reply
	probing                    bool             // one of its contacts is such a probe
	cleared                    bool             // its probe answered: its replies are not judged implausible again
}

// discover records a node seen at ni.Addr (ID possibly unknown) and queues
// it when it is to be queried; bootstrap nodes are queried whatever their
// ID. It returns the node's index and whether it is new; the index is -1
// for an address no node can have.
func (c *Crawler) discover(ni krpc.NodeInfo, bootstrap bool) (int32, bool) {
	if !ni.Addr.IsValid() || ni.Addr.Port() == 0 {
		return -1, false
	}
	k := keyOf(ni.Addr)
	if idx := c.index.find(k, &c.nodes); idx >= 0 {
		if n := c.nodes.at(idx); n.id.IsZero() && !ni.ID.IsZero() {
			n.id = ni.ID
			c.idChanges++
		}
		return idx, false
	}
	now := c.cfg.Now()
	idx := c.nodes.add(node{id: ni.ID, key: k, introducer: noIntroducer, round: round{at: now.UnixNano()}})
	c.index.add(k, idx)
	c.res.Discovered++
	c.lastNew = now
	n := c.nodes.at(idx)
	n.inZone = !ni.ID.IsZero() && c.cfg.Zone.contains(ni.ID)
	switch {
	case !c.cfg.TestNet && bogon(ni.Addr.Addr()):
		n.state, n.skip = stSkipped, observe.SkipBogon
		c.res.Bogons++
	case !bootstrap && !c.towardZone(ni.ID):
		n.state, n.skip = stSkipped, observe.SkipOutOfZone
		c.res.OutOfZone++
	default:
		n.state = stQueued
		c.q.push(idx)
	}
	return idx, true
}

// inIDOrder returns the indexes of the nodes with a known ID that keep
// accepts (all of them if keep is nil), in ascending ID order: the nodes
// XOR-closest to a target share its longest prefix, so they sit next to
// its place in this order.
//
// The sort orders the IDs' first 64 bits, copied beside the indexes
// (sortKeyed), and reads the nodes only to break a tie: comparing
// through the node table itself misses the cache on most comparisons of
// a large crawl (in BenchmarkCrawl1M's profile, 0.96 s for the sorts
// before, 0.55 s after).
func (c *Crawler) inIDOrder(keep func(n *node) bool) []int32 {
	ks := make([]keyedID, 0, c.nodes.len()) // at most all; growing it copied more
	for i := range c.nodes.len() {
		if n := c.nodes.at(i); !n.id.IsZero() && (keep == nil || keep(n)) {
			ks = append(ks, keyedID{hi: binary.BigEndian.Uint64(n.id[:8]), idx: i})
		}
	}
	sortKeyed(ks)
	out := make([]int32, len(ks))
	for i, k := range ks {
		out[i] = k.idx
	}
	// IDs that share their first 64 bits (a sybil's chosen IDs, say)
	// are ordered by the rest.
	for lo := 0; lo < len(ks); {
		hi := lo + 1
		for hi < len(ks) && ks[hi].hi == ks[lo].hi {
			hi++
		}
		if hi-lo > 1 {
			slices.SortFunc(out[lo:hi], func(a, b int32) int { return c.nodes.at(a).id.Cmp(c.nodes.at(b).id) })
		}
		lo = hi
	}
	return out
}

// allIDOrder returns inIDOrder(nil), computed again only once a node has
// been added or an ID has changed: the gap probes and the checks, which
// start together, each need it, and on a million nodes it takes a
// quarter of a second. The caller must not change the slice.
func (c *Crawler) allIDOrder() []int32 {
	if c.byID == nil || c.byIDLen != c.nodes.len() || c.byIDChanges != c.idChanges {
		c.byID, c.byIDLen, c.byIDChanges = c.inIDOrder(nil), c.nodes.len(), c.idChanges
	}
	return c.byID
}

// keyedID is a node's index beside its ID's first 64 bits, for sorting.
type keyedID struct {
	hi  uint64
	idx int32
}

// sortKeyed sorts ks by hi: by radix, a byte a pass, where there are
// many, else by comparison. On a million random keys: 35 ms, against
// 49 ms for 16 bits a pass (whose 65,536 places to write miss the cache)
// and 114 ms for slices.SortFunc.
func sortKeyed(ks []keyedID) {
	if len(ks) < 1<<12 {
		slices.SortFunc(ks, func(a, b keyedID) int { return cmp.Compare(a.hi, b.hi) })
		return
	}
	tmp := make([]keyedID, len(ks))
	var count [1 << 8]int
	src, dst := ks, tmp
	for shift := uint(0); shift < 64; shift += 8 {
		clear(count[:])
		for _, k := range src {
			count[k.hi>>shift&0xff]++
		}
		sum := 0
		for d, n := range count {
			count[d] = sum
			sum += n
		}
		for _, k := range src {
			d := k.hi >> shift & 0xff
			dst[count[d]] = k
			count[d]++
		}
		src, dst = dst, src
	}
	// Eight passes leave the result where it started, in ks.
}

// closestReplied returns up to k replied nodes closest to target, from a
// window around target's place in byID.
func (c *Crawler) closestReplied(byID []int32, target krpc.ID, k int) []int32 {
	pos, _ := slices.BinarySearchFunc(byID, target, func(i int32, t krpc.ID) int { return c.nodes.at(i).id.Cmp(t) })
	lo, hi := max(0, pos-4*k), min(len(byID), pos+4*k)
	window := slices.Clone(byID[lo:hi])
	slices.SortFunc(window, func(a, b int32) int {
		return c.nodes.at(a).id.Xor(target).Cmp(c.nodes.at(b).id.Xor(target))
	})
	return window[:min(k, len(window))]
}

// island returns the root of the group of nodes that node i is joined to
// by listings (one node listing another joins them), halving the path on
// the way. Nodes of one network end up in one group; separate networks
// crawled together (test networks, or islands that no node bridges) stay
// apart, and the coverage checks judge each on its own (fillGaps).
func (c *Crawler) island(i int32) int32 {
	for {
		p := c.nodes.at(i).link - 1
		if p < 0 {
			return i
		}
		gp := c.nodes.at(p).link - 1
		if gp < 0 {
			return p
		}
		c.nodes.at(i).link = gp + 1
		i = gp
	}
}

// join puts nodes a and b in one group (see island).
func (c *Crawler) join(a, b int32) {
	ra, rb := c.island(a), c.island(b)
	if ra == rb {
		return
	}
	if ra > rb {
		ra, rb = rb, ra
	}
	c.nodes.at(rb).link = ra + 1
}

// nodeTable holds a crawl's nodes in chunks of nodeChunk, so that growing
// it never copies a node: a census holds millions, and the slice it was
// before copied all of them at each growth (by a quarter at a time at
// that size; in BenchmarkCrawl1M some 2 s of the crawler's CPU). A
// node's address does not change as the table grows.
//
// Owned by the event loop, with the nodes in it.
type nodeTable struct {
	chunks []*[nodeChunk]node // all full but the last
	n      int32              // nodes held
}

// Chunk size: 4,096 nodes, under half a megabyte.
const (
	nodeChunkBits = 12
	nodeChunk     = 1 << nodeChunkBits
)

// len returns the number of nodes held; their indexes are 0 to len-1.
func (t *nodeTable) len() int32 { return t.n }

// at returns the node with index i, which must be below len.
func (t *nodeTable) at(i int32) *node {
	return &t.chunks[i>>nodeChunkBits][i&(nodeChunk-1)]
}

// add appends n and returns its index.
func (t *nodeTable) add(n node) int32 {
	i := t.n
	if int(i>>nodeChunkBits) == len(t.chunks) {
		t.chunks = append(t.chunks, new([nodeChunk]node))
	}
	*t.at(i) = n
	t.n++
	return i
}
