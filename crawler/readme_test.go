package crawler_test

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lightdht/lightdht/crawler"
	"github.com/lightdht/lightdht/db"
	"github.com/lightdht/lightdht/internal/simnet"
	"github.com/lightdht/lightdht/krpc"
)

// readmeQueries returns the SQL blocks of the README's research section.
func readmeQueries(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	start := strings.Index(text, "## Research queries")
	if start < 0 {
		t.Fatal("README has no research queries section")
	}
	section := text[start+1:]
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	var out []string
	for {
		i := strings.Index(section, "```sql\n")
		if i < 0 {
			return out
		}
		section = section[i+len("```sql\n"):]
		j := strings.Index(section, "```")
		out = append(out, section[:j])
		section = section[j:]
	}
}

// TestREADMEQueries crawls a small network into a database twice, the
// way a researcher would, with five nodes stopped between the crawls,
// records a country and network for every IP, and runs every query of
// the README on it: each must run and return rows.
func TestREADMEQueries(t *testing.T) {
	queries := readmeQueries(t)
	if len(queries) != 13 {
		t.Fatalf("README has %d research queries, want 13", len(queries))
	}
	path := filepath.Join(t.TempDir(), "lightdht.db")
	synctest.Test(t, func(t *testing.T) {
		// Opened in the bubble: its writer answers the runs' requests.
		store, err := db.Open(path, db.Options{Reports: true, Neighbours: true})
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		sim := newSim(t, simnet.Config{Seed: 4, Latency: 5 * time.Millisecond})
		addrs := loopbackAddrs(60)
		// Three node IDs behind one IP, for the Sybil query.
		for port := range 3 {
			addrs = append(addrs, netip.AddrPortFrom(netip.MustParseAddr("127.3.0.1"), uint16(7000+port)))
		}
		dn := newDHTNet(t, sim, addrs, nil)
		for i := range 20 {
			dn.nodes[i].Announce(context.Background(), krpc.RandomID(), 6000+i)
		}
		crawl := func() {
			conn, _ := sim.NewConn4()
			c, err := crawler.New(crawler.Config{Conn: conn, Bootstrap: dn.addrs[:1], TestNet: true, Rate: 1000,
				Timeout: time.Second, Infohashes: true, Recorder: store})
			if err != nil {
				t.Fatal(err)
			}
			run, err := store.StartRun(db.RunInfo{})
			if err != nil {
				t.Fatal(err)
			}
			res, err := c.Run(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if err := store.EndRun(run, db.RunCounts{NodesFound: int64(res.Discovered), NodesReplied: int64(res.Replied)}); err != nil {
				t.Fatal(err)
			}
		}
		crawl()
		for _, n := range dn.nodes[50:55] {
			n.Close()
		}
		time.Sleep(time.Hour)
		crawl()
		// Countries and networks, as lightdht enrich would record them
		// from .mmdb files (package enrich has the real reader's tests).
		if _, err := store.Enrich(context.Background(), func(ip netip.Addr) (db.IPInfo, bool, error) {
			return db.IPInfo{Country: "DE", ASN: 64500, Org: "Example"}, true, nil
		}, false); err != nil {
			t.Fatal(err)
		}
		if err := store.Close(); err != nil {
			t.Fatal(err)
		}
	})
	q, err := db.OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	for i, query := range queries {
		rows, err := q.Query(query)
		if err != nil {
			t.Fatalf("query %d does not run: %v\n%s", i+1, err, query)
		}
		cols, _ := rows.Columns()
		n := 0
		for rows.Next() {
			n++
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("query %d: %v", i+1, err)
		}
		rows.Close()
		if n == 0 {
			t.Errorf("query %d returned no rows on two test crawls\n%s", i+1, query)
		}
		t.Logf("query %d: %d rows, columns %v", i+1, n, cols)
	}
	var nodes, replied int
	if err := q.QueryRow("SELECT count(*), sum(replies > 0) FROM nodes").Scan(&nodes, &replied); err != nil {
		t.Fatal(err)
	}
	if nodes != 63 || replied != 63 {
		t.Errorf("database holds %d nodes, %d replied; want all 63 of the network", nodes, replied)
	}
	var left int
	if err := q.QueryRow("SELECT left FROM crawl_churn WHERE crawl = 2").Scan(&left); err != nil || left != 5 {
		t.Errorf("crawl 2: %d nodes left (%v), want the 5 stopped", left, err)
	}
}
