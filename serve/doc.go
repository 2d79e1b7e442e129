// Package serve answers the queries a DHT node receives: ping, find_node,
// get_peers and announce_peer (BEP 5), nodes6 and want (BEP 32), scrape
// (BEP 33), the querier's address in "ip" (BEP 42), get and put (BEP 44)
// and sample_infohashes (BEP 51). Its Handler is the one switch over query
// methods in lightdht: the Node and the crawler's responder both use it,
// each with the parts it has.
//
// A node speaks the DHT over UDP; a peer speaks BitTorrent over TCP. The
// handler hands out nodes from a routing table and peers from a peer
// store, and records who asked through an observer.
package serve
