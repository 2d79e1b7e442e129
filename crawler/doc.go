// Package crawler enumerates the BitTorrent mainline DHT and harvests
// infohashes, politely.
//
// A node speaks the DHT over UDP; a peer speaks BitTorrent over TCP. The
// crawler talks only to nodes: it asks each node it discovers for nodes
// (find_node), with targets chosen so that the replies together list every
// reachable node. With Config.Infohashes it asks with BEP 51
// sample_infohashes instead, which returns nodes and a sample of the
// infohashes the node stores in one reply, honouring each node's interval,
// and falls back to find_node for nodes that do not support it: those
// that answer error 204, and those that drop the query without a word
// (aria2), whose timed-out sample is followed by a find_node rather than
// resent.
//
// A crawl aims at fewer than 2 queries per node that answers. The first
// pass queries every node discovered once: a node first heard of in a list
// of someone's nearest neighbours is asked for one of its farther buckets,
// any other node for its own nearest neighbours. When the pass runs dry,
// two checks look for what it missed. Regions of the ID space where no
// node was found, although the nodes found around them say there should
// be some, are asked about from the nodes beside them, whose bucket they
// are. Then, as far as the budget goes, the nodes that replied without
// listing their own nearest neighbours are asked for them, those in the
// least covered neighbourhoods first, one at a time whenever no newly
// found node waits, until the finds stop: where tables are complete they
// find almost nothing, on a network like the live one a node every
// hundred queries or so (coverage.go).
//
// The crawl is one event loop that owns the queue, the in-flight set and
// the seen set; transport callbacks only post results to it. The loop runs
// the enumeration, then, with Config.Peers, a peers phase that asks the
// nodes closest to each harvested infohash for its peers; one pacing loop
// sends the queries of both under the same rate and per-IP limits. Every
// sighting (replies with version and RTT, nodes reported in replies with
// their reporter, timeouts) and every BEP 51 sample goes to
// Config.Recorder, which the SQLite store implements.
//
// With Config.Adaptive the pacing loop's rate is adaptive: the crawl
// sets it from the queueing delay it measures in the round trips of the
// nodes that answer and from rises in the share of timeouts, in the
// manner of delay-based congestion control (Vegas, LEDBAT), with
// Config.Rate as the ceiling, so that a link slower than the ceiling is
// not turned into false timeouts (silent nodes time out at any rate, and
// are told apart from congestion by that).
//
// Contacts cost packets in proportion to the evidence that they are real
// (sanitize.go). A reply that lists several contacts implausibly close to
// its target (made up: routing-table poisoning) has one of them probed
// and the rest wait for the probe; a node whose contacts never answer, far
// more often than the crawl's share of silent contacts explains, is
// discounted too; a discounted node's contacts are queried only if
// another node lists them. In an infohash crawl, where silent contacts
// outnumber BEP 51 nodes, a contact is asked find_node before
// sample_infohashes, so that a silent one costs one packet, not two. The
// visits record who was discounted and why, and which contacts went
// unqueried for it.
//
// Politeness is on by default: a global cap on queries per second, at most
// one query every 2 seconds to any one IP address, no queries to private,
// loopback, link-local, multicast or reserved addresses unless the crawl is
// of a local test network (Config.TestNet), the BEP 43 read-only flag on
// every query, and one node ID for the whole crawl (no IDs spoofed next to
// targets).
//
// A crawl also reports, to a Recorder that takes them
// (observe.VisitRecorder), one Visit per node whose ID it learnt: whether
// it was queried and how it answered, which the store keeps as the crawl
// history. With Config.Nodes a run revisits known nodes instead of
// crawling: each is pinged again and again, the wait growing with the
// time it has been up or down, so that sessions are measured finely.
//
// With Config.Respond the crawler is not read-only: it answers ping,
// find_node, get_peers and announce_peer like any node, from a routing
// table of the nodes that answered it, records the infohash of every
// incoming get_peers and announce_peer, and crawls queriers it had not
// heard of.
//
// The files follow the concerns: crawler.go holds the Crawler and its
// event loop, config.go the Config, its defaults and its errors,
// schedule.go the queues and the one pacing loop, adapt.go the adaptive
// sender that sets its rate, target.go the choice of
// targets (and the approach to a zone), coverage.go the gap probes and
// the second pass, reply.go the handling of replies and timeouts with the
// resend policy, sanitize.go the evidence about contacts, peers.go the peers phase, nodes.go the per-node state,
// visits.go the visits, revisit.go the revisit runs, addr.go the address
// policy and address keys, and respond.go the answers of a crawler that
// responds.
package crawler
