package metrics

import (
	"net/http"
	"reflect"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/lightdht/lightdht"
	"github.com/lightdht/lightdht/crawler"
	"github.com/lightdht/lightdht/db"
	"github.com/lightdht/lightdht/krpc"
	"github.com/lightdht/lightdht/observe"
)

// Namespace is the prefix of every metric of a Set but the Go runtime and
// process collectors' own.
const Namespace = "lightdht"

// RTTBuckets are the upper bounds, in seconds, of the round-trip time
// histogram: from half a millisecond on loopback to the 8 s of a slow
// node's last try.
var RTTBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8}

// Set is the metrics of one process: the sources it reads at scrape time
// and the histogram it fills from sightings. Its methods are safe for
// concurrent use.
type Set struct {
	reg      *prometheus.Registry
	rtt      prometheus.Histogram
	outcomes *prometheus.CounterVec

	mu         sync.Mutex
	nodes      []*lightdht.Node
	transports []func() krpc.Stats
	crawl      func() crawler.Progress
	db         *db.DB
}

// New returns a Set with the Go runtime and process collectors
// registered, and no source yet.
func New() *Set {
	s := &Set{reg: prometheus.NewRegistry()}
	s.rtt = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "query_rtt_seconds",
		Help:    "Round-trip time of outgoing queries that got a reply, from the last send to the reply.",
		Buckets: RTTBuckets,
	})
	s.outcomes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "query_outcomes_total",
		Help: "Outgoing queries by method and outcome (reply or timeout), as seen by the node or crawler.",
	}, []string{"method", "outcome"})
	s.reg.MustRegister(s.rtt, s.outcomes, (*collector)(s),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return s
}

// Registry returns the Set's registry, to register more collectors or to
// gather without HTTP.
func (s *Set) Registry() *prometheus.Registry { return s.reg }

// Handler returns the /metrics handler in the Prometheus exposition
// formats.
func (s *Set) Handler() http.Handler {
	return promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{Registry: s.reg})
}

// AddNode adds a node whose Stats are read at each scrape; the metrics of
// several nodes (a test network) are summed.
func (s *Set) AddNode(n *lightdht.Node) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nodes = append(s.nodes, n)
}

// AddTransport adds a transport's counters that belong to no node, such
// as a crawler's (crawler.Crawler.TransportStats). Transports added stay:
// a closed one keeps its counts, so the sums do not fall when one crawl
// of a series replaces the last.
func (s *Set) AddTransport(stats func() krpc.Stats) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.transports = append(s.transports, stats)
}

// SetCrawl sets the function that returns the current crawl's progress.
func (s *Set) SetCrawl(progress func() crawler.Progress) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.crawl = progress
}

// SetDB sets the database whose Stats are read at each scrape.
func (s *Set) SetDB(d *db.DB) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.db = d
}

// Observe counts a sighting: the outcome of the query it reports and, for
// a reply, its round-trip time. Other sightings are ignored. It does not
// block.
func (s *Set) Observe(o observe.Sighting) {
	switch o.Source {
	case observe.SourceReply:
		s.outcomes.WithLabelValues(o.Method, "reply").Inc()
		if o.RTT > 0 {
			s.rtt.Observe(o.RTT.Seconds())
		}
	case observe.SourceTimeout:
		s.outcomes.WithLabelValues(o.Method, "timeout").Inc()
	}
}

// Tee returns an observer that gives each sighting to s, then to next if
// next is not nil.
func (s *Set) Tee(next observe.Observer) observe.Observer {
	if next == nil {
		return s
	}
	return observe.ObserverFunc(func(o observe.Sighting) {
		s.Observe(o)
		next.Observe(o)
	})
}

// addStats returns a+b, field by field; every counter of krpc.Stats is a
// uint64.
func addStats(a, b krpc.Stats) krpc.Stats {
	va, vb := reflect.ValueOf(&a).Elem(), reflect.ValueOf(b)
	for i := range va.NumField() {
		if f := va.Field(i); f.Kind() == reflect.Uint64 {
			f.SetUint(f.Uint() + vb.Field(i).Uint())
		}
	}
	return a
}
