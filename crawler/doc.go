// Package crawler enumerates the BitTorrent mainline DHT and harvests
// infohashes, politely.
//
// A node speaks the DHT over UDP; a peer speaks BitTorrent over TCP. The
// crawler talks only to nodes: it asks each node it discovers for the nodes
// nearest to itself (find_node with a target beside the node's own ID),
// which reveals the node's closest neighbours, so that every reachable node
// is found with about one query each. With Config.Infohashes it asks with
// BEP 51 sample_infohashes instead, which returns nodes and a sample of the
// infohashes the node stores in one reply, honouring each node's interval,
// and falls back to find_node for nodes that do not support it.
//
// The crawl is one event loop that owns the queue, the in-flight set and the
// seen set; transport callbacks only post results to it. Every sighting
// (replies with version and RTT, nodes reported in replies with their
// reporter, timeouts) and every BEP 51 sample goes to Config.Recorder,
// which the SQLite store implements.
//
// Politeness is on by default: a global cap on queries per second, at most
// one query every 2 seconds to any one IP address, no queries to private,
// loopback, link-local, multicast or reserved addresses unless the crawl is
// of a local test network (Config.TestNet), the BEP 43 read-only flag on
// every query, and one node ID for the whole crawl (no IDs spoofed next to
// targets).
//
// With Config.Respond the crawler is not read-only: it answers ping,
// find_node, get_peers and announce_peer like any node, from a routing
// table of the nodes that answered it, records the infohash of every
// incoming get_peers and announce_peer, and crawls queriers it had not
// heard of.
package crawler
