package report_test

import (
	"context"
	"io"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/lightdht/lightdht/db"
	"github.com/lightdht/lightdht/krpc"
	"github.com/lightdht/lightdht/observe"
	"github.com/lightdht/lightdht/report"
)

// BenchmarkReport100k times the report of a history of three crawls of a
// 100,000-node network, an hour apart (one visit per node per crawl, 80%
// answering, drawn anew each crawl, five clients), and reports the
// page's size.
func BenchmarkReport100k(b *testing.B) {
	const nodes, crawls = 100_000, 3
	path := filepath.Join(b.TempDir(), "history.db")
	d, err := db.Open(path, db.Options{})
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	versions := []string{"LT\x02\x00", "UT\x03\x05", "TR\x04\x00", "LD\x00\x01", "ML\x01\x00"}
	infos := make([]krpc.NodeInfo, nodes)
	for i := range infos {
		var id krpc.ID
		for j := range id {
			id[j] = byte(rng.Uint32())
		}
		ip := netip.AddrFrom4([4]byte{byte(1 + rng.IntN(220)), byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32())})
		infos[i] = krpc.NodeInfo{ID: id, Addr: netip.AddrPortFrom(ip, uint16(1024+rng.IntN(60000)))}
	}
	base := time.Now().Add(-crawls * time.Hour)
	for c := range crawls {
		start := base.Add(time.Duration(c) * time.Hour)
		run, err := d.StartRun(db.RunInfo{Started: start})
		if err != nil {
			b.Fatal(err)
		}
		for i, n := range infos {
			at := start.Add(time.Duration(i) * time.Millisecond)
			v := observe.Visit{Node: n, Time: at, Outcome: observe.OutcomeReplied, Queries: 1,
				RTT: time.Duration(5+rng.IntN(400)) * time.Millisecond, Version: versions[i%len(versions)]}
			if rng.IntN(5) == 0 {
				v = observe.Visit{Node: n, Time: at, Outcome: observe.OutcomeTimeout, Queries: 2}
			}
			d.RecordVisit(v)
		}
		if err := d.EndRun(run, db.RunCounts{Ended: start.Add(2 * time.Minute)}); err != nil {
			b.Fatal(err)
		}
	}
	if err := d.Close(); err != nil {
		b.Fatal(err)
	}
	q, err := db.OpenReadOnly(path)
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	var size int64
	for b.Loop() {
		cw := &countWriter{}
		if err := report.Write(context.Background(), q, cw, report.Options{Source: path}); err != nil {
			b.Fatal(err)
		}
		size = cw.n
	}
	b.ReportMetric(float64(size)/1e3, "page-kB")
	b.ReportMetric(float64(nodes*crawls), "visits")
}

type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

var _ io.Writer = (*countWriter)(nil)
