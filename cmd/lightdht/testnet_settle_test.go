package main

import (
	"net"
	"slices"
	"testing"

	"github.com/lightdht/lightdht"
	"github.com/lightdht/lightdht/krpc"
	"github.com/rs/zerolog"
)

// TestTrueNeighbours checks the prefix search of trueNeighbours against
// sorting every other ID by distance, on networks small and large enough
// to need several prefix lengths, and on IDs that share long prefixes.
func TestTrueNeighbours(t *testing.T) {
	for _, n := range []int{1, 2, 5, 9, 40, 700} {
		for _, clustered := range []bool{false, true} {
			ids := make([]krpc.ID, n)
			for i := range ids {
				ids[i] = krpc.RandomID()
				if clustered && i%3 != 0 {
					// Two thirds of the IDs share their first 100 bits
					// with the first ID: deep subtrees.
					ids[i] = krpc.RandomIDWithPrefix(ids[0], 100)
				}
			}
			got := trueNeighbours(ids, 8)
			for i := range ids {
				var others []int
				for j := range ids {
					if j != i {
						others = append(others, j)
					}
				}
				slices.SortFunc(others, func(a, b int) int { return ids[a].Xor(ids[i]).Cmp(ids[b].Xor(ids[i])) })
				want := others[:min(8, n-1)]
				if !slices.Equal(got[i], want) {
					t.Fatalf("%d IDs (clustered %v): neighbours of %d are %v, want %v", n, clustered, i, got[i], want)
				}
			}
		}
	}
}

// TestSettleTestnet starts 12 nodes that know only the first, as a join
// does before its lookups, and breaks one link by a recorded failure:
// settleTestnet leaves every node with its 8 nearest as answering
// entries.
func TestSettleTestnet(t *testing.T) {
	ctx := t.Context()
	var all []*lightdht.Node
	for range 12 {
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		nd, err := lightdht.New(lightdht.LocalTestNet(lightdht.Config{Conn4: conn, FixedTimeouts: true}))
		if err != nil {
			t.Fatal(err)
		}
		go nd.Serve(ctx)
		t.Cleanup(func() { nd.Close() })
		all = append(all, nd)
	}
	for _, nd := range all[1:] {
		if _, _, err := nd.Ping(ctx, all[0].Addr()); err != nil {
			t.Fatal(err)
		}
	}
	near := trueNeighbours(nodeIDs(all), 8)
	// A failure against an entry that replied hides it from find_node
	// replies until it answers again.
	from, to := all[0], all[near[0][0]]
	from.Table(false).Failed(krpc.NodeInfo{ID: to.ID(), Addr: to.Addr()})
	if e, ok := from.Table(false).Get(to.ID()); !ok || e.Failures != 1 {
		t.Fatalf("entry after a failure: %+v %v, want one failure", e, ok)
	}
	if missing := settleTestnet(ctx, zerolog.Nop(), all, 8, settleRounds); missing != 0 {
		t.Fatalf("%d links missing after settling", missing)
	}
	for i, nd := range all {
		for _, j := range near[i] {
			e, ok := nd.Table(false).Get(all[j].ID())
			if !ok || e.LastReply.IsZero() || e.Failures != 0 {
				t.Errorf("node %d: neighbour %d is %+v (held %v), want an answering entry", i, j, e, ok)
			}
		}
	}
}
