package table_test

import (
	"fmt"
	"net/netip"

	"github.com/lightdht/lightdht/krpc"
	"github.com/lightdht/lightdht/table"
)

// A node feeds its table with what it hears and acts on what the table asks
// for: pings for NeedPing, lookups for Refresh.
func Example() {
	self := krpc.ID{0x80}
	tb, err := table.New(table.KBucket, table.Config{Self: self})
	if err != nil {
		panic(err)
	}
	a := krpc.NodeInfo{ID: krpc.ID{0x01}, Addr: netip.MustParseAddrPort("192.0.2.1:6881")}
	b := krpc.NodeInfo{ID: krpc.ID{0xc0}, Addr: netip.MustParseAddrPort("192.0.2.2:6881")}
	fmt.Println(tb.Update(a, table.Replied).Outcome)  // a answered our query
	fmt.Println(tb.Update(b, table.Reported).Outcome) // a listed b in its answer
	fmt.Println(tb.Update(a, table.Queried).Outcome)  // a queried us

	res := tb.Update(krpc.NodeInfo{ID: self, Addr: a.Addr}, table.Reported)
	fmt.Println(res.Outcome, "-", res.Reason)

	switch res := tb.Update(krpc.NodeInfo{ID: krpc.ID{0x02}, Addr: netip.MustParseAddrPort("192.0.2.3:6881")}, table.Reported); res.Outcome {
	case table.NeedPing:
		for _, e := range res.Ping {
			_ = e // send a ping; on reply tb.Update(e.NodeInfo, table.Replied), on timeout tb.Failed(e.NodeInfo)
		}
	case table.Added:
		fmt.Println("added a third node")
	}

	for _, e := range tb.Closest(krpc.ID{0xc1}, 2) {
		fmt.Println(e.Addr)
	}
	for _, target := range tb.Refresh() {
		_ = target // run a find_node lookup for target
	}
	// Output:
	// added
	// added
	// updated
	// rejected - own ID
	// added a third node
	// 192.0.2.2:6881
	// 192.0.2.1:6881
}
