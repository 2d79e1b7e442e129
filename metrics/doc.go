// Package metrics exports a lightdht process's counters to Prometheus.
//
// It owns the one place where lightdht depends on client_golang: the
// lower layers (krpc, table, db, crawler and the node itself) keep plain
// atomic counters and Stats snapshots, and a Set reads them at scrape
// time through a custom collector. The only state the Set keeps of its
// own is what no lower layer counts: the round-trip time histogram and
// the outcome of outgoing queries by method, both fed by the sightings
// the node and the crawler already report (Set is an observe.Observer).
//
// A node speaks the DHT over UDP (BEP 5); a peer speaks BitTorrent over
// TCP. The metrics are about nodes: packets, KRPC queries and replies,
// the routing table, the crawl and its database. Names follow the
// Prometheus conventions: counters end in _total, times are in seconds.
//
// Serve runs an HTTP listener with /metrics and, on the same listener,
// net/http/pprof's /debug/pprof/.
package metrics
