// Package simnet is an in-memory UDP network for tests and simulations of
// DHT nodes.
//
// A mainline DHT node speaks KRPC over UDP through a [net.PacketConn]. simnet
// provides such conns ([*Conn]) that exchange datagrams through a [Network]
// held entirely in the memory of the current process, so that thousands (and,
// with care, a million) nodes can run in one test binary. The package never
// opens, binds or writes to a real socket: no packet ever leaves the process,
// and the addresses it hands out need not exist on the machine.
//
// # Addresses
//
// Every conn has its own address, and the conns made by [Network.NewConn4]
// and [Network.NewConn6] each have their own IP, because DHT tokens and
// BEP 42 secure node IDs are derived from the IP:
//
//   - [Network.NewConn4] takes the next unused address in 127.0.0.0/8,
//     counting up from 127.0.0.2 (127.0.0.0, 127.0.0.1 and 127.255.255.255
//     are never handed out), port 6881.
//   - [Network.NewConn6] takes the next unused address of the form
//     fd6c:6474:XXXX:XXXX::1 in the unique local range fd00::/8, port 6881.
//     The counter lives in bits 32 to 63, so every conn gets its own /64, as
//     real hosts do; BEP 42 derives IPv6 node IDs from the top 64 bits only.
//   - [Network.Listen] takes any exact address the caller chooses, for
//     instance a public-looking one when a test needs an address that is not
//     loopback or private.
//
// IPv4-mapped IPv6 addresses (::ffff:1.2.3.4) are unmapped and IPv6 zones
// are removed wherever an address enters the network, so both spellings
// reach the same conn. Routing is by exact address and port; there are no
// address families, so an IPv4 conn may send to an IPv6 address.
//
// # Delivery
//
// [Conn.WriteTo] never blocks. It copies the payload and applies, in order:
// the size limit ([Config.MaxPacket]), the link filter
// ([Network.SetLinkFilter]), the sender's bottleneck link if it has one
// ([Network.SetLink]), random loss ([Config.Loss]) and delay
// ([Config.Latency] plus a uniform draw below [Config.Jitter]).
// [Network.SetConditions] changes latency, jitter and loss later, for
// instance to build a large network without delay and then measure it
// under latency and loss. Without latency or jitter the packet is
// delivered before WriteTo returns; otherwise delivery is scheduled with
// [time.AfterFunc], so packets with jitter may be reordered. On delivery
// the packet is appended to the destination's receive queue, or dropped
// when no open conn has that address or the queue already holds
// [Config.QueueLen] packets. Every outcome is counted in [Stats].
//
// # Bottleneck links
//
// [Network.SetLink] gives one host (an IP) an access link of limited
// capacity, in packets per second each way, with a drop-tail queue in
// front of each direction ([Link]): a packet waits for the packets ahead
// of it, so the queueing delay grows as the queue fills, and a packet
// that finds the queue full is dropped ([Stats].DroppedLink). The
// packets a host sends pass its up direction when written; those
// addressed to it pass its down direction on arrival, before the receive
// queue or the handler. This is how a crawler's congestion control is
// measured: behind a link of C packets/s, sending faster than C fills the
// queue, round trips grow, then packets are lost. [Network.LinkStats]
// counts what passed, what was dropped and the longest wait.
//
// # Handlers
//
// [Network.SetHandler] installs a catch-all consulted on delivery when no
// open conn has the destination address. It receives the packet and may
// return a reply, which travels back to the sender through the same steps
// as any packet (size limit, link filter, loss, delay). A handler plus an
// address scheme lets one function simulate a million endpoints without a
// conn or a goroutine each; package internal/synth builds a synthetic DHT
// this way. Replies are never handed to the handler, and conns always take
// precedence over it.
//
// # Determinism and testing/synctest
//
// Loss and jitter draws come from one math/rand/v2 generator per network,
// seeded from [Config.Seed], so a run that sends the same packets in the
// same order draws the same values; links draw nothing, and their queues
// run on the time package's clock, so the same packets at the same times
// wait and drop alike. The package uses only mutexes,
// channels and time package timers, and starts no goroutines of its own
// except the short-lived ones that run [time.AfterFunc] callbacks. It
// therefore works inside a [testing/synctest] bubble, where latency is
// applied exactly on the fake clock. Create the Network and its conns
// inside the bubble that uses them.
package simnet
