// Package lightdht is a BitTorrent mainline DHT node (BEP 5) for research
// and for embedding in Go programs.
//
// A node speaks the DHT: a UDP endpoint with a 160-bit ID that answers
// ping, find_node, get_peers and announce_peer, and looks up the nodes
// closest to a target. A peer speaks BitTorrent over TCP; the DHT stores
// only where peers can be found. A Node is a node; the peers it stores and
// finds are addresses it hands back.
//
// A Node keeps one routing table per address family (BEP 32), answers
// queries (with BEP 42's "ip" in every reply, optional BEP 42 enforcement
// and BEP 43 read-only mode), and runs iterative lookups with parallelism
// alpha. Every operation comes in two styles: a blocking call that takes a
// context, and an Async call that reports results through callbacks as
// they arrive and completion exactly once.
//
// Every node the Node sees, in a reply, in a query it receives or in a
// compact node list, is reported to Config.Observer; the SQLite store and
// the crawler plug in there. The observation types (Sighting, Source,
// Observer, ObserverFunc) are defined in package observe; the names here
// are aliases of them.
//
// The library has no built-in bootstrap list: the caller passes the
// addresses to join through.
package lightdht
