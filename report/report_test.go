package report_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lightdht/lightdht/db"
	"github.com/lightdht/lightdht/krpc"
	"github.com/lightdht/lightdht/observe"
	"github.com/lightdht/lightdht/report"
)

// history writes three crawls an hour apart of 300 nodes (five clients,
// RTTs of 5 to 305 ms, one IP with four IDs), with 30 nodes off in the
// second crawl, and returns the file's path.
func history(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "history.db")
	d, err := db.Open(path, db.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	versions := []string{"LT\x02\x00", "UT\x03\x05", "TR\x04\x00", "LD\x00\x01", ""}
	nodes := make([]krpc.NodeInfo, 300)
	for i := range nodes {
		ip := netip.AddrFrom4([4]byte{1, 2, byte(i / 250), byte(i%250 + 1)})
		if i >= 296 {
			ip = netip.AddrFrom4([4]byte{9, 9, 9, 9}) // four IDs on one IP
		}
		nodes[i] = krpc.NodeInfo{ID: krpc.RandomID(), Addr: netip.AddrPortFrom(ip, uint16(6881+i))}
	}
	base := time.UnixMilli(1_700_000_000_000)
	for c := range 3 {
		start := base.Add(time.Duration(c) * time.Hour)
		run, err := d.StartRun(db.RunInfo{Started: start, Vantage: "127.0.0.1:6881", Host: "test"})
		if err != nil {
			t.Fatal(err)
		}
		for i, n := range nodes {
			at := start.Add(time.Duration(i) * 100 * time.Millisecond)
			v := observe.Visit{Node: n, Time: at, Outcome: observe.OutcomeReplied, Queries: 1,
				RTT: time.Duration(5+i) * time.Millisecond, Version: versions[i%len(versions)]}
			src := observe.SourceReply
			if c == 1 && i < 30 {
				v = observe.Visit{Node: n, Time: at, Outcome: observe.OutcomeTimeout, Queries: 2}
				src = observe.SourceTimeout
			}
			d.Observe(observe.Sighting{Node: n, Time: at, Source: src, Version: v.Version, RTT: v.RTT})
			d.RecordVisit(v)
		}
		if err := d.EndRun(run, db.RunCounts{Ended: start.Add(time.Minute), NodesFound: 300, NodesReplied: 300}); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// render writes the report of path and returns it.
func render(t *testing.T, path string, opts report.Options) string {
	t.Helper()
	q, err := db.OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	var buf bytes.Buffer
	opts.Source = path
	if err := report.Write(context.Background(), q, &buf, opts); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// TestReportSelfContained: the report of a three-crawl history has every
// figure, each with a title and a caption, its numbers agree with the
// history, and it refers to nothing outside itself.
func TestReportSelfContained(t *testing.T) {
	page := render(t, history(t), report.Options{})
	for _, title := range []string{"Summary", "Nodes over the crawl", "Queries per second", "Visits by outcome", "Round-trip time of first answers",
		"Client versions", "BEP 42 compliance by client", "Sybil suspects", "Uniformity of the ID space",
		"Network size and churn", "Session lengths", "Client mix per crawl"} {
		if !strings.Contains(page, "<h3>"+title+"</h3>") {
			t.Errorf("no figure %q", title)
		}
	}
	if got, want := strings.Count(page, "<figure>"), 12; got != want {
		t.Errorf("%d figures, want %d", got, want)
	}
	if got, want := strings.Count(page, "<figcaption>"), strings.Count(page, "<figure>"); got != want {
		t.Errorf("%d captions for %d figures", got, want)
	}
	// Ten plots: all figures but the summary and the Sybil table.
	if got := strings.Count(page, "<svg"); got != 10 {
		t.Errorf("%d inline SVG plots, want 10", got)
	}
	// Nothing is fetched: no scripts, links, sources or CSS URLs. (The
	// SVG namespace URIs name, they do not fetch.)
	for _, bad := range []string{"<script", "<link", "src=", "href=", "url(", "@import", "<iframe", "<img"} {
		if strings.Contains(page, bad) {
			t.Errorf("the report contains %q", bad)
		}
	}
	// The latest crawl is the third, with 300 replies; the second had
	// 30 timeouts, so the third has 30 entered and the second 30 left.
	for _, want := range []string{"<h2>Crawl 3</h2>", "<td>replied</td><td>300</td>", "9.9.9.9</td><td>4</td>",
		"<td>2</td><td>2023-11-14T23:13:20Z</td><td>270</td><td>0</td><td>30</td><td>–</td>",
		"<td>3</td><td>2023-11-15T00:13:20Z</td><td>300</td><td>30</td><td>0</td><td>–</td>",
		// 300 queries, one per visit, over the 30 s of visits.
		"<td>sent to visited nodes</td><td>300</td>"} {
		if !strings.Contains(page, want) {
			t.Errorf("the report lacks %q", want)
		}
	}
	// Axis labels carry units.
	for _, label := range []string{"round-trip time (ms)", "time since the crawl started (s)", "session length (hours)"} {
		if !strings.Contains(page, label) {
			t.Errorf("no axis label %q", label)
		}
	}
	// A report of the second crawl shows its timeouts.
	if p2 := render(t, history(t), report.Options{Crawl: 2}); !strings.Contains(p2, "<td>timeout</td><td>30</td>") {
		t.Error("the report of crawl 2 does not show its 30 timeouts")
	}
}

// TestReportErrors: a crawl that does not exist, and a file without
// crawls, give ErrNoCrawl.
func TestReportErrors(t *testing.T) {
	path := history(t)
	q, err := db.OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if err := report.Write(context.Background(), q, &bytes.Buffer{}, report.Options{Crawl: 99}); !errors.Is(err, report.ErrNoCrawl) {
		t.Errorf("crawl 99: %v, want ErrNoCrawl", err)
	}
	empty := filepath.Join(t.TempDir(), "empty.db")
	d, err := db.Open(empty, db.Options{})
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	q2, err := db.OpenReadOnly(empty)
	if err != nil {
		t.Fatal(err)
	}
	defer q2.Close()
	if err := report.Write(context.Background(), q2, &bytes.Buffer{}, report.Options{}); !errors.Is(err, report.ErrNoCrawl) {
		t.Errorf("empty file: %v, want ErrNoCrawl", err)
	}
}

// TestReportInChromium opens the report in headless Chromium with a
// fresh profile, every host unresolvable and every request sent to a
// proxy the test holds: the page renders, with drawn content in every
// plot, with no request (the proxy sees no connection) and no console
// message. It saves a screenshot.
func TestReportInChromium(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("chromium is not installed: .ci/run installs it (Debian package chromium)")
		}
		t.Skip("chromium is not installed; apt-get install chromium")
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "report.html")
	if err := os.WriteFile(file, []byte(render(t, history(t), report.Options{})), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute) // a hang guard
	defer cancel()
	// The proxy every request goes through, which answers none: it
	// notes the host each request is for. Chromium itself asks its
	// update and account services (hosts under google.com and
	// googleapis.com) whatever the flags; any other host is one the page
	// asked for.
	proxy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	var (
		mu    sync.Mutex
		hosts []string
		bare  int // connections closed before a request line
	)
	go func() {
		for {
			c, err := proxy.Accept()
			if err != nil {
				return
			}
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			line, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			mu.Lock()
			if line == "" {
				// Chromium opens spare connections to the proxy ahead of
				// need and closes them unused when it exits: no request,
				// so no host, was sent on them.
				bare++
			} else {
				hosts = append(hosts, requestHost(line))
			}
			mu.Unlock()
		}
	}()
	run := func(args ...string) ([]byte, string) {
		t.Helper()
		base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
			"--no-default-browser-check", "--disable-background-networking", "--disable-component-update",
			"--disable-sync", "--disable-extensions", "--disable-default-apps", "--no-pings",
			"--disable-domain-reliability", "--user-data-dir=" + filepath.Join(dir, "profile"),
			// Every request goes to the proxy the test holds, and no
			// host but the proxy's resolves.
			"--proxy-server=http://" + proxy.Addr().String(),
			"--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
			// The page's console messages go to stderr, as CONSOLE lines.
			"--enable-logging=stderr", "--v=0"}
		cmd := exec.CommandContext(ctx, chromium, append(base, args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
		}
		return out, stderr.String()
	}
	domOut, logs := run("--dump-dom", "file://"+file)
	dom := string(domOut)
	if got := strings.Count(dom, "<svg"); got != 10 {
		t.Errorf("Chromium's DOM has %d SVG plots, want 10", got)
	}
	// Every plot has drawn content: paths beyond its frame.
	for i, part := range strings.Split(dom, "<svg")[1:] {
		end := strings.Index(part, "</svg>")
		if end < 0 || strings.Count(part[:end], "<path") < 5 {
			t.Errorf("plot %d has no drawn content", i+1)
		}
	}
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, "CONSOLE") {
			t.Errorf("console message: %s", line)
		}
	}
	if n := len(regexp.MustCompile(`<figcaption>`).FindAllString(dom, -1)); n != 12 {
		t.Errorf("Chromium's DOM has %d captions, want 12", n)
	}
	shot := filepath.Join(dir, "shot.png")
	if _, logs := run("--screenshot="+shot, "--window-size=1280,4000", "file://"+file); strings.Contains(logs, "CONSOLE") {
		t.Errorf("console messages while rendering the screenshot:\n%s", logs)
	}
	st, err := os.Stat(shot)
	if err != nil || st.Size() < 50_000 {
		t.Errorf("screenshot %v (%v): want a rendered page of plots", st, err)
	}
	mu.Lock()
	defer mu.Unlock()
	own := 0
	for _, h := range hosts {
		if strings.HasSuffix(h, ".google.com") || strings.HasSuffix(h, ".googleapis.com") {
			own++
			continue
		}
		t.Errorf("the page made a network request for %q", h)
	}
	t.Logf("%d requests of Chromium's own services, answered by nobody; %d connections closed unused", own, bare)
}

// requestHost returns the host of a proxy request line: "CONNECT
// host:port HTTP/1.1" or "GET http://host/path HTTP/1.1".
func requestHost(line string) string {
	f := strings.Fields(line)
	if len(f) < 2 {
		return line
	}
	target := f[1]
	if u, err := url.Parse(target); err == nil && u.Host != "" {
		return u.Hostname()
	}
	if h, _, err := net.SplitHostPort(target); err == nil {
		return h
	}
	return target
}

// TestReportEnriched: once the file has countries and networks, the
// report adds a figure of each, with the shares of the crawl's answering
// nodes.
func TestReportEnriched(t *testing.T) {
	path := history(t)
	d, err := db.Open(path, db.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// 1.2.0.0/24 is "DE" in AS 64500, the rest "FR" with no network.
	res, err := d.Enrich(context.Background(), func(ip netip.Addr) (db.IPInfo, bool, error) {
		if b := ip.As4(); b[0] == 1 && b[2] == 0 {
			return db.IPInfo{Country: "DE", ASN: 64500, Org: "Example"}, true, nil
		}
		return db.IPInfo{Country: "FR"}, true, nil
	}, false)
	if err != nil || res.Looked != 297 {
		t.Fatalf("Enrich: %+v, %v; want the 297 IPs", res, err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	page := render(t, path, report.Options{})
	// 250 of the 300 nodes are in 1.2.0.0/24, 46 in 1.2.1.0/24 and 4 on
	// 9.9.9.9.
	for _, want := range []string{"<h3>Countries by share of answering nodes</h3>", "<h3>Networks by share of answering nodes</h3>",
		"<td>DE</td><td>250</td><td>83.3%</td>", "<td>FR</td><td>50</td><td>16.7%</td>",
		"<td>AS64500 Example</td><td>250</td>", "<td>unknown</td><td>50</td>"} {
		if !strings.Contains(page, want) {
			t.Errorf("the enriched report lacks %q", want)
		}
	}
	if got := strings.Count(page, "<svg"); got != 12 {
		t.Errorf("%d plots in the enriched report, want 12", got)
	}
}

// TestReportZoneInterval: a zone crawl's estimate comes with the 95%
// interval of the count in its zone: 100 nodes in an 8-bit zone estimate
// 25,600, ±1.96 × √100 × 256.
func TestReportZoneInterval(t *testing.T) {
	path := filepath.Join(t.TempDir(), "zone.db")
	d, err := db.Open(path, db.Options{})
	if err != nil {
		t.Fatal(err)
	}
	run, err := d.StartRun(db.RunInfo{Config: map[string]string{"zone": "ab/8"}})
	if err != nil {
		t.Fatal(err)
	}
	d.RecordVisit(observe.Visit{Node: krpc.NodeInfo{ID: krpc.RandomID(), Addr: netip.MustParseAddrPort("1.2.3.4:6881")},
		Outcome: observe.OutcomeReplied, Queries: 1})
	if err := d.EndRun(run, db.RunCounts{SizeEstimate: 25600}); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	page := render(t, path, report.Options{})
	if want := "<td>95% interval (count in the zone alone)</td><td>20582 – 30618 (±19.6%)</td>"; !strings.Contains(page, want) {
		t.Errorf("the report of a zone crawl lacks %q", want)
	}
}
