// Package bep42 implements the node ID rules of BEP 42, the DHT security
// extension of the BitTorrent mainline DHT.
//
// # Nodes and peers
//
// A node is a program that speaks the DHT protocol (KRPC over UDP) and keeps
// a routing table; a peer is a program that speaks the BitTorrent wire
// protocol over TCP and exchanges pieces of a torrent. One process is often
// both. BEP 42 is about nodes: it constrains the IDs that nodes use in the
// DHT. It says nothing about peers or their addresses.
//
// # Why tie node IDs to IP addresses
//
// In BEP 5 a node picks its own 160-bit ID. Data for an infohash is stored
// on the nodes whose IDs are closest to it, so a single host that can choose
// any ID can place itself (or thousands of fake nodes) right next to a
// target infohash and then censor, eclipse or poison lookups for it (a Sybil
// attack). BEP 42 makes the first 21 bits of a node ID a function of the
// node's external IP address and of a 3-bit number r chosen by the node. A
// host with one address can therefore only use 8 of the 2^21 possible
// prefixes, and cannot aim at an arbitrary part of the keyspace; an attacker
// needs many addresses in many different networks to do so.
//
// # The rule
//
// Let ip be the node's external address: its 4 bytes for IPv4, or the first
// 8 bytes of its 16 for IPv6. Each byte is ANDed with a mask (03 0f 3f ff for
// IPv4, 01 03 07 0f 1f 3f 7f ff for IPv6), then r<<5 is ORed into the first
// byte, where r is the low 3 bits of the ID's last byte. With crc the CRC-32C
// (Castagnoli) of those 4 or 8 bytes, a conforming ID has
//
//	id[0]      = crc >> 24
//	id[1]      = crc >> 16 (low 8 bits)
//	id[2]&0xf8 = crc >> 8 & 0xf8
//
// The low 3 bits of id[2] and bytes 3 to 18 are random, and id[19] is a
// random byte whose low 3 bits are r. Only the 21-bit prefix and the low 3
// bits of id[19] are determined by the address; see [Prefix], [Derive],
// [Generate] and [Valid].
//
// IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are treated as the IPv4
// address a.b.c.d everywhere in this package, and IPv6 zones are ignored.
//
// # Exempt addresses
//
// BEP 42 does not apply to nodes on local networks, whose addresses say
// nothing about who they are. [Exempt] reports those addresses: for IPv4
// the BEP's list (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16,
// 169.254.0.0/16, 127.0.0.0/8) and for IPv6, which the BEP does not list,
// their counterparts ::1/128, fe80::/10 and fc00::/7. [Valid] itself does
// not look at this list; [Acceptable] combines both checks.
//
// Nothing in this package performs I/O. The random bytes of [Generate] come
// from crypto/rand.
package bep42
