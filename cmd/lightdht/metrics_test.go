package main

import (
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape fetches url over loopback HTTP and parses it with the
// Prometheus text parser.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	if !strings.HasPrefix(url, "http://127.") {
		t.Fatalf("metrics URL %q is not on loopback", url)
	}
	cl := &http.Client{Timeout: hangGuard}
	resp, err := cl.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	return fams
}

// value returns the sum of the samples of the family name whose labels
// include want (name=value pairs); 0 if there are none. A histogram
// counts its observations.
func value(fams map[string]*dto.MetricFamily, name string, want ...string) float64 {
	f := fams[name]
	if f == nil {
		return 0
	}
	var sum float64
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(want); i += 2 {
			found := false
			for _, lp := range m.Label {
				if lp.GetName() == want[i] && lp.GetValue() == want[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum
}

// TestMetricsNode runs "lightdht node --metrics 127.0.0.1:0" with a
// bootstrap that never answers, so that the test's pings are its only
// incoming traffic, and checks that the counters move by the pings sent.
func TestMetricsNode(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "node.db")
	node := startProc(t, "node", "--listen", "127.51.1.1:0", "--bootstrap", silentAddr(t, "127.51.0.1"), "--db", path, "--json", "--metrics", "127.0.0.1:0")
	started := decode[map[string]string](t, node.first)
	url := started["metrics"]
	if !strings.HasPrefix(url, "http://127.0.0.1:") || !strings.HasSuffix(url, "/metrics") {
		t.Fatalf("node started without a metrics URL: %s", node.first)
	}

	before := scrape(t, url)
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total", "lightdht_packets_received_total",
		"lightdht_dropped_packets_total", "lightdht_routing_table_nodes", "lightdht_db_queue_items", "lightdht_query_rtt_seconds"} {
		if before[name] == nil {
			t.Errorf("no %s in the first scrape", name)
		}
	}
	if got := before["lightdht_queries_sent_total"].GetType(); got != dto.MetricType_COUNTER {
		t.Errorf("lightdht_queries_sent_total is a %v, want a counter", got)
	}
	if v := value(before, "lightdht_nodes"); v != 1 {
		t.Errorf("lightdht_nodes = %v, want 1", v)
	}

	const pings = 3
	for range pings {
		ok(t, nil, "ping", started["addr"], "--json", "--timeout", queryWait.String())
	}
	// The node counts a reply once its write has returned, which can be
	// after the ping has read it: scrape until every reply is counted,
	// then check the exact values.
	after := scrape(t, url)
	replies := func() float64 {
		return value(after, "lightdht_replies_sent_total") - value(before, "lightdht_replies_sent_total")
	}
	for hung := time.Now().Add(hangGuard); replies() < pings; after = scrape(t, url) {
		if time.Now().After(hung) {
			t.Fatalf("lightdht_replies_sent_total moved by %v after %d pings, still after %v", replies(), pings, hangGuard)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, c := range []struct {
		name   string
		labels []string
	}{
		{"lightdht_queries_handled_total", []string{"method", "ping"}},
		{"lightdht_queries_received_total", nil},
		{"lightdht_replies_sent_total", nil},
	} {
		if d := value(after, c.name, c.labels...) - value(before, c.name, c.labels...); d != pings {
			t.Errorf("%s%v moved by %v after %d pings, want %d", c.name, c.labels, d, pings, pings)
		}
	}
	if d := value(after, "lightdht_packets_received_total") - value(before, "lightdht_packets_received_total"); d < pings {
		t.Errorf("lightdht_packets_received_total moved by %v after %d pings", d, pings)
	}

	// pprof is served on the same listener.
	resp, err := (&http.Client{Timeout: hangGuard}).Get(strings.TrimSuffix(url, "/metrics") + "/debug/pprof/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /debug/pprof/: %s", resp.Status)
	}

	if _, stderr := node.stop(); !strings.Contains(stderr, "metrics "+url+"\n") {
		t.Errorf("stderr does not announce %s:\n%s", url, stderr)
	}
}

// TestMetricsCrawl scrapes "lightdht testnet --metrics" and a continuous
// "lightdht crawl --testnet --metrics" of it while the crawl runs: the
// crawl's progress, RTT histogram and database counters fill, and the
// test network's handled queries grow by at least one per node answering.
func TestMetricsCrawl(t *testing.T) {
	t.Parallel()
	const nodes = 6
	tn, _ := startStoppableTestnet(t, nodes, "127.52.0.1", "--metrics", "127.0.0.1:0")
	if tn.Metrics == "" {
		t.Fatal("testnet printed no metrics URL")
	}
	netBefore := scrape(t, tn.Metrics)
	if v := value(netBefore, "lightdht_nodes"); v != nodes {
		t.Errorf("testnet lightdht_nodes = %v, want %d", v, nodes)
	}
	if v := value(netBefore, "lightdht_routing_table_nodes", "family", "ipv4"); v < nodes {
		t.Errorf("testnet routing tables hold %v nodes in all, want at least %d after the join", v, nodes)
	}

	path := filepath.Join(t.TempDir(), "crawl.db")
	args := []string{"crawl", "--testnet", "--continuous", "--bootstrap", tn.Bootstrap, "--listen", "127.52.1.1:0",
		"--db", path, "--progress", "100ms", "--metrics", "127.0.0.1:0"}
	cmd, w, _ := startWatched(t, nodes, args...)
	select {
	case <-w.replied:
	case <-w.drained:
		t.Fatalf("crawl ended early; stderr:\n%s", w.text())
	case <-time.After(hangGuard):
		cmd.Process.Kill()
		t.Fatalf("no %d nodes replied after %v; stderr:\n%s", nodes, hangGuard, w.text())
	}
	var url string
	for _, line := range strings.Split(w.text(), "\n") {
		if u, ok := strings.CutPrefix(line, "metrics "); ok {
			url = u
		}
	}
	if url == "" {
		t.Fatalf("crawl announced no metrics URL; stderr:\n%s", w.text())
	}
	// The gauges are read from the crawl's progress reports; wait for one
	// that has every node answering.
	var fams = scrape(t, url)
	for hung := time.Now().Add(hangGuard); value(fams, "lightdht_crawl_nodes_answering") < nodes; {
		if time.Now().After(hung) {
			t.Fatalf("lightdht_crawl_nodes_answering still %v after %v", value(fams, "lightdht_crawl_nodes_answering"), hangGuard)
		}
		time.Sleep(100 * time.Millisecond)
		fams = scrape(t, url)
	}
	answering := value(fams, "lightdht_crawl_nodes_answering")
	if found := value(fams, "lightdht_crawl_nodes_found"); found < answering {
		t.Errorf("crawl found %v nodes, fewer than the %v answering", found, answering)
	}
	for _, name := range []string{"lightdht_queries_sent_total", "lightdht_replies_received_total", "lightdht_query_rtt_seconds"} {
		if v := value(fams, name); v < answering {
			t.Errorf("%s = %v, below the %v nodes answering", name, v, answering)
		}
	}
	if v := value(fams, "lightdht_query_outcomes_total", "outcome", "reply"); v < answering {
		t.Errorf("lightdht_query_outcomes_total{outcome=reply} = %v, below %v", v, answering)
	}
	if v := value(fams, "lightdht_db_items_enqueued_total"); v < answering {
		t.Errorf("lightdht_db_items_enqueued_total = %v, below %v", v, answering)
	}
	if fams["lightdht_db_queue_items"] == nil || fams["lightdht_crawl_nodes_queued"] == nil || fams["lightdht_crawl_queries_in_flight"] == nil {
		t.Error("crawl metrics lack the queue depth, the queued nodes or the queries in flight")
	}
	netAfter := scrape(t, tn.Metrics)
	if d := value(netAfter, "lightdht_queries_handled_total") - value(netBefore, "lightdht_queries_handled_total"); d < answering {
		t.Errorf("the test network handled %v more queries during the crawl, fewer than the %v nodes that answered it", d, answering)
	}
	interrupt(t, cmd, w)
	noCrash(t, args, w.text())
	checkREADMEMetrics(t, netAfter, fams)
}

// checkREADMEMetrics checks that the README's metrics table lists every
// lightdht_ metric of the scrapes, and nothing the scrapes lack.
func checkREADMEMetrics(t *testing.T, scrapes ...map[string]*dto.MetricFamily) {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	start := strings.Index(text, "\n## Metrics\n")
	if start < 0 {
		t.Fatal("README has no Metrics section")
	}
	section := text[start+1:]
	section = section[:strings.Index(section, "\n## ")]
	listed := map[string]bool{}
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		first := strings.Split(line, "|")[1]
		for _, name := range regexp.MustCompile("`([a-z0-9_]+)`").FindAllStringSubmatch(first, -1) {
			listed["lightdht_"+name[1]] = true
		}
	}
	scraped := map[string]bool{}
	for _, fams := range scrapes {
		for name := range fams {
			if strings.HasPrefix(name, "lightdht_") {
				scraped[name] = true
			}
		}
	}
	for name := range scraped {
		if !listed[name] {
			t.Errorf("%s is exported but not in the README's metrics table", name)
		}
	}
	for name := range listed {
		if !scraped[name] {
			t.Errorf("the README lists %s, which no scrape has", name)
		}
	}
}
