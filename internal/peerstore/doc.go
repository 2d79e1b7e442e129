// Package peerstore keeps the announce_peer records of a DHT node: which
// peers announced which infohash, answered back in get_peers replies.
//
// # Nodes and peers
//
// A node speaks the DHT protocol (KRPC over UDP); a peer speaks the
// BitTorrent wire protocol over TCP. A BitTorrent client that joins a swarm
// asks its DHT node to announce_peer the swarm's infohash to the nodes
// closest to it; those nodes record the client's IP address and TCP port
// (the peer) and hand it out to later get_peers queries for the infohash.
// This package is that record: it stores peer addresses, never node IDs.
// Checking announce tokens (package tokens) is the caller's job.
//
// # Rules
//
//   - A peer is an (IP address, port) pair. IPv4-mapped IPv6 addresses are
//     stored as IPv4 and zones are dropped, so ::ffff:192.0.2.1:6881 and
//     192.0.2.1:6881 are the same peer. Invalid, unspecified and multicast
//     addresses and port 0 are refused.
//   - A peer expires [Config.TTL] after its most recent announce (30
//     minutes by default, as peers re-announce about every 15); announcing
//     again refreshes the expiry and the seed flag.
//   - Replies are per address family, as BEP 32 asks: a get_peers over IPv4
//     returns IPv4 peers ("values") and one over IPv6 returns IPv6 peers.
//     See [Family].
//   - BEP 33: a get_peers with noseed=1 gets no seeds, and [Store.Scrape]
//     returns the two Bloom filters (BFsd, BFpe) of a scrape reply.
//   - When an infohash has more live peers than asked for, a uniformly
//     random subset is returned, so repeated get_peers see different peers.
//     Sampling costs O(max) in the usual case, not O(peers); see
//     [Store.Peers].
//
// # Memory bounds and eviction
//
// The store holds at most [Config.MaxInfohashes] infohashes and at most
// [Config.MaxPeersPerInfohash] peers for each, whatever the clock does, so
// its worst-case size is O(MaxInfohashes * MaxPeersPerInfohash). Measured
// on amd64, a peer costs about 100 bytes in a full infohash (a 40-byte
// entry, its share of the index map and of slice growth) and an infohash
// with a single peer about 140 bytes in all. The worst case at the defaults
// (50,000 full infohashes of 2,000 peers) is therefore about 10 GB, while
// 50,000 infohashes of one peer each take about 7 MB. A real node stays
// near the second figure, since announces need valid tokens and most
// infohashes have a handful of peers; lower the caps for a tighter bound.
// Peer entries hold no pointers, so the garbage collector does not scan
// them, and a swarm's slice and map are reallocated smaller once most of
// its peers have expired.
//
//   - A new peer for a full infohash replaces the peer of that infohash
//     whose most recent announce is oldest.
//   - A new infohash in a full store evicts the infohash whose most recent
//     announce is oldest, with all its peers. Evicting rather than refusing
//     means an attacker who fills the store once cannot lock out new
//     infohashes until the entries expire, and popular infohashes, which
//     are announced often, are the last to go.
//
// Expiry needs no goroutine. Every Announce first drops the infohashes all
// of whose peers have expired (they sit at the front of a list ordered by
// most recent announce, so this is amortised O(1)), and every operation on
// an infohash first drops its expired peers (the front of a per-infohash
// list in announce order). [Store.Expire] does a full sweep; [Store.Len]
// counts what is held, which may include expired entries not yet dropped.
//
// Times come from [Config.Now] and are measured from the moment [New] was
// called (with the monotonic clock when Now is time.Now). If Now goes
// backwards, the store treats time as standing still until Now passes its
// latest reading again: nothing expires early and order is kept.
//
// # Sizes
//
// A get_peers reply must fit in one UDP packet, so callers always pass a
// maximum to [Store.Peers]; a node typically asks for about 50 IPv4 peers
// (6 bytes each) or fewer IPv6 peers (18 bytes each).
//
// A [Store] is safe for concurrent use.
package peerstore
