package shard_test

import (
	"bufio"
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lightdht/lightdht/db"
	"github.com/lightdht/lightdht/internal/cmdtest"
	"github.com/lightdht/lightdht/internal/pgtest"
)

// hangGuard bounds every wait on a subprocess.
const hangGuard = cmdtest.HangGuard

// buildLightdht builds the lightdht command into a temporary folder
// (with -race when the tests run with it) and returns its path.
func buildLightdht(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "lightdht")
	if err := cmdtest.Build("../cmd/lightdht", bin); err != nil {
		t.Fatal(err)
	}
	return bin
}

// startTestnet runs a loopback test network of n nodes from IP first
// until the test ends, and returns it once it is ready.
func startTestnet(t *testing.T, bin string, n int, first string) cmdtest.Testnet {
	t.Helper()
	tn, _ := cmdtest.StartTestnet(t, bin, n, first)
	return tn
}

// proc is a lightdht crawl --shared process whose stderr is watched.
type proc struct {
	cmd     *exec.Cmd
	stdout  bytes.Buffer
	mu      sync.Mutex
	stderr  bytes.Buffer
	claimed chan int // the zone of each "zone N (...) claimed" line
	done    chan struct{}
}

var claimedLine = regexp.MustCompile(`^zone (\d+) \(.*\) claimed`)

// startCrawl starts lightdht with args; the test kills it if it is
// still running at the end.
func startCrawl(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	if err := cmdtest.CheckLoopback(nil, args); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: exec.Command(bin, args...), claimed: make(chan int, 16), done: make(chan struct{})}
	p.cmd.Env = cmdtest.CleanEnv()
	p.cmd.Stdout = &p.stdout
	se, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(se)
		for sc.Scan() {
			p.mu.Lock()
			p.stderr.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			if m := claimedLine.FindStringSubmatch(sc.Text()); m != nil {
				var z int
				fmt.Sscan(m[1], &z)
				p.claimed <- z
			}
		}
		p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

func (p *proc) text() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// wait waits for p to exit and returns its exit code.
func (p *proc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(hangGuard):
		t.Fatalf("%v still running after %v; stderr:\n%s", p.cmd.Args, hangGuard, p.text())
	}
	return p.cmd.ProcessState.ExitCode()
}

// nextClaim waits for p's next zone claim.
func (p *proc) nextClaim(t *testing.T) int {
	t.Helper()
	select {
	case z := <-p.claimed:
		return z
	case <-p.done:
		t.Fatalf("%v exited without claiming a zone; stderr:\n%s", p.cmd.Args, p.text())
	case <-time.After(hangGuard):
		t.Fatalf("%v claimed no zone in %v; stderr:\n%s", p.cmd.Args, hangGuard, p.text())
	}
	return -1
}

// sharedSummary is the part of crawl --shared --json the test reads.
type sharedSummary struct {
	Run      int64 `json:"run"`
	Zones    int   `json:"zones"`
	Claims   int64 `json:"claims"`
	Nodes    int64 `json:"nodes"`
	Replied  int64 `json:"replied"`
	Crawled  int   `json:"zones_crawled_here"`
	Recorded bool  `json:"recorded_end"`
}

// TestSharedCrawlProcesses: four lightdht crawl --shared processes crawl
// a loopback test network of 40 nodes in 4 zones; the first, slowed to a
// crawl by its --rate, is killed (SIGKILL) while it holds its zone. The
// other three finish their zones, wait for the dead one's lease to run
// out, and one of them crawls that zone again: the crawl completes, its
// end recorded once, and the union of the nodes that answered covers the
// test network. Bad --shared command lines are refused first.
func TestSharedCrawlProcesses(t *testing.T) {
	bin := buildLightdht(t)
	url := pgtest.Database(t)
	tn := startTestnet(t, bin, 40, "127.31.0.1")

	// Usage errors, exit code 2, before anything is crawled.
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"sqlite", []string{"--db", filepath.Join(t.TempDir(), "x.db"), "--shared", "x"}, "needs a PostgreSQL --db"},
		{"bits", []string{"--db", url, "--shared", "x", "--zones-bits", "17"}, "out of range"},
		{"zone", []string{"--db", url, "--shared", "x", "--zone", "ab/8"}, "does not combine"},
		{"parallel", []string{"--db", url, "--shared", "x", "--parallel", "0"}, "--parallel 0"},
		{"overlap alone", []string{"--db", url, "--overlap"}, "--overlap needs --shared"},
	} {
		p := startCrawl(t, bin, append([]string{"crawl", "--testnet", "--bootstrap", tn.Bootstrap}, tc.args...)...)
		if code := p.wait(t); code != 2 || !strings.Contains(p.text(), tc.want) {
			t.Errorf("%s: exit %d, stderr %q; want 2 and %q", tc.name, code, p.text(), tc.want)
		}
	}

	args := func(extra ...string) []string {
		return append([]string{"crawl", "--testnet", "--bootstrap", tn.Bootstrap, "--db", url, "--shared", "census",
			"--zones-bits", "2", "--lease", "3s", "--json"}, extra...)
	}
	dead := startCrawl(t, bin, args("--rate", "0.2")...)
	deadZone := dead.nextClaim(t)
	var live []*proc
	for range 3 {
		p := startCrawl(t, bin, args()...)
		p.nextClaim(t)
		live = append(live, p)
	}
	dead.cmd.Process.Kill()
	if dead.wait(t) == 0 {
		t.Fatalf("the killed crawler exited 0; stderr:\n%s", dead.text())
	}

	recorded := 0
	var run int64
	for i, p := range live {
		if code := p.wait(t); code != 0 {
			t.Fatalf("crawler %d: exit %d; stderr:\n%s", i, code, p.text())
		}
		var s sharedSummary
		if err := json.Unmarshal(p.stdout.Bytes(), &s); err != nil {
			t.Fatalf("crawler %d: summary %q: %v", i, p.stdout.String(), err)
		}
		t.Logf("crawler %d: %+v", i, s)
		if s.Zones != 4 || s.Claims < 5 {
			t.Errorf("crawler %d: %d zones, %d claims; want 4 zones, the dead one's claimed twice", i, s.Zones, s.Claims)
		}
		if s.Recorded {
			recorded++
		}
		run = s.Run
	}
	if recorded != 1 {
		t.Errorf("%d crawlers recorded the end of the crawl, want 1", recorded)
	}

	q, err := db.OpenReadOnly(url)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	var claims int
	var state string
	if err := q.QueryRow("SELECT claims, state FROM crawl_zones WHERE crawl = $1 AND zone = $2", run, deadZone).Scan(&claims, &state); err != nil {
		t.Fatal(err)
	}
	if claims < 2 || state != "done" {
		t.Errorf("the dead crawler's zone %d: %d claims, %s; want claimed again and done", deadZone, claims, state)
	}
	var ended bool
	if err := q.QueryRow("SELECT ended IS NOT NULL FROM crawl_runs WHERE id = $1", run).Scan(&ended); err != nil || !ended {
		t.Errorf("crawl_runs %d ended: %v, %v", run, ended, err)
	}
	answered := map[string]bool{}
	rows, err := q.Query(`SELECT id, ip, port FROM visit_details WHERE crawl = $1 AND outcome IN ('replied', 'error')`, run)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, ip string
		var port int
		if err := rows.Scan(&id, &ip, &port); err != nil {
			t.Fatal(err)
		}
		answered[id+" "+netip.AddrPortFrom(netip.MustParseAddr(ip), uint16(port)).String()] = true
	}
	rows.Close()
	missing := 0
	for _, n := range tn.Nodes {
		if !answered[n.ID+" "+n.Addr] {
			missing++
			t.Logf("test node %s %s not found answering; its visits: %s", n.ID, n.Addr, visitsOf(t, q, run, n.ID))
		}
	}
	// As in a crawl by one process, a node that few tables hold may be
	// missed (about 1 in 300): one of the 40 may be missing.
	if missing > 1 {
		t.Errorf("%d of the %d test nodes not found answering", missing, len(tn.Nodes))
	}
	// The name is taken, with 2 zone bits: another number is refused.
	p := startCrawl(t, bin, "crawl", "--testnet", "--bootstrap", tn.Bootstrap, "--db", url, "--shared", "census", "--zones-bits", "3")
	if code := p.wait(t); code != 2 || !strings.Contains(p.text(), "has 2 zone bits, not 3") {
		t.Errorf("--zones-bits 3 for a crawl of 2: exit %d, stderr %q; want 2 and the bits named", code, p.text())
	}
	var vantages int
	if err := q.QueryRow("SELECT count(DISTINCT vantage) FROM visits WHERE crawl = $1", run).Scan(&vantages); err != nil || vantages < 3 {
		t.Errorf("visits name %d vantages (%v), want at least the 3 live crawlers'", vantages, err)
	}
}

// visitsOf describes the visits of the crawl to the node with this ID,
// for a failure message: outcome, skip reason and vantage of each.
func visitsOf(t *testing.T, q *sql.DB, run int64, id string) string {
	t.Helper()
	rows, err := q.Query(`SELECT o.name, coalesce(s.name, ''), coalesce(va.address, '?') FROM visits v
		JOIN nodes n ON n.ref = v.node JOIN visit_outcomes o ON o.outcome = v.outcome
		LEFT JOIN visit_skips s ON s.skipped = v.skipped LEFT JOIN vantages va ON va.ref = v.vantage
		WHERE v.crawl = $1 AND n.id = $2 ORDER BY v.time`, run, id)
	if err != nil {
		return err.Error()
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var outcome, skipped, vantage string
		if err := rows.Scan(&outcome, &skipped, &vantage); err != nil {
			return err.Error()
		}
		out = append(out, fmt.Sprintf("%s %s from %s", outcome, skipped, vantage))
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, "; ")
}
