package krpc_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/lightdht/lightdht/krpc"
)

// Two transports on loopback UDP: one answers pings, the other asks, first
// blocking, then with a callback.
func Example() {
	serverID, _ := krpc.ParseID("0123456789abcdef0123456789abcdef01234567")

	sconn, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	server, _ := krpc.New(krpc.Config{
		Conn: sconn,
		Handler: krpc.HandlerFunc(func(reply, q *krpc.Msg, src netip.AddrPort) bool {
			reply.R.ID = serverID
			return true
		}),
	})
	go server.Serve(context.Background())
	defer server.Close()

	// Timeout is the wait for each attempt; a slower reply counts as lost
	// and the query is resent. A minute keeps a busy machine from turning
	// the answer below into a second attempt.
	cconn, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	client, _ := krpc.New(krpc.Config{Conn: cconn, Timeout: time.Minute})
	go client.Serve(context.Background())
	defer client.Close()

	to := sconn.LocalAddr().(*net.UDPAddr).AddrPort()
	ping := &krpc.Msg{Q: krpc.MethodPing, A: krpc.Args{ID: krpc.RandomID()}}

	// Blocking.
	resp, err := client.Query(context.Background(), to, ping)
	if err != nil {
		fmt.Println("ping failed:", err)
		return
	}
	fmt.Println("blocking: pong from", resp.R.ID)

	// Callback: QueryAsync returns at once; the callback runs exactly once.
	done := make(chan struct{})
	client.QueryAsync(context.Background(), to, ping, func(resp krpc.Response, err error) {
		defer close(done)
		if err != nil {
			fmt.Println("ping failed:", err)
			return
		}
		fmt.Println("callback: pong from", resp.R.ID, "after", resp.Attempts, "attempt")
	})
	<-done
	// Output:
	// blocking: pong from 0123456789abcdef0123456789abcdef01234567
	// callback: pong from 0123456789abcdef0123456789abcdef01234567 after 1 attempt
}
