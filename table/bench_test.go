package table

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/lightdht/lightdht/krpc"
)

type benchCase struct {
	kind Kind
	size int
}

// benchCases lists the table sizes to benchmark: 10,000 nodes offered to
// each kind (the k-bucket table keeps the few hundred that fit), and
// 1,000,000 for the research tables unless -short.
func benchCases() []benchCase {
	cases := []benchCase{{KBucket, 10_000}, {Flat, 10_000}, {Prefix, 10_000}}
	if !testing.Short() {
		cases = append(cases, benchCase{Flat, 1_000_000}, benchCase{Prefix, 1_000_000})
	}
	return cases
}

// buildTable offers size random nodes to a new table and returns it, the
// nodes, and the heap bytes the table uses per entry.
func buildTable(b *testing.B, kind Kind, size int) (Table, []krpc.NodeInfo, float64) {
	b.Helper()
	r := rand.New(rand.NewPCG(uint64(size), uint64(kind)))
	nodes := make([]krpc.NodeInfo, size)
	for i := range nodes {
		nodes[i] = node(randID(r), i)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	tb := mustNew(b, kind, Config{Self: randID(r)})
	for _, n := range nodes {
		tb.Update(n, Replied)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perEntry := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(tb.Len())
	return tb, nodes, perEntry
}

func BenchmarkUpdate(b *testing.B) {
	for _, c := range benchCases() {
		b.Run(fmt.Sprintf("%v/n=%d", c.kind, c.size), func(b *testing.B) {
			tb, nodes, _ := buildTable(b, c.kind, c.size)
			// Each offered node replies again; the k-bucket table rejects
			// most of them, as it does in a busy node.
			b.Run("replied", func(b *testing.B) {
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					tb.Update(nodes[i%len(nodes)], Replied)
					i++
				}
			})
			// Remove a stored node and add it back: the cost of churn.
			var stored []krpc.NodeInfo
			tb.Each(func(e Entry) bool { stored = append(stored, e.NodeInfo); return len(stored) < 4096 })
			b.Run("remove+add", func(b *testing.B) {
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					n := stored[i%len(stored)]
					tb.Remove(n.ID)
					tb.Update(n, Replied)
					i++
				}
			})
		})
	}
}

func BenchmarkClosest(b *testing.B) {
	for _, c := range benchCases() {
		b.Run(fmt.Sprintf("%v/n=%d", c.kind, c.size), func(b *testing.B) {
			tb, _, perEntry := buildTable(b, c.kind, c.size)
			r := rand.New(rand.NewPCG(1, 2))
			targets := make([]krpc.ID, 1024)
			for i := range targets {
				targets[i] = randID(r)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if got := tb.Closest(targets[i%len(targets)], 8); len(got) != 8 {
					b.Fatalf("Closest returned %d entries", len(got))
				}
				i++
			}
			b.ReportMetric(float64(tb.Len()), "entries")
			b.ReportMetric(perEntry, "B/entry")
		})
	}
}
