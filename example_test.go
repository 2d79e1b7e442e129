package lightdht_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/lightdht/lightdht"
	"github.com/lightdht/lightdht/krpc"
)

// queryTimeout is each node's wait for a reply: on loopback a minute is
// never reached, even on a busy machine, where the default 2s might be.
const queryTimeout = time.Minute

// listen opens a UDP socket on the loopback interface.
func listen() net.PacketConn {
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	return c
}

// A node embedded in a program: join through a known node, announce a
// peer, and find it again. Everything stays on loopback.
func Example() {
	ctx := context.Background()

	// A first node to join through (on the real DHT: a public router).
	first, _ := lightdht.New(lightdht.Config{Conn4: listen(), IPsPerBucket: -1, QueryTimeout: queryTimeout})
	go first.Serve(ctx)
	defer first.Close()

	// The node a program embeds.
	node, _ := lightdht.New(lightdht.Config{
		Conn4:        listen(),
		Bootstrap:    []netip.AddrPort{first.Addr()},
		IPsPerBucket: -1, // both nodes share 127.0.0.1
		QueryTimeout: queryTimeout,
	})
	go node.Serve(ctx)
	defer node.Close()
	node.Bootstrap(ctx)

	infohash, _ := krpc.ParseID("c12fe1c06bba254a9dc9f519b335aa7c1367a88a")
	if _, err := node.Announce(ctx, infohash, 6881); err != nil {
		fmt.Println("announce:", err)
		return
	}
	res, err := first.GetPeers(ctx, infohash)
	if err != nil {
		fmt.Println("get_peers:", err)
		return
	}
	fmt.Println("peers:", res.Peers)
	// Output:
	// peers: [127.0.0.1:6881]
}

// The callback style: GetPeersAsync returns at once, streams peers as they
// arrive and reports completion exactly once.
func Example_callback() {
	ctx := context.Background()
	first, _ := lightdht.New(lightdht.Config{Conn4: listen(), IPsPerBucket: -1, QueryTimeout: queryTimeout})
	go first.Serve(ctx)
	defer first.Close()
	node, _ := lightdht.New(lightdht.Config{Conn4: listen(), Bootstrap: []netip.AddrPort{first.Addr()}, IPsPerBucket: -1, QueryTimeout: queryTimeout})
	go node.Serve(ctx)
	defer node.Close()
	node.Bootstrap(ctx)

	infohash, _ := krpc.ParseID("c12fe1c06bba254a9dc9f519b335aa7c1367a88a")
	node.Announce(ctx, infohash, 51413)

	done := make(chan struct{})
	first.GetPeersAsync(ctx, infohash,
		func(peers []netip.AddrPort) { fmt.Println("new peers:", peers) },
		func(res lightdht.GetPeersResult, err error) {
			fmt.Println("done:", len(res.Peers), "peer(s), error:", err)
			close(done)
		})
	<-done
	// Output:
	// new peers: [127.0.0.1:51413]
	// done: 1 peer(s), error: <nil>
}
