package db

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/lightdht/lightdht/krpc"
	"github.com/lightdht/lightdht/observe"
)

// BenchmarkIngest measures sustained sightings per second through Observe
// into a file database, until Flush returns: 1M sightings over 200k
// nodes, each sighting a new node with probability 0.2 and otherwise a
// repeat of a uniformly chosen known node (few repeats fall in the same
// batch, so little is folded in memory). Sources: 70% reported, 20%
// replies with a version and an RTT, 5% queries, 5% timeouts.
func BenchmarkIngest(b *testing.B) {
	for _, bs := range []int{DefaultBatchSize, 131072} {
		b.Run(fmt.Sprintf("batch=%d", bs), func(b *testing.B) { benchIngest(b, bs) })
	}
}

func benchIngest(b *testing.B, batch int) {
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
	b.ReportAllocs()
	var elapsed time.Duration
	for b.Loop() {
		b.StopTimer()
		d, err := Open(filepath.Join(b.TempDir(), "bench.db"), Options{BatchSize: batch})
		if err != nil {
			b.Fatal(err)
		}
		base := time.Now()
		b.StartTimer()
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
		}
		if err := d.Flush(context.Background()); err != nil {
			b.Fatal(err)
		}
		elapsed += time.Since(start)
		b.StopTimer()
		if st := d.Stats(); st.Written != sightings || st.Shed != 0 {
			b.Fatalf("stats %+v", st)
		}
		if err := d.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(b.N)*sightings/elapsed.Seconds(), "sightings/s")
	b.ReportMetric(float64(batch), "batch")
}
