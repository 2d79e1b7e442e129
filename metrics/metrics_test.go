package metrics_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/lightdht/lightdht"
	"github.com/lightdht/lightdht/crawler"
	"github.com/lightdht/lightdht/krpc"
	"github.com/lightdht/lightdht/metrics"
	"github.com/lightdht/lightdht/observe"
)

// hangGuard only stops a hung test; nothing waits on it otherwise.
const hangGuard = 2 * time.Minute

func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := (&http.Client{Timeout: hangGuard}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// one returns the value of the sample of name whose labels include the
// given name=value pair (none: the only sample); -1 if there is none.
func one(fams map[string]*dto.MetricFamily, name string, label ...string) float64 {
	for _, m := range fams[name].GetMetric() {
		match := len(label) < 2
		for _, lp := range m.Label {
			if len(label) == 2 && lp.GetName() == label[0] && lp.GetValue() == label[1] {
				match = true
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return -1
}

func listen(t *testing.T) net.PacketConn {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestMetricsSources serves a Set over loopback with a real node, an
// extra transport, a crawl progress and sightings, and checks each
// reaches the scrape with its value.
func TestMetricsSources(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	set := metrics.New()
	node, err := lightdht.New(lightdht.Config{Conn4: listen(t), NoMaintenance: true, Observer: set})
	if err != nil {
		t.Fatal(err)
	}
	go node.Serve(ctx)
	defer node.Close()
	set.AddNode(node)

	// A client transport, counted as a crawler's would be.
	tr, err := krpc.New(krpc.Config{Conn: listen(t)})
	if err != nil {
		t.Fatal(err)
	}
	go tr.Serve(ctx)
	defer tr.Close()
	set.AddTransport(tr.Stats)
	set.SetCrawl(func() crawler.Progress { return crawler.Progress{Discovered: 7, Replied: 5, Queued: 2, InFlight: 1} })

	srv, err := metrics.Serve("127.0.0.1:0", set.Handler())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if !strings.HasPrefix(srv.URL(), "http://127.0.0.1:") {
		t.Fatalf("URL %s", srv.URL())
	}

	const pings = 4
	for range pings {
		if _, err := tr.Query(ctx, node.Addr(), &krpc.Msg{Q: krpc.MethodPing, A: krpc.Args{ID: krpc.ID{1}}}); err != nil {
			t.Fatal(err)
		}
	}
	set.Observe(observe.Sighting{Source: observe.SourceReply, Method: "find_node", RTT: 30 * time.Millisecond})
	set.Observe(observe.Sighting{Source: observe.SourceTimeout, Method: "find_node"})
	set.Observe(observe.Sighting{Source: observe.SourceReported, Method: "find_node"})

	// The node's transport counts a reply once its write has returned,
	// which can be after the reply has reached the test: scrape until
	// every reply is counted, then check the exact values.
	fams := scrape(t, srv.URL())
	for hung := time.Now().Add(hangGuard); one(fams, "lightdht_replies_sent_total") < pings; fams = scrape(t, srv.URL()) {
		if time.Now().After(hung) {
			t.Fatalf("lightdht_replies_sent_total still %v after %v", one(fams, "lightdht_replies_sent_total"), hangGuard)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, c := range []struct {
		name  string
		label []string
		want  float64
		least bool // want is a lower bound
	}{
		{"lightdht_nodes", nil, 1, false},
		{"lightdht_queries_handled_total", []string{"method", "ping"}, pings, false},
		{"lightdht_replies_sent_total", nil, pings, false},
		// The sums of both transports: the test's pings, and whatever
		// the node sends the new node it heard from (which the test's
		// transport, having no handler, drops).
		{"lightdht_queries_sent_total", nil, pings, true},
		{"lightdht_replies_received_total", nil, pings, true},
		{"lightdht_queries_received_total", nil, pings, true},
		// The sightings given to Observe above, and perhaps the timeout
		// of the node's own query.
		{"lightdht_query_outcomes_total", []string{"outcome", "timeout"}, 1, true},
		{"lightdht_query_outcomes_total", []string{"outcome", "reply"}, 1, false},
		{"lightdht_query_rtt_seconds", nil, 1, false},
		{"lightdht_crawl_nodes_found", nil, 7, false},
		{"lightdht_crawl_nodes_answering", nil, 5, false},
		{"lightdht_crawl_nodes_queued", nil, 2, false},
		{"lightdht_crawl_queries_in_flight", nil, 1, false},
		{"lightdht_dropped_packets_total", []string{"reason", "malformed"}, 0, false},
	} {
		got := one(fams, c.name, c.label...)
		if (!c.least && got != c.want) || (c.least && got < c.want) {
			t.Errorf("%s%v = %v, want %v (at least: %v)", c.name, c.label, got, c.want, c.least)
		}
	}
	if fams["go_goroutines"] == nil || fams["process_open_fds"] == nil {
		t.Error("no Go runtime or process metrics")
	}
	resp, err := (&http.Client{Timeout: hangGuard}).Get(strings.TrimSuffix(srv.URL(), "metrics") + "debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "goroutine profile") {
		t.Errorf("pprof: %s %.100q", resp.Status, body)
	}
	if err := srv.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := srv.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
