// Package interop holds tests and benchmarks that run lightdht against
// github.com/anacrolix/dht/v2, the DHT implementation most Go programs use,
// so that each side's queries are answered by the other, and against two
// real clients of the public DHT: libtorrent (python3-libtorrent, driven by
// testdata/lthelper.py) and aria2. Those tests skip when the client is not
// installed, and fail instead under CI (CI set), where .ci/run installs
// both. Each client listens on one loopback address and knows only the
// lightdht nodes the test gives it: no bootstrap routers, no local peer
// discovery, no UPnP or NAT-PMP, no trackers.
//
// A node speaks the DHT over UDP; a peer speaks BitTorrent over TCP. These
// tests exercise nodes only, and only on loopback (127.0.0.0/8) sockets or
// the in-memory network of internal/simnet: no packet leaves the machine.
// Every anacrolix server is built with starting nodes that the test
// supplies, never its public default routers, and with a send limiter of
// its own, because its default limiter is shared by every server in the
// process.
package interop
