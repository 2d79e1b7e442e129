package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lightdht/lightdht/krpc"
)

// collector reads the Set's sources at scrape time.
type collector Set

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(Namespace+"_"+name, help, labels, nil)
}

// transportCounters are the counters of krpc.Stats exported one to one.
var transportCounters = []struct {
	d *prometheus.Desc
	v func(*krpc.Stats) uint64
}{
	{desc("packets_sent_total", "UDP packets sent, resends and replies included."), func(s *krpc.Stats) uint64 { return s.PacketsSent }},
	{desc("packets_received_total", "UDP packets received."), func(s *krpc.Stats) uint64 { return s.PacketsReceived }},
	{desc("sent_bytes_total", "Bytes of UDP payload sent."), func(s *krpc.Stats) uint64 { return s.BytesSent }},
	{desc("received_bytes_total", "Bytes of UDP payload received."), func(s *krpc.Stats) uint64 { return s.BytesReceived }},
	{desc("queries_sent_total", "Distinct KRPC queries sent, resends not included."), func(s *krpc.Stats) uint64 { return s.QueriesSent }},
	{desc("query_resends_total", "Query attempts after the first."), func(s *krpc.Stats) uint64 { return s.Resends }},
	{desc("replies_received_total", "Replies matched to an outgoing query."), func(s *krpc.Stats) uint64 { return s.RepliesReceived }},
	{desc("errors_received_total", "KRPC error messages matched to an outgoing query."), func(s *krpc.Stats) uint64 { return s.ErrorsReceived }},
	{desc("query_timeouts_total", "Outgoing queries that ran out of attempts."), func(s *krpc.Stats) uint64 { return s.Timeouts }},
	{desc("queries_cancelled_total", "Outgoing queries ended by their context."), func(s *krpc.Stats) uint64 { return s.Cancelled }},
	{desc("queries_received_total", "Well-formed incoming KRPC queries."), func(s *krpc.Stats) uint64 { return s.QueriesReceived }},
	{desc("replies_sent_total", "Replies sent to incoming queries."), func(s *krpc.Stats) uint64 { return s.RepliesSent }},
	{desc("errors_sent_total", "KRPC error messages sent to incoming queries."), func(s *krpc.Stats) uint64 { return s.ErrorsSent }},
	{desc("replies_trimmed_total", "Replies trimmed to fit the amplification cap, then sent."), func(s *krpc.Stats) uint64 { return s.RepliesTrimmed }},
}

var (
	dropsDesc      = desc("dropped_packets_total", "Packets dropped by the transport, or replies not sent, by reason.", "reason")
	sockErrDesc    = desc("socket_errors_total", "Errors reading or writing the UDP socket.", "op")
	handledDesc    = desc("queries_handled_total", "Incoming queries the node answered or refused, by method.", "method")
	rateLimDesc    = desc("queries_rate_limited_total", "Incoming queries the node dropped under its per-IP limits.")
	badTokenDesc   = desc("bad_tokens_total", "announce_peer queries refused for a bad token.")
	insecureDesc   = desc("insecure_ids_rejected_total", "Nodes kept out of the routing table by BEP 42 enforcement.")
	announcesDesc  = desc("announces_stored_total", "announce_peer queries accepted and stored.")
	lookupsDesc    = desc("lookups_total", "Iterative lookups the node ran.")
	lookupQDesc    = desc("lookup_queries_total", "Queries sent by the node's lookups.")
	tableDesc      = desc("routing_table_nodes", "Nodes in the routing table, by address family.", "family")
	infohashesDesc = desc("peer_store_infohashes", "Infohashes held in the peer store.")
	peersDesc      = desc("peer_store_peers", "Peers held in the peer store.")
	nodesDesc      = desc("nodes", "Nodes running in this process.")

	crawlFound    = desc("crawl_nodes_found", "Distinct node addresses the current crawl has seen.")
	crawlAnswer   = desc("crawl_nodes_answering", "Nodes that answered the current crawl.")
	crawlQueued   = desc("crawl_nodes_queued", "Nodes waiting for a query in the current crawl.")
	crawlInFlight = desc("crawl_queries_in_flight", "Queries of the current crawl awaiting a reply.")
	crawlQueries  = desc("crawl_queries", "Queries the current crawl has sent, resends included.")
	crawlElapsed  = desc("crawl_elapsed_seconds", "Time since the current crawl started.")

	dbQueued  = desc("db_queue_items", "Items waiting in the database writer's queue.")
	dbEnq     = desc("db_items_enqueued_total", "Items (sightings, peers, samples, visits) accepted into the database queue.")
	dbWritten = desc("db_items_written_total", "Items whose batch committed.")
	dbShed    = desc("db_items_shed_total", "Items refused because the queue was full or the database closed.")
	dbLost    = desc("db_items_lost_total", "Items whose batch failed to commit.")
	dbBatches = desc("db_batches_total", "Committed database batches.")
	dbErrors  = desc("db_commit_errors_total", "Failed database commits.")
	dbFlush   = desc("db_last_flush_seconds", "Duration of the last database commit.")
)

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	nodes := append(c.nodes[:0:0], c.nodes...)
	transports := append(c.transports[:0:0], c.transports...)
	crawl, d := c.crawl, c.db
	c.mu.Unlock()

	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}

	var ts krpc.Stats
	for _, f := range transports {
		ts = addStats(ts, f())
	}
	handled := map[string]uint64{}
	var rateLimited, badTokens, insecure, announces, lookups, lookupQ uint64
	var n4, n6, ihs, peers int
	for _, n := range nodes {
		s := n.Stats()
		ts = addStats(addStats(ts, s.Transport4), s.Transport6)
		for m, v := range s.QueriesByMethod {
			handled[m] += v
		}
		rateLimited += s.RateLimited
		badTokens += s.BadTokens
		insecure += s.InsecureIDsRejected
		announces += s.AnnouncesStored
		lookups += s.Lookups
		lookupQ += s.LookupQueries
		n4, n6 = n4+s.Nodes4, n6+s.Nodes6
		ihs, peers = ihs+s.Infohashes, peers+s.Peers
	}

	for _, tc := range transportCounters {
		counter(tc.d, tc.v(&ts))
	}
	for _, r := range []struct {
		reason string
		v      uint64
	}{
		{"oversize", ts.DroppedOversize}, {"malformed", ts.DroppedMalformed},
		{"unknown_transaction", ts.DroppedUnknownTransaction}, {"wrong_address", ts.DroppedWrongAddress},
		{"no_handler", ts.DroppedNoHandler}, {"send_rate", ts.DroppedRateLimited},
		{"not_admitted", ts.DroppedNotAdmitted}, {"amplification", ts.DroppedAmplification},
		{"prefix_cap", ts.DroppedPrefixCap},
	} {
		counter(dropsDesc, r.v, r.reason)
	}
	counter(sockErrDesc, ts.ReadErrors, "read")
	counter(sockErrDesc, ts.WriteErrors, "write")

	gauge(nodesDesc, float64(len(nodes)))
	if len(nodes) > 0 {
		for m, v := range handled {
			counter(handledDesc, v, m)
		}
		counter(rateLimDesc, rateLimited)
		counter(badTokenDesc, badTokens)
		counter(insecureDesc, insecure)
		counter(announcesDesc, announces)
		counter(lookupsDesc, lookups)
		counter(lookupQDesc, lookupQ)
		gauge(tableDesc, float64(n4), "ipv4")
		gauge(tableDesc, float64(n6), "ipv6")
		gauge(infohashesDesc, float64(ihs))
		gauge(peersDesc, float64(peers))
	}

	if crawl != nil {
		p := crawl()
		gauge(crawlFound, float64(p.Discovered))
		gauge(crawlAnswer, float64(p.Replied))
		gauge(crawlQueued, float64(p.Queued))
		gauge(crawlInFlight, float64(p.InFlight))
		gauge(crawlQueries, float64(p.Queries))
		gauge(crawlElapsed, p.Elapsed.Seconds())
	}

	if d != nil {
		s := d.Stats()
		gauge(dbQueued, float64(s.Queued))
		counter(dbEnq, s.Enqueued)
		counter(dbWritten, s.Written)
		counter(dbShed, s.Shed)
		counter(dbLost, s.Lost)
		counter(dbBatches, s.Batches)
		counter(dbErrors, s.Errors)
		gauge(dbFlush, s.LastFlushDuration.Seconds())
	}
}
