// Package interop holds tests and benchmarks that run lightdht against
// github.com/anacrolix/dht/v2, the DHT implementation most Go programs use,
// so that each side's queries are answered by the other.
//
// A node speaks the DHT over UDP; a peer speaks BitTorrent over TCP. These
// tests exercise nodes only, and only on loopback (127.0.0.0/8) sockets or
// the in-memory network of internal/simnet: no packet leaves the machine.
// Every anacrolix server is built with starting nodes that the test
// supplies, never its public default routers, and with a send limiter of
// its own, because its default limiter is shared by every server in the
// process.
package interop
