package observe

import (
	"time"

	"github.com/lightdht/lightdht/krpc"
)

// Outcome says how a visit to a node ended.
type Outcome uint8

// Outcomes of a visit. The values are stored in the database; never
// renumber them.
const (
	// OutcomeReplied: the node answered (its last answer was a reply).
	OutcomeReplied Outcome = 1
	// OutcomeError: the node answered, but with a KRPC error (its code
	// in Visit.ErrorCode). A node that answers with an error is up.
	OutcomeError Outcome = 2
	// OutcomeTimeout: the node was queried and never answered, resends
	// included.
	OutcomeTimeout Outcome = 3
	// OutcomeNotQueried: the node was heard of (another node listed it,
	// or it queried us) but not queried; Visit.Skipped says why.
	OutcomeNotQueried Outcome = 4
)

// String returns "replied", "error", "timeout" or "not_queried".
func (o Outcome) String() string {
	switch o {
	case OutcomeReplied:
		return "replied"
	case OutcomeError:
		return "error"
	case OutcomeTimeout:
		return "timeout"
	case OutcomeNotQueried:
		return "not_queried"
	}
	return "unknown"
}

// Answered reports whether the node answered: a reply or a KRPC error.
func (o Outcome) Answered() bool { return o == OutcomeReplied || o == OutcomeError }

// Skip says why a node that was heard of was not queried.
type Skip uint8

// Reasons for OutcomeNotQueried. Stored in the database; never renumber.
const (
	SkipNone Skip = iota // the node was queried
	// SkipBogon: its address is private, loopback, reserved or otherwise
	// not one a public DHT node can have.
	SkipBogon
	// SkipOutOfZone: a zone crawl, and the node's ID lies outside the
	// zone and leads no closer to it.
	SkipOutOfZone
	// SkipUnreached: the crawl ended (idle, deadline or interrupt)
	// before the node's turn came.
	SkipUnreached
	// SkipDiscounted: every node that listed it was discounted (see
	// Discount): their contacts cost no packets without corroboration.
	SkipDiscounted
)

// String returns "", "bogon", "out_of_zone", "unreached" or
// "discounted".
func (s Skip) String() string {
	switch s {
	case SkipNone:
		return ""
	case SkipBogon:
		return "bogon"
	case SkipOutOfZone:
		return "out_of_zone"
	case SkipUnreached:
		return "unreached"
	case SkipDiscounted:
		return "discounted"
	}
	return "unknown"
}

// Discount says why a crawl stopped trusting the contacts a node lists:
// a contact that only discounted nodes list is not queried
// (SkipDiscounted), and one that another node lists too is.
type Discount uint8

// Reasons for discounting a reporter. Stored in the database; never
// renumber.
const (
	DiscountNone Discount = iota // its contacts were trusted
	// DiscountImplausible: a reply of its listed contacts closer to the
	// target than any network of realistic size holds them (the
	// routing-table poisoning of a node that lists made-up contacts next
	// to every target), and the contact probed from it did not answer.
	DiscountImplausible
	// DiscountDeadContacts: so many of the contacts it was first to list
	// never answered that, at the share of silent contacts the crawl
	// measured, chance would explain it less than once in 10,000.
	DiscountDeadContacts
)

// String returns "", "implausible" or "dead_contacts".
func (d Discount) String() string {
	switch d {
	case DiscountNone:
		return ""
	case DiscountImplausible:
		return "implausible"
	case DiscountDeadContacts:
		return "dead_contacts"
	}
	return "unknown"
}

// BEP51 is what a visit learnt of a node's support for BEP 51
// sample_infohashes.
type BEP51 uint8

// BEP 51 support. Stored in the database; never renumber.
const (
	BEP51Unknown BEP51 = iota // not asked
	BEP51Yes                  // answered sample_infohashes
	BEP51No                   // answered it with error 204 (method unknown)
	BEP51Silent               // ignored it, but answered another query
)

// String returns "", "yes", "no" or "silent".
func (b BEP51) String() string {
	switch b {
	case BEP51Unknown:
		return ""
	case BEP51Yes:
		return "yes"
	case BEP51No:
		return "no"
	case BEP51Silent:
		return "silent"
	}
	return "unknown"
}

// Visit is what one crawl (or one revisit) learnt of one node: whether
// it was queried, how it answered, and what it said about itself. A crawl
// reports one Visit per node whose ID it knows, once the node's part in
// the crawl is over; a revisit reports one per query round.
type Visit struct {
	// Node is the node visited; its ID is never zero.
	Node krpc.NodeInfo
	// Time is when the outcome was known: the last answer, the last
	// timeout, or, for a node not queried, when it was last heard of.
	Time time.Time
	// Outcome says how the visit ended.
	Outcome Outcome
	// ErrorCode is the KRPC error code of OutcomeError, 0 otherwise.
	ErrorCode int
	// Skipped says why the node was not queried (OutcomeNotQueried).
	Skipped Skip
	// Queries is the number of queries sent to the node in the visit,
	// resends included.
	Queries int
	// RTT is the round-trip time of the first answer; 0 without one.
	RTT time.Duration
	// Version is the node's "v" client version, raw, if it sent one.
	Version string
	// ReadOnly: the node set BEP 43's "ro" flag in an answer.
	ReadOnly bool
	// BEP51 is what the visit learnt of sample_infohashes support; Num
	// and Interval are the fields of its reply (BEP51Yes).
	BEP51    BEP51
	Num      int
	Interval int
	// Discounted says why the crawl stopped trusting the contacts the
	// node listed; DiscountNone if it did not.
	Discounted Discount
}

// VisitRecorder receives visits. The crawler reports visits to a
// Recorder that implements it; db.DB does.
type VisitRecorder interface {
	RecordVisit(Visit)
}
