// Package observe holds the types in which lightdht reports what it sees
// of the DHT: a Sighting of a node (it replied, it queried us, another
// node listed it, or it timed out) and the Observer that receives them,
// and the Visit, what one crawl learnt of one node, with the
// VisitRecorder that receives visits.
//
// A node speaks the DHT: a UDP endpoint with a 160-bit ID. A peer speaks
// BitTorrent over TCP. Sightings are of nodes; the peers an announce_peer
// stored ride along in Sighting.Peer.
//
// The package is small on purpose: the node, the crawler and the query
// handler produce sightings, and the store consumes them, without any of
// them depending on the others.
package observe
