// Package synth simulates a large BitTorrent mainline DHT, from ten
// thousand to a million nodes, in one process and a few dozen bytes per
// node, as ground truth for testing a crawler.
//
// # In memory only
//
// EVERYTHING HERE IS IN MEMORY. The nodes live on an [simnet.Network]; no
// socket is opened and NO PACKET EVER LEAVES THE PROCESS. With
// [Config.PublicIPs] the nodes get public-looking IPv4 addresses (so that
// BEP 42 applies and a crawler's bogon filter can be tested), and bogon
// entries get private, loopback or reserved ones: these addresses are
// labels inside the simulation, never contacted. Code under test must
// take its conn from [Network.Sim] (simnet's NewConn4 or Listen), never
// from the net package.
//
// # Nodes and peers
//
// A node speaks the DHT (KRPC over UDP, BEP 5); a peer speaks the
// BitTorrent wire protocol over TCP and is what get_peers returns in
// "values". This package simulates nodes only: it holds no peers and
// returns no "values".
//
// # What a node does
//
// All synthetic nodes answer through one handler installed with
// [simnet.Network.SetHandler]; there is no goroutine or conn per node. A
// node at an address decodes the packet with package krpc and answers:
//
//   - ping: {id}
//   - find_node {target}: {id, nodes}, the K entries of its own routing
//     table closest to target
//   - get_peers {info_hash}: {id, token, nodes}, no values
//   - announce_peer: {id} with a token from get_peers (tokens never
//     expire), else error 203
//   - sample_infohashes {target} (BEP 51), on BEP 51 nodes: {id, interval,
//     num, samples, nodes}: samples is a random subset of at most
//     SampleMax of its infohash set, num the set's size, interval
//     Config.Interval. Other nodes answer error 204 "method unknown",
//     except those of [Config.DropUnknownShare], which drop it unanswered
//     (as aria2 1.36 does).
//   - other methods: error 204 (dropped by the nodes of
//     Config.DropUnknownShare); a query without id, or find_node and
//     sample_infohashes without target, or get_peers without info_hash:
//     error 203; a query with a malformed field: error 203.
//   - packets that are not KRPC, replies and errors: no reply.
//
// Every reply and error carries the node's "v", if it has one, and the
// querier's address in "ip" (BEP 42). Silent nodes, bogon entries, nodes
// set offline with [Network.SetOnline] and nodes churned out
// ([Config.ChurnShare]) answer nothing, but they are counted in [Stats].
//
// # Routing tables
//
// Tables are not stored. Entries (nodes and bogons) are kept sorted by ID,
// and node X's bucket at depth d holds entries sharing exactly d leading
// bits with X, a contiguous range of the sorted array. If the range holds
// at most K entries, the bucket holds them all; otherwise it holds K of
// them drawn by a generator seeded with (Seed, X, d), the same at every
// query, except that the deepest non-empty bucket holds the K entries of
// its range closest to X. Tables are so sparse far from X and complete
// near it: X's nearest neighbour (by XOR) is always in its table, as in a
// real BEP 5 table after a few lookups. An entry Y is the only entry of
// the bucket, at depth d, of its nearest neighbour W (they share d bits,
// and no other entry shares more than d bits with Y), so every entry is in
// some table and a full crawl is possible. Silent nodes and bogons are in tables
// like everyone else. [Network.Bucket] shows a bucket.
//
// A find_node answer is built as a real node would: every entry of the
// bucket at depth d0 (the common prefix length of X and the target) is
// closer to the target than any entry of a deeper bucket, which are
// closer than any entry of a shallower one, so the K closest come from
// bucket d0, the deeper buckets, and the shallower ones in order of
// decreasing depth.
//
// # Ground truth and statistics
//
// [Network.Truth] lists every entry with ID, address, version, role,
// BEP 42 validity and BEP 51 set size; [Network.Infohashes] gives a set.
// [Network.Stats] counts queries by method, the most queries any one node
// received, replies and errors, and BEP 51 interval violations: a
// sample_infohashes answered less than Interval after the previous one to
// the same node. [Network.SampleTimes] gives the times per node, and
// [Config.MinQueryGap] counts queries to a node that come too fast.
//
// # A network like the live one
//
// The live DHT is dirtier than a clean synthetic network, and a census
// is only as good as its worst assumption about it. Each of its
// pathologies is a Config field, off at its zero value, so that it can
// be switched on alone; [LiveLike] turns them all on, with the published
// measurement or project observation each figure comes from:
//
//   - contacts that never answer (SilentShare: about half on the live
//     DHT);
//   - a round-trip time per node, log-normal across nodes (RTTMedian,
//     RTTSigma, RTTMax), held by the node before it answers;
//   - libtorrent's per-source rate limit (RateLimitShare: 50 packets
//     within 10 s block the source for 5 minutes), counted in
//     Stats.RateBans and RateLimited;
//   - churn (ChurnShare, ChurnPeriod), with [Network.OnlineThroughout]
//     telling which nodes answered during the whole of a crawl;
//   - many nodes on one IP, sybil hosts and NATs (SybilHosts,
//     SybilsPerHost, SharedIPShare, SharedIPGroup), and IDs that rotate
//     (RotateShare, RotatePeriod);
//   - nodes that drop unknown methods (DropUnknownShare);
//   - poisoners listing fake contacts next to every target
//     (PoisonShare), and replies with a malformed entry: a nodes string
//     cut short, port 0 or the zero ID (MalformedShare).
//
// Truth states each node's role in each (RTT, RateLimits, Sybil,
// SharedIP, Rotates, Poisons, Malformed), and Answering stays the set of
// nodes that answer, so that a test counts found against answering
// exactly; fake contacts are no entries and never answer.
//
// # Addresses
//
// By default node i (in drawing order) has 127.1.0.0 + i; simnet's
// NewConn4 hands out 127.0.0.2 upwards, so a crawler's conn never takes a
// node's address. Sybils and nodes behind NATs share the address of the
// first node of their group, each on a port of its own. With PublicIPs the addresses are drawn from public
// unicast space ([IsPublic]). Half the nodes use port 6881, the others a
// random port from 1024. Bogons live in 10/8, 172.16/12, 192.168/16,
// 169.254/16, 100.64/10, 0/8, 198.18/15, 224/4, 240/4 and, with PublicIPs,
// 127.128/9. Only IPv4 is simulated.
//
// # Determinism, time and cost
//
// Everything follows from Config.Seed: the same Config gives the same
// network and, for the same queries in the same order, the same answers.
// Time (intervals, churn epochs) is read with time.Now, so the network
// works in a [testing/synctest] bubble if created inside it. Each entry
// costs about 40 bytes (ID, address, flags, a 4-byte query counter and an
// 8-byte address index), plus 8 with MinQueryGap, 1 with any live-like
// role and 16 with RateLimitShare; infohash sets are computed on demand.
package synth
