// Package bep44 implements the data side of BEP 44, arbitrary data in the
// mainline DHT: item targets, the signing buffer of mutable items, ed25519
// signatures, the size limits, and Store, the expiring item store a node
// answers get and put queries from.
//
// A node speaks the DHT over UDP; a peer speaks BitTorrent over TCP. BEP 44
// items live on nodes, next to the peer lists of BEP 5: an immutable item
// is addressed by the SHA-1 of its bencoded value, a mutable one by the
// SHA-1 of its owner's ed25519 public key followed by an optional salt,
// and carries a sequence number and a signature so that only the owner
// can update it. Nothing is ever deleted: items expire unless someone puts
// them again.
package bep44
