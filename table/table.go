package table

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/lightdht/lightdht/krpc"
)

// Defaults applied to zero-valued Config fields (BEP 5 values).
const (
	DefaultK                 = 8                // nodes per bucket
	DefaultMaxFailures       = 3                // failed queries in a row that make a node bad
	DefaultQuestionableAfter = 15 * time.Minute // silence after which a good node is questionable
	DefaultRefreshAfter      = 15 * time.Minute // age after which a bucket needs a refresh
	DefaultIPsPerBucket      = 1                // entries sharing one IP in one bucket
)

// MaxFailuresLimit is the largest accepted Config.MaxFailures. The
// research tables count failures in a byte, saturating at this value.
const MaxFailuresLimit = 255

// numBits is the number of bits in an ID and so the maximum number of
// buckets of a k-bucket table.
const numBits = krpc.IDLen * 8

// Kind selects a Table implementation. The zero value is KBucket.
type Kind int

const (
	// KBucket is the bounded BEP 5 routing table: buckets of at most K nodes,
	// only the bucket holding our own ID splits, questionable nodes are pinged
	// before they are replaced.
	KBucket Kind = iota
	// Flat is an unbounded research table that keeps every node it is told
	// about in a hash map; Closest scans all entries (O(N log n)).
	Flat
	// Prefix is an unbounded research table that keeps every node it is told
	// about in a binary crit-bit trie over the ID bits; Closest walks the
	// trie (O(n·depth)).
	Prefix
)

var kindNames = [...]string{KBucket: "kbucket", Flat: "flat", Prefix: "prefix"}

// String returns the name ParseKind accepts: "kbucket", "flat" or "prefix".
func (k Kind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// ParseKind parses the name of a Kind ("kbucket", "flat" or "prefix"),
// ignoring case.
func ParseKind(s string) (Kind, error) {
	for k, name := range kindNames {
		if strings.EqualFold(s, name) {
			return Kind(k), nil
		}
	}
	return 0, fmt.Errorf("table: unknown kind %q (want kbucket, flat or prefix)", s)
}

// Event says how we heard from or of a node. The zero value is Reported, the
// weakest evidence.
type Event int

const (
	// Reported means another node listed this node (in a find_node or
	// get_peers response); we have not talked to it ourselves.
	Reported Event = iota
	// Queried means the node sent us a query from this address.
	Queried
	// Replied means the node answered one of our queries from this address.
	Replied
)

var eventNames = [...]string{Reported: "reported", Queried: "queried", Replied: "replied"}

// String returns "reported", "queried" or "replied".
func (e Event) String() string {
	if e >= 0 && int(e) < len(eventNames) {
		return eventNames[e]
	}
	return "Event(" + strconv.Itoa(int(e)) + ")"
}

// State is the BEP 5 health of a node.
type State int

const (
	// Good nodes replied to one of our queries within QuestionableAfter, or
	// have replied at some time and sent us a query within QuestionableAfter.
	Good State = iota
	// Questionable nodes are neither good nor bad: silent for
	// QuestionableAfter, or never heard from directly.
	Questionable
	// Bad nodes failed MaxFailures or more of our queries in a row.
	Bad
)

var stateNames = [...]string{Good: "good", Questionable: "questionable", Bad: "bad"}

// String returns "good", "questionable" or "bad".
func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// Outcome says what Update did.
type Outcome int

const (
	// Added means the node was not in the table and now is.
	Added Outcome = iota + 1
	// Updated means the node was already in the table and its entry was
	// refreshed (and possibly moved to a new address).
	Updated
	// NeedPing means the node's bucket is full and holds questionable nodes.
	// The node was kept as a pending candidate (unless the bucket's cache
	// already holds K better ones); the caller should ping the entries in
	// UpdateResult.Ping and report each answer with Update (Replied) or
	// Failed. The caller should not ping a node it is already waiting on.
	NeedPing
	// Rejected means the table did not take the node; UpdateResult.Reason
	// says why.
	Rejected
)

var outcomeNames = [...]string{Added: "added", Updated: "updated", NeedPing: "need-ping", Rejected: "rejected"}

// String returns "added", "updated", "need-ping" or "rejected".
func (o Outcome) String() string {
	if o > 0 && int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "Outcome(" + strconv.Itoa(int(o)) + ")"
}

// Reason says why Update rejected a node.
type Reason int

const (
	// ReasonNone is the Reason of every outcome but Rejected.
	ReasonNone Reason = iota
	// ReasonZeroID: the node ID is all zero.
	ReasonZeroID
	// ReasonSelf: the node ID is our own.
	ReasonSelf
	// ReasonInvalidAddr: the address has no valid IP (zero netip.AddrPort).
	ReasonInvalidAddr
	// ReasonInvalidEvent: the Event is not one of the defined constants.
	ReasonInvalidEvent
	// ReasonFull: the node's bucket is full of good nodes (k-bucket only).
	ReasonFull
	// ReasonIPLimit: the bucket already holds IPsPerBucket entries with the
	// node's IP address (k-bucket only).
	ReasonIPLimit
	// ReasonAddrConflict: the table knows the ID at another address and
	// keeps it there (k-bucket only; see the package documentation).
	ReasonAddrConflict
)

var reasonNames = [...]string{
	ReasonNone:         "none",
	ReasonZeroID:       "zero ID",
	ReasonSelf:         "own ID",
	ReasonInvalidAddr:  "invalid address",
	ReasonInvalidEvent: "invalid event",
	ReasonFull:         "bucket full of good nodes",
	ReasonIPLimit:      "too many entries with this IP in the bucket",
	ReasonAddrConflict: "ID known at another address",
}

// String describes the reason in a few words.
func (r Reason) String() string {
	if r >= 0 && int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "Reason(" + strconv.Itoa(int(r)) + ")"
}

// UpdateResult is what Update did with a node.
type UpdateResult struct {
	// Outcome says what happened.
	Outcome Outcome
	// Reason is set when Outcome is Rejected.
	Reason Reason
	// Ping is set when Outcome is NeedPing: copies of the questionable
	// entries of the full bucket, least recently seen first.
	Ping []Entry
}

func reject(r Reason) UpdateResult { return UpdateResult{Outcome: Rejected, Reason: r} }

// Config configures a Table. Zero-valued fields take the Default values.
type Config struct {
	// Self is our own node ID. Required: New fails on the zero ID.
	Self krpc.ID
	// K is the bucket size (k-bucket only); 0 means DefaultK.
	K int
	// Extended makes a k-bucket table's four buckets farthest from Self
	// hold 16, 8, 4 and 2 times K nodes (libtorrent's extended routing
	// table): they cover most of the ID space, so more of their nodes
	// give lookups a nearer first hop. Off: every bucket holds K.
	Extended bool
	// MaxFailures is the number of failed queries in a row that makes a node
	// bad; 0 means DefaultMaxFailures. At most MaxFailuresLimit.
	MaxFailures int
	// QuestionableAfter is how long a good node may stay silent before it
	// becomes questionable; 0 means DefaultQuestionableAfter.
	QuestionableAfter time.Duration
	// RefreshAfter is how long a bucket may stay unchanged before Refresh
	// reports it; 0 means DefaultRefreshAfter.
	RefreshAfter time.Duration
	// IPsPerBucket is the maximum number of entries sharing one IP address in
	// one bucket (k-bucket only); 0 means DefaultIPsPerBucket, negative means
	// unlimited.
	IPsPerBucket int
	// Now returns the current time; nil means time.Now. Tables call it with
	// their lock held, so it must be safe for concurrent use and must not
	// call the table.
	Now func() time.Time
}

// withDefaults returns c with zero fields replaced by the defaults.
func (c Config) withDefaults() Config {
	if c.K == 0 {
		c.K = DefaultK
	}
	if c.MaxFailures == 0 {
		c.MaxFailures = DefaultMaxFailures
	}
	if c.QuestionableAfter == 0 {
		c.QuestionableAfter = DefaultQuestionableAfter
	}
	if c.RefreshAfter == 0 {
		c.RefreshAfter = DefaultRefreshAfter
	}
	switch {
	case c.IPsPerBucket == 0:
		c.IPsPerBucket = DefaultIPsPerBucket
	case c.IPsPerBucket < 0:
		c.IPsPerBucket = -1
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

func (c Config) validate() error {
	var errs []error
	if c.Self.IsZero() {
		errs = append(errs, errors.New("Self is the zero ID"))
	}
	if c.K < 0 {
		errs = append(errs, fmt.Errorf("K is negative (%d)", c.K))
	}
	if c.MaxFailures < 0 || c.MaxFailures > MaxFailuresLimit {
		errs = append(errs, fmt.Errorf("MaxFailures %d out of range [0, %d]", c.MaxFailures, MaxFailuresLimit))
	}
	if c.QuestionableAfter < 0 {
		errs = append(errs, fmt.Errorf("QuestionableAfter is negative (%v)", c.QuestionableAfter))
	}
	if c.RefreshAfter < 0 {
		errs = append(errs, fmt.Errorf("RefreshAfter is negative (%v)", c.RefreshAfter))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("table: invalid config: %w", err)
	}
	return nil
}

// check returns why a node may not be stored, or ReasonNone.
func (c *Config) check(n krpc.NodeInfo, ev Event) Reason {
	switch {
	case n.ID.IsZero():
		return ReasonZeroID
	case n.ID == c.Self:
		return ReasonSelf
	case !n.Addr.Addr().IsValid():
		return ReasonInvalidAddr
	case ev < Reported || ev > Replied:
		return ReasonInvalidEvent
	}
	return ReasonNone
}

// Entry is a table's record of one node.
type Entry struct {
	krpc.NodeInfo
	// FirstSeen is when the table first stored the node (for KBucket: at
	// its current address).
	FirstSeen time.Time
	// LastSeen is when we last heard from or of the node (any Event).
	LastSeen time.Time
	// LastReply is when the node last answered one of our queries (zero:
	// never, at this address).
	LastReply time.Time
	// LastQuery is when the node last sent us a query (zero: never, at this
	// address).
	LastQuery time.Time
	// Failures is the number of our queries in a row the node failed to
	// answer; a reply resets it.
	Failures int
}

// State returns the BEP 5 state of the entry at time now under cfg (whose
// zero fields take the defaults, so Config{} gives the BEP 5 rules).
func (e Entry) State(now time.Time, cfg Config) State {
	cfg = cfg.withDefaults()
	return e.state(now, &cfg)
}

// state is State for a Config that already has its defaults.
func (e *Entry) state(now time.Time, c *Config) State {
	switch {
	case e.Failures >= c.MaxFailures:
		return Bad
	case e.LastReply.IsZero():
		return Questionable
	case now.Sub(e.LastReply) < c.QuestionableAfter:
		return Good
	case !e.LastQuery.IsZero() && now.Sub(e.LastQuery) < c.QuestionableAfter:
		return Good
	}
	return Questionable
}

// observe records event ev at time now.
func (e *Entry) observe(ev Event, now time.Time) {
	e.LastSeen = now
	switch ev {
	case Replied:
		e.LastReply = now
		e.Failures = 0
	case Queried:
		e.LastQuery = now
	}
}

// newEntry returns the entry of a node first seen now through ev.
func newEntry(n krpc.NodeInfo, ev Event, now time.Time) Entry {
	e := Entry{NodeInfo: n, FirstSeen: now}
	e.observe(ev, now)
	return e
}

// Table is a routing table of DHT nodes of one address family.
//
// All implementations are safe for concurrent use by multiple goroutines.
type Table interface {
	// Update records that we heard from (Replied, Queried) or of (Reported)
	// node n and says what it did. The zero ID, our own ID, an invalid
	// address and an unknown Event are always rejected.
	//
	// In a k-bucket table a new node goes into its bucket if there is room
	// (splitting the bucket holding our own ID when it is full), replaces a
	// bad node of a full bucket, or, if the full bucket holds questionable
	// nodes, is kept as a pending candidate while Update returns NeedPing
	// with the entries to ping; the candidate is inserted when one of them
	// becomes bad through Failed, and dropped once they are all good again.
	// A bucket full of good nodes rejects the node. Research tables (Flat,
	// Prefix) add every node.
	//
	// The caller must not pass nodes that declared themselves read-only
	// (BEP 43, "ro": 1 in their queries); the table cannot tell.
	Update(n krpc.NodeInfo, ev Event) UpdateResult
	// Failed records that node n (matched by ID and address; a failure at
	// another address than the stored one is ignored) did not answer a query.
	// A node that reaches MaxFailures failures in a row becomes bad; the
	// k-bucket table then replaces it with its bucket's best pending
	// candidate, if any, and keeps it (excluded from Closest) otherwise.
	// Research tables keep bad nodes.
	Failed(n krpc.NodeInfo)
	// Remove deletes the node with this ID and reports whether the table
	// held it. The k-bucket table also forgets it as a pending candidate and
	// fills the freed slot from the bucket's pending candidates.
	Remove(id krpc.ID) bool
	// Closest returns up to n entries, nearest to target by XOR distance
	// first. Bad nodes are left out; good and questionable ones are included.
	Closest(target krpc.ID, n int) []Entry
	// AppendClosest appends what Closest returns to dst and returns the
	// extended slice, so that a caller with a buffer allocates nothing.
	AppendClosest(dst []Entry, target krpc.ID, n int) []Entry
	// AppendClosestReplied is AppendClosest restricted to entries that
	// have answered one of our queries at their stored address (LastReply
	// set) and failed none since (Failures 0): the nodes a find_node or
	// get_peers reply may list. BEP 5 hands out good nodes only; a node
	// that has merely queried us may never answer anyone (a firewalled
	// client, a node that only crawls), and one that just stopped
	// answering would waste the queries of every lookup that learns of
	// it.
	AppendClosestReplied(dst []Entry, target krpc.ID, n int) []Entry
	// Get returns the entry with this ID. Pending candidates of the k-bucket
	// table are not entries.
	Get(id krpc.ID) (Entry, bool)
	// Len returns the number of entries, bad ones included.
	Len() int
	// Each calls f for every entry, in no particular order, until f returns
	// false. The table is locked for reading meanwhile: f must not call
	// methods of the same table.
	Each(f func(Entry) bool)
	// Refresh returns lookup targets, one random ID in the range of each
	// bucket that has not changed within RefreshAfter, and counts those
	// buckets as refreshed (they are reported again only after another
	// RefreshAfter without change). The caller runs a find_node lookup for
	// each target. Research tables use virtual buckets; see the package
	// documentation.
	Refresh() []krpc.ID
	// SetSelf changes our own node ID, as a node does when it learns an
	// external address its ID is not valid for (BEP 42). The entries keep
	// their history; an entry with the new ID is dropped. The k-bucket
	// table sorts its entries and candidates into the buckets of the new
	// ID, good entries first, keeps as candidates those that no longer
	// find room and drops bad ones. Every bucket counts as changed now.
	// The zero ID is ignored.
	SetSelf(self krpc.ID)
}

// New returns an empty table of the given kind.
func New(kind Kind, cfg Config) (Table, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	switch kind {
	case KBucket:
		return newKBucket(cfg), nil
	case Flat:
		return newResearch(cfg, newFlatIndex()), nil
	case Prefix:
		return newResearch(cfg, &trie{maxFail: uint8(cfg.MaxFailures)}), nil
	}
	return nil, fmt.Errorf("table: unknown kind %v", kind)
}

// sameIP reports whether two addresses have the same IP, treating an
// IPv4-mapped IPv6 address as the IPv4 address and ignoring zones.
func sameIP(a, b netip.AddrPort) bool {
	return a.Addr().Unmap().WithZone("") == b.Addr().Unmap().WithZone("")
}

// cmpDistance compares the XOR distances of a and b to target, like Cmp.
func cmpDistance(target, a, b *krpc.ID) int {
	for i := range target {
		da, db := a[i]^target[i], b[i]^target[i]
		if da != db {
			if da < db {
				return -1
			}
			return 1
		}
	}
	return 0
}

// bit returns bit i (0 = most significant) of id.
func bit(id *krpc.ID, i uint) int {
	return int(id[i>>3]>>(7-i&7)) & 1
}
