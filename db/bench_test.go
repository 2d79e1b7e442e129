package db

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lightdht/lightdht/internal/pgtest"
	"github.com/lightdht/lightdht/krpc"
	"github.com/lightdht/lightdht/observe"
)

// BenchmarkIngest measures sustained sightings per second through Observe
// into a file database, until Flush returns: 1M sightings over 200k
// nodes, each sighting a new node with probability 0.2 and otherwise a
// repeat of a uniformly chosen known node (few repeats fall in the same
// batch, so little is folded in memory). Sources: 70% reported, 20%
// replies with a version and an RTT, 5% queries, 5% timeouts.
//
// With visits=on, each node also gets one visit when it is first seen, as
// a crawl would report it (200,000 visits: 70% replied with a version and
// an RTT, 20% timed out, 10% not queried), all in one run; with
// visits=crawl-ratio, 4 nodes in 10 do (80,000 visits, one per 12.5
// sightings, the ratio of a crawl: BenchmarkCrawl1MHistory wrote 12.8
// sightings per visit). It reports
// the sightings per second (visits come on top), the bytes per visit of
// the visits table alone, and the bytes per visit of the whole file over
// the same ingest without visits (visits, sessions and the change-
// detection tables together).
func BenchmarkIngest(b *testing.B) {
	for _, bs := range []int{DefaultBatchSize, 131072} {
		b.Run(fmt.Sprintf("batch=%d", bs), func(b *testing.B) { benchIngest(b, false, bs, 0) })
	}
	b.Run(fmt.Sprintf("visits=on,batch=%d", DefaultBatchSize), func(b *testing.B) { benchIngest(b, false, DefaultBatchSize, 10) })
	b.Run(fmt.Sprintf("visits=crawl-ratio,batch=%d", DefaultBatchSize), func(b *testing.B) { benchIngest(b, false, DefaultBatchSize, 4) })
}

// BenchmarkIngestPostgres is BenchmarkIngest into a PostgreSQL database
// on a throwaway local server (internal/pgtest, with fsync off: the
// figure is the store's own work, not the disk's). The visits table's
// size is PostgreSQL's, pages and indexes included.
func BenchmarkIngestPostgres(b *testing.B) {
	b.Run(fmt.Sprintf("batch=%d", DefaultBatchSize), func(b *testing.B) { benchIngest(b, true, DefaultBatchSize, 0) })
	b.Run(fmt.Sprintf("visits=on,batch=%d", DefaultBatchSize), func(b *testing.B) { benchIngest(b, true, DefaultBatchSize, 10) })
	b.Run(fmt.Sprintf("visits=crawl-ratio,batch=%d", DefaultBatchSize), func(b *testing.B) { benchIngest(b, true, DefaultBatchSize, 4) })
}

// benchIngest ingests the sightings, and visits to visitTenths in 10 of
// the nodes (0: no visits; 10: every node, one visit per 5 sightings; 4:
// one per 12.5 sightings, near the 12.8 of BenchmarkCrawl1MHistory).
func benchIngest(b *testing.B, postgres bool, batch int, visitTenths int) {
	visits := visitTenths > 0
	visited := 0
	for n := range 200_000 {
		if n%10 < visitTenths {
			visited++
		}
	}
	const sightings, nodes = 1_000_000, 200_000
	rng := rand.New(rand.NewPCG(1, 2))
	infos := make([]krpc.NodeInfo, nodes)
	for i := range infos {
		var id krpc.ID
		for j := range id {
			id[j] = byte(rng.Uint32())
		}
		ip := netip.AddrFrom4([4]byte{byte(1 + rng.IntN(220)), byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32())})
		infos[i] = krpc.NodeInfo{ID: id, Addr: netip.AddrPortFrom(ip, uint16(1024+rng.IntN(60000)))}
	}
	seq := make([]int32, sightings)
	known := 0
	for i := range seq {
		if known == 0 || (known < nodes && rng.IntN(5) == 0) || sightings-i <= nodes-known {
			seq[i] = int32(known)
			known++
		} else {
			seq[i] = int32(rng.IntN(known))
		}
	}
	srcs := make([]observe.Source, 100)
	for i := range srcs {
		switch {
		case i < 70:
			srcs[i] = observe.SourceReported
		case i < 90:
			srcs[i] = observe.SourceReply
		case i < 95:
			srcs[i] = observe.SourceQuery
		default:
			srcs[i] = observe.SourceTimeout
		}
	}
	// ingest writes the sightings (and the visits, with withVisits) into
	// a new file, and returns its path and the time to Flush.
	ingest := func(withVisits bool) (string, time.Duration) {
		path := filepath.Join(b.TempDir(), "bench.db")
		if postgres {
			path = pgtest.Database(b)
		}
		d, err := Open(path, Options{BatchSize: batch})
		if err != nil {
			b.Fatal(err)
		}
		var run int64
		if withVisits {
			if run, err = d.StartRun(RunInfo{}); err != nil {
				b.Fatal(err)
			}
		}
		base := time.Now()
		seen := 0
		start := time.Now()
		for i, n := range seq {
			src := srcs[i%len(srcs)]
			s := observe.Sighting{
				Node: infos[n], Time: base.Add(time.Duration(i) * time.Microsecond),
				Source: src, Method: krpc.MethodFindNode, SecureID: i%3 != 0,
			}
			switch src {
			case observe.SourceReply:
				s.Version, s.RTT = "UT\x01\x02", time.Duration(10+i%200)*time.Millisecond
			case observe.SourceQuery:
				s.Version = "LT\x02\x00"
			case observe.SourceReported:
				s.Reporter = infos[(int(n)+1)%nodes]
			}
			d.Observe(s)
			if withVisits && int(n) == seen {
				seen++
				if int(n)%10 >= visitTenths {
					continue
				}
				v := observe.Visit{Node: infos[n], Time: s.Time, Outcome: observe.OutcomeReplied, Queries: 1,
					RTT: time.Duration(10+i%200) * time.Millisecond, Version: "UT\x01\x02"}
				switch i % 10 {
				case 7, 8:
					v = observe.Visit{Node: infos[n], Time: s.Time, Outcome: observe.OutcomeTimeout, Queries: 2}
				case 9:
					v = observe.Visit{Node: infos[n], Time: s.Time, Outcome: observe.OutcomeNotQueried, Skipped: observe.SkipUnreached}
				}
				d.RecordVisit(v)
			}
		}
		if err := d.Flush(context.Background()); err != nil {
			b.Fatal(err)
		}
		took := time.Since(start)
		want := uint64(sightings)
		if withVisits {
			want += uint64(visited)
			if err := d.EndRun(run, RunCounts{}); err != nil {
				b.Fatal(err)
			}
		}
		if st := d.Stats(); st.Written != want || st.Shed != 0 {
			b.Fatalf("stats %+v", st)
		}
		if err := d.Close(); err != nil {
			b.Fatal(err)
		}
		return path, took
	}
	b.ReportAllocs()
	var elapsed time.Duration
	var path string
	for b.Loop() {
		var took time.Duration
		path, took = ingest(visits)
		elapsed += took
	}
	b.ReportMetric(float64(b.N)*sightings/elapsed.Seconds(), "sightings/s")
	b.ReportMetric(float64(batch), "batch")
	if !visits {
		return
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)*float64(visited)/elapsed.Seconds(), "visits/s")
	if postgres {
		q, err := OpenReadOnly(path)
		if err != nil {
			b.Fatal(err)
		}
		defer q.Close()
		var size int64
		if err := q.QueryRow("SELECT pg_total_relation_size('visits')").Scan(&size); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(size)/float64(visited), "visit-table-B/visit")
		return
	}
	// The visits table alone: copied into a file of its own.
	q, err := sql.Open("sqlite3", dsn(path, ""))
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	var n int64
	if err := q.QueryRow("SELECT count(*) FROM visits").Scan(&n); err != nil || n != int64(visited) {
		b.Fatalf("%d visits (%v), want %d", n, err, visited)
	}
	only := filepath.Join(b.TempDir(), "visits.db")
	for _, stmt := range []string{"ATTACH '" + only + "' AS only", "PRAGMA only.page_size = 16384",
		"CREATE TABLE only.visits AS SELECT * FROM visits", "DETACH only"} {
		if _, err := q.Exec(stmt); err != nil {
			b.Fatalf("%s: %v", stmt, err)
		}
	}
	b.ReportMetric(float64(fileSize(b, only)-16384)/float64(visited), "visit-table-B/visit")
	// The whole file, against the same ingest without visits.
	withSize := fileSize(b, path)
	without, _ := ingest(false)
	b.ReportMetric(float64(withSize-fileSize(b, without))/float64(visited), "file-B/visit")
}

func fileSize(b *testing.B, path string) int64 {
	b.Helper()
	st, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	return st.Size()
}

// BenchmarkHistoryViews times the crawl-history views on a file of three
// crawls of 200,000 nodes each (one visit per node per crawl, 80% of the
// nodes answering in each, drawn anew each crawl): crawl_churn over all
// crawls, session_lengths summed, and the classes of the latest crawl.
func BenchmarkHistoryViews(b *testing.B) {
	const nodes, crawls = 200_000, 3
	path := filepath.Join(b.TempDir(), "views.db")
	d, err := Open(path, Options{})
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	infos := make([]krpc.NodeInfo, nodes)
	for i := range infos {
		var id krpc.ID
		for j := range id {
			id[j] = byte(rng.Uint32())
		}
		ip := netip.AddrFrom4([4]byte{byte(1 + rng.IntN(220)), byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32())})
		infos[i] = krpc.NodeInfo{ID: id, Addr: netip.AddrPortFrom(ip, uint16(1024+rng.IntN(60000)))}
	}
	base := time.Now().Add(-time.Duration(crawls) * time.Hour)
	for c := range crawls {
		run, err := d.StartRun(RunInfo{Started: base.Add(time.Duration(c) * time.Hour)})
		if err != nil {
			b.Fatal(err)
		}
		for i, n := range infos {
			v := observe.Visit{Node: n, Time: base.Add(time.Duration(c)*time.Hour + time.Duration(i)*time.Microsecond),
				Outcome: observe.OutcomeReplied, Queries: 1, RTT: time.Millisecond, Version: "UT\x01\x02"}
			if rng.IntN(5) == 0 {
				v.Outcome = observe.OutcomeTimeout
			}
			d.RecordVisit(v)
		}
		if err := d.EndRun(run, RunCounts{}); err != nil {
			b.Fatal(err)
		}
	}
	defer d.Close()
	q := d.SQL()
	for _, v := range []struct{ name, query string }{
		{"crawl_churn", "SELECT count(*), sum(answering + left) FROM crawl_churn"},
		{"session_lengths", "SELECT count(*), sum(seconds) FROM session_lengths"},
		{"classes_latest", "SELECT count(*) FROM crawl_node_classes WHERE crawl = (SELECT max(crawl) FROM crawl_sequence)"},
		{"crawl_clients", "SELECT count(*), sum(nodes) FROM crawl_clients"},
	} {
		b.Run(v.name, func(b *testing.B) {
			for b.Loop() {
				rows, err := q.Query(v.query)
				if err != nil {
					b.Fatal(err)
				}
				for rows.Next() {
				}
				if err := rows.Err(); err != nil {
					b.Fatal(err)
				}
				rows.Close()
			}
			b.ReportMetric(float64(nodes*crawls), "visits")
		})
	}
}
