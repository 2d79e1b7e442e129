package krpc

import (
	"net/netip"
)

// Message kinds, the values of the top-level "y" key.
const (
	KindQuery = "q"
	KindReply = "r"
	KindError = "e"
)

// Query methods. The decoder returns these constants for known methods, so
// comparing Msg.Q against them costs no allocation.
const (
	MethodPing             = "ping"
	MethodFindNode         = "find_node"
	MethodGetPeers         = "get_peers"
	MethodAnnouncePeer     = "announce_peer"
	MethodGet              = "get"               // BEP 44
	MethodPut              = "put"               // BEP 44
	MethodSampleInfohashes = "sample_infohashes" // BEP 51
)

// Want flags select the address families of the nodes a querier wants back
// (BEP 32 "want" list).
type Want uint8

// Want flags; they combine with |.
const (
	WantN4 Want = 1 << iota // "n4": IPv4 nodes in "nodes"
	WantN6                  // "n6": IPv6 nodes in "nodes6"
)

// BloomLen is the size in bytes of the BEP 33 scrape Bloom filters.
const BloomLen = 256

// Msg is one KRPC message: a query, a reply or an error.
//
// Byte-slice fields (T, V, Args.Token, Return.V, …) returned by Unmarshal
// alias the decoded buffer: copy them, or the buffer, before the buffer is
// reused. Unmarshal also reuses the slices already in the Msg it fills.
//
// For the fields of type ID and fixed-size arrays the zero value means
// absent: the encoder omits them and the decoder leaves them zero.
type Msg struct {
	T  []byte         // transaction ID, echoed by the reply ("t")
	Y  string         // message kind: KindQuery, KindReply or KindError ("y")
	Q  string         // query method, queries only ("q")
	A  Args           // query arguments, queries only ("a")
	R  Return         // reply values, replies only ("r")
	E  *Error         // error code and message, errors only ("e")
	V  []byte         // client version, usually 2 letters and 2 bytes ("v")
	IP netip.AddrPort // BEP 42: the querier's address as the replier saw it ("ip")
	RO bool           // BEP 43: the sender is read-only and answers no queries ("ro")

	// Admission is, on a query the transport hands to a Handler,
	// Config.Admit's verdict on it. It is not part of the wire format:
	// it travels with the query so that the handler need not ask the
	// limiter again, and it is Admitted everywhere else.
	Admission Admission
}

// Admission is a Config.Admit verdict on an incoming query packet.
type Admission uint8

// The verdicts.
const (
	// Admitted: decode and answer the query. The zero value, and every
	// query's verdict when Config.Admit is nil.
	Admitted Admission = iota
	// AdmittedKnown: answer it first: its source has a record with the
	// node (it has answered the node's queries). When the send cap is
	// short, replies to other sources leave room for these (see
	// Config.SendRate).
	AdmittedKnown
	// AdmittedHeavy: answer it, but its source has spent much of its
	// budget; a node answers it without letting it change lasting state,
	// such as its routing table.
	AdmittedHeavy
	// Refused: drop the packet before decoding it, without a reply.
	Refused
)

// Args holds the arguments of a query (the "a" dictionary).
type Args struct {
	ID          ID     // querying node's ID ("id"); every query has one
	Target      ID     // find_node, get, sample_infohashes target ("target")
	InfoHash    ID     // get_peers and announce_peer infohash ("info_hash")
	Token       []byte // announce_peer and put token ("token")
	Port        int    // announce_peer peer port, 0 = absent ("port")
	ImpliedPort bool   // announce_peer: use the UDP source port ("implied_port")
	Want        Want   // BEP 32 families wanted ("want")
	NoSeed      bool   // BEP 33: leave seeds out of values ("noseed")
	Scrape      bool   // BEP 33: return Bloom filters ("scrape")
	Seed        bool   // BEP 33: the announcing peer is a seed ("seed")

	// BEP 44.
	V    []byte   // bencoded value as raw bytes ("v")
	K    [32]byte // ed25519 public key of a mutable item ("k")
	Sig  [64]byte // ed25519 signature ("sig")
	Seq  *int64   // sequence number ("seq")
	CAS  *int64   // compare-and-swap: the expected current sequence number ("cas")
	Salt []byte   // salt of a mutable item ("salt")
}

// AnnouncedPeer returns the peer an announce_peer from src announces: src's
// IP with Port, or with src's own port when ImpliedPort is set. It reports
// false when that port is 0 (the query is then answered with
// ErrorBadPort).
func (a *Args) AnnouncedPeer(src netip.AddrPort) (netip.AddrPort, bool) {
	port := uint16(a.Port) // the decoder keeps Port in 0..65535
	if a.ImpliedPort {
		port = src.Port()
	}
	return netip.AddrPortFrom(src.Addr(), port), port != 0
}

// Return holds the values of a reply (the "r" dictionary).
type Return struct {
	ID     ID               // replying node's ID ("id")
	Nodes  []NodeInfo       // IPv4 nodes ("nodes", 26-byte entries)
	Nodes6 []NodeInfo       // BEP 32 IPv6 nodes ("nodes6", 38-byte entries)
	Token  []byte           // token for announce_peer or put ("token")
	Values []netip.AddrPort // peers of a get_peers reply ("values")

	// BEP 33 scrape Bloom filters, BloomLen bytes each when present.
	BFsd []byte // seeds ("BFsd")
	BFpe []byte // peers ("BFpe")

	// BEP 44.
	V   []byte   // bencoded value as raw bytes ("v")
	K   [32]byte // public key ("k")
	Sig [64]byte // signature ("sig")
	Seq *int64   // sequence number ("seq")

	// BEP 51.
	Samples  []ID // sampled infohashes ("samples")
	Num      int  // number of infohashes the node holds ("num")
	Interval int  // seconds to wait before sampling this node again ("interval")
}

// IsQuery reports whether m is a query.
func (m *Msg) IsQuery() bool { return m.Y == KindQuery }

// Err returns m.E as an error when m is an error message, and nil
// otherwise.
func (m *Msg) Err() error {
	if m.Y != KindError {
		return nil
	}
	if m.E == nil {
		return &Error{Code: CodeGeneric, Msg: "error message without an error list"}
	}
	return m.E
}

// SenderID returns the ID of the node that sent m: the "id" argument of a
// query or the "id" value of a reply. Error messages carry none.
func (m *Msg) SenderID() ID {
	switch m.Y {
	case KindQuery:
		return m.A.ID
	case KindReply:
		return m.R.ID
	}
	return ID{}
}

// reset clears m for decoding or for building a reply, keeping the
// capacity of its slices. The token's buffer is kept for a handler that
// appends a token to it; a decoder replaces it with bytes of the packet.
func (m *Msg) reset() {
	nodes, nodes6, values, samples := m.R.Nodes[:0], m.R.Nodes6[:0], m.R.Values[:0], m.R.Samples[:0]
	token := m.R.Token[:0]
	*m = Msg{}
	m.R.Nodes, m.R.Nodes6, m.R.Values, m.R.Samples = nodes, nodes6, values, samples
	m.R.Token = token
}

// internMethod returns the constant for a known method name, so that the
// common methods are decoded without an allocation.
func internMethod(b []byte) string {
	switch string(b) {
	case MethodPing:
		return MethodPing
	case MethodFindNode:
		return MethodFindNode
	case MethodGetPeers:
		return MethodGetPeers
	case MethodAnnouncePeer:
		return MethodAnnouncePeer
	case MethodGet:
		return MethodGet
	case MethodPut:
		return MethodPut
	case MethodSampleInfohashes:
		return MethodSampleInfohashes
	}
	return string(b)
}
