// Package tokens issues and checks the opaque announce tokens of the
// BitTorrent mainline DHT (BEP 5; BEP 44 reuses them for put).
//
// # Nodes, peers and why tokens exist
//
// A node is a program that speaks the DHT protocol (KRPC over UDP) and
// helps others find things; a peer is a program that speaks the BitTorrent
// wire protocol over TCP and actually exchanges pieces of a torrent. One
// process is often both, but the roles differ: the DHT is a directory in
// which nodes store, for each infohash, the contact addresses of peers.
//
// Entries are added with announce_peer. Without a check, anyone could send
// announce_peer with a forged UDP source address and fill the directory with
// victims' addresses, turning the DHT into a traffic amplifier or poisoning
// lookups. Tokens gate which nodes may announce: a node answering get_peers
// includes a token in its reply, and a later announce_peer (or BEP 44 put)
// is only accepted if it carries a token that this node issued to the same
// IP address. A querier can therefore only announce from an address at
// which it is able to receive replies.
//
// # Rules implemented here
//
// A token binds the querier's IP address (not its port, and not an IPv6
// zone) to a local secret. The secret changes every five minutes
// ([DefaultRotation]), and tokens up to ten minutes old are accepted, i.e.
// tokens made with the current or the previous secret. Because the secret
// periods form a fixed grid starting when the [Issuer] is created, a token
// stays valid for at least one rotation period and at most two after it was
// issued. IPv4 addresses and their IPv4-mapped IPv6 form (::ffff:a.b.c.d)
// are treated as the same address.
//
// Rotation is lazy: it happens inside [Issuer.Append], [Issuer.Token] and
// [Issuer.Valid] according to the configured clock, so an Issuer has no
// goroutines or timers and needs no Close. If two or more periods pass
// without a call, both secrets are replaced, so no old token survives a
// long pause.
//
// A token is the first [Len] bytes of SHA-256(secret || tag || ip16), where
// secret is 32 random bytes, tag separates valid from invalid addresses and
// ip16 is the 16-byte form of the unmapped address. The input has a fixed
// length and the output is truncated, so length-extension does not apply and
// the construction acts as a keyed pseudo-random function; it costs a single
// SHA-256 block and no allocations.
//
// Tokens are opaque to the receiver; other implementations use other
// lengths and constructions, and a node must simply echo back what it got.
package tokens
