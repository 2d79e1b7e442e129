// Package krpc is the wire layer of lightdht: the KRPC message model of the
// BitTorrent mainline DHT, its bencode codec, and a UDP transport that sends
// queries, matches their replies and hands incoming queries to a Handler.
//
// A node speaks the DHT: it is a UDP endpoint with a 160-bit ID that answers
// queries about other nodes and about peers. A peer speaks BitTorrent over
// TCP; the DHT only stores where peers are. This package moves node-to-node
// messages and knows nothing of routing tables or lookups.
//
// # Messages
//
// One type, Msg, covers every message lightdht sends or reads: BEP 5 (t, y,
// q, a, r, e, v), BEP 32 (nodes6, want), BEP 33 (scrape, noseed, seed, BFsd,
// BFpe), BEP 42 (the top-level ip), BEP 43 (ro), BEP 44 (v, k, sig, seq,
// cas, salt) and BEP 51 (samples, num, interval). Compact node and peer
// lists are decoded with exact length checks: a list that is not a whole
// number of entries is an error, never truncated.
//
// The codec is written for this message, not through reflection. Decoding
// applies Limits before it allocates anything that grows with the input
// (packet size, nesting depth, number of values; string lengths are checked
// against the bytes left), skips unknown keys, and reports faults as
// *DecodeError. Byte slices in a decoded Msg alias the input. Encoding
// writes keys in bencode's sorted order and, given a buffer with room,
// allocates nothing.
//
// # Transport
//
// A Transport owns a net.PacketConn, one read goroutine (Serve) and a table
// of outstanding transactions keyed by random 32-bit transaction IDs.
// QueryAsync is the core: it never blocks and calls its Callback exactly
// once, with the reply, a KRPC error (*Error, for errors.As), ErrTimeout
// after the configured resends, ErrClosed, or the context's error. Query is
// the blocking form built on it. A reply is accepted only from the address
// the query went to; replies from elsewhere and unknown transactions are
// dropped and counted in Stats. Packets that do not decode get no reply; a
// well-formed query with a malformed argument gets error 203.
//
// Each Transport has its own send limiter and counters; the package has no
// global state.
package krpc
