// Package table holds the routing tables of the DHT: which nodes we know,
// how healthy each one is, and which of them are closest to an ID.
//
// # Nodes, not peers
//
// A node speaks the DHT protocol (KRPC over UDP) and is known by its 160-bit
// node ID and UDP address. A peer speaks the BitTorrent wire protocol over
// TCP (or uTP) and is known only by the address it announced for an
// infohash. The same program is often both, on different ports. Tables hold
// nodes; peers learned from get_peers and announce_peer belong elsewhere.
//
// # What a table owns and what it does not
//
// A table records what the caller tells it (Update, Failed, Remove) and
// answers questions about it (Closest, Get, Len, Each, Refresh). It performs
// no I/O and starts no goroutines: when it wants a node pinged or a range
// refreshed it says so in a return value and the caller does the network
// work, reporting the outcome back. Each table is for one address family;
// the node keeps one for IPv4 and one for IPv6, and the table stores
// whatever addresses it is given. All tables are safe for concurrent use.
// Time comes from Config.Now, so tests can step a fake clock.
//
// # BEP 5 rules
//
// These rules are implemented by the KBucket kind; State applies to all.
//
//   - A node is good if it replied to one of our queries within the last
//     QuestionableAfter (15 minutes), or has replied at some time and sent
//     us a query within the last QuestionableAfter. A node that failed
//     MaxFailures (3) of our queries in a row is bad; a reply resets the
//     count. Every other node is questionable, including nodes we only heard
//     of from others. See Entry.State.
//   - Buckets hold at most K (8) nodes; with Config.Extended, buckets 0 to
//     3 hold 16, 8, 4 and 2 times K (a bucket split off a larger one keeps
//     its best entries and the rest as candidates). The table starts as one bucket
//     covering the whole ID space; only the bucket whose range holds our own
//     ID splits, when it is full and a new node belongs in it. With L
//     buckets, bucket i < L-1 holds the IDs sharing exactly i leading bits
//     with our ID and the last one those sharing at least L-1.
//   - When a new node's bucket is full, a bad entry is replaced at once. If
//     there is none but some entries are questionable, Update returns
//     NeedPing with those entries (least recently seen first) and keeps the
//     new node in the bucket's replacement cache of up to K candidates. The
//     caller pings them and reports each outcome: Update with Replied makes
//     an entry good again, and once all entries are good the candidates are
//     dropped; Failed counts a failure, and an entry that becomes bad is
//     replaced by the best candidate (good before questionable, then the
//     most recently seen). A bucket full of good nodes rejects new nodes.
//   - A bucket that has not changed (node added or replaced, or a member
//     replied to us or queried us) within RefreshAfter (15 minutes) is
//     reported by Refresh with a random ID in its range; the caller runs a
//     find_node lookup for it.
//   - BEP 43 read-only nodes must never be added: they set "ro" in their
//     queries, and the caller must not report such queries to Update (nor
//     call Update for a read-only node at all).
//   - At most IPsPerBucket (1) entries of a bucket share an IP address, which
//     keeps one host from filling a bucket with made-up IDs. A bad entry
//     with the same IP may be replaced.
//
// # Node identity and address changes
//
// Entries are keyed by node ID; the zero ID and our own ID are never
// stored. In the KBucket table a known ID reported at a different address
// keeps its old address while it is good, so nobody can hijack a working
// entry by claiming its ID. The entry moves to the new address only when it
// is questionable or bad and the news is direct contact from the new
// address (Replied or Queried, never Reported, which anyone can forge); its
// history then starts afresh. Failed only counts against the stored
// address. In the research tables an ID seen at a new address by any means
// simply moves there (the newest address wins) and its reply, query and
// failure history is cleared.
//
// # Kinds
//
// KBucket is the bounded BEP 5 table above, at most 160·K entries, which
// is what a DHT node needs to answer queries and run lookups.
//
// Flat and Prefix are research tables for crawlers and measurement: they
// keep every node they are told about, without limit or eviction (bad nodes
// are kept and marked; only Remove deletes), apply no bucket or IP limits
// and never return NeedPing. A researcher uses them to count the nodes of
// the network, follow node churn and address changes, or answer Closest from
// a global view instead of a local one. Flat is a hash map; Closest scans
// every entry, O(N log n), which is fine up to a few million entries at a
// low query rate. Prefix is a crit-bit trie on the ID bits; Closest walks
// the trie toward the target, O(n·log N), for frequent queries against
// millions of entries. Both store entries in a compact pointer-free form of
// 72 bytes (IPv6 zones are dropped) plus their index: about 105 heap bytes
// per entry in all for Prefix and 140 for Flat, measured with a million
// entries. Their Refresh uses virtual buckets: the ranges a k-bucket table
// would have if it had split down to the deepest node ever stored, each
// refreshed on the BEP 5 schedule.
//
// Closest never returns bad entries; it does return questionable ones.
package table
