// Package shard runs shared crawls: several crawler processes, on one
// machine or many, crawl one census of the DHT together through one
// PostgreSQL database.
//
// A node speaks the DHT over UDP; a peer speaks BitTorrent over TCP. A
// crawl talks only to nodes, and a shared crawl splits them between
// crawlers by node ID: the ID space is cut into 2^Bits zones, the IDs
// that share a prefix of Bits bits, and each zone is crawled on its own
// (crawler.Config.Zone) by whichever crawler claims it.
//
// The crawl is created once, by the first process that opens it by its
// name (Open): a crawl_runs row of kind 'crawl', a shared_crawls row and
// one crawl_zones row per zone, under an advisory lock so that processes
// started at the same moment with the same command agree on one crawl.
// Each process then works zones (Crawl.Run) until every zone is done:
//
//   - it claims a zone that is todo, or claimed with a lease that has run
//     out, with SELECT … FOR UPDATE SKIP LOCKED, so two processes never
//     claim the same zone at once;
//   - it renews the lease from a goroutine while it crawls the zone, and
//     stops crawling it if the lease was lost (someone else claimed it
//     after the lease ran out);
//   - it marks the zone done with the zone's figures (nodes found and
//     replied, queries sent, infohashes, the zone's size estimate, who
//     crawled it, when, and how many times it was claimed);
//   - with no zone free while others hold leases it waits, polling with
//     backoff, until all are done or a lease runs out. A crawler that dies
//     leaves its zone claimed; once the lease runs out another claims it.
//
// A process keeps one socket (Config.Crawler.Conn) for every zone it
// crawls, so that its vantage stays one address: each zone's crawler,
// which owns and closes its Conn, gets a view of the socket that Close
// detaches (mux.go). With Config.Parallel above 1 a process claims and
// crawls that many zones at once, all their packets paced together at
// the process's one rate, so that one zone's crawl sends while another
// waits out its last timeouts; Config.Overlap claims the next zone as
// soon as a zone's crawl is down to those last timeouts.
//
// Every process's visits belong to the one crawl_runs row (db.JoinRun)
// and name the process's vantage: its host name and the local address
// of its socket. Only the visits of nodes inside the zone being crawled
// are recorded, and none of a zone's crawl that was stopped before its
// end (the process stopped, or lost the lease), so a node has one visit
// per crawl as in a crawl of the whole network; the nodes met on the way
// to a zone are still sightings.
// The process that marks the last zone done records the end of the
// crawl_runs row, once: the sum of the zones' figures, the size estimate
// (the sum of the zones' estimates) and the visits' totals
// (db.RunCounts.CountVisits). If that process dies between marking the
// last zone done and recording the end, the next process to run the
// crawl (lightdht crawl --shared with the same name) records it, once a
// lease has passed since the last zone was marked (Summary.Recovered).
//
// Lease times are read from the database server's clock (now()), so that
// machines whose clocks disagree still agree on when a lease runs out;
// tests inject a clock (Config.Now). The tables are described in
// db/migrations/postgres/0002_shared.sql and docs/shared-crawls.md.
package shard
