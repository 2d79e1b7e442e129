package interop

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/lightdht/lightdht/internal/simnet"
	"github.com/lightdht/lightdht/krpc"
)

func startTransport(t *testing.T, conn net.PacketConn) *krpc.Transport {
	t.Helper()
	tr, err := krpc.New(krpc.Config{Conn: conn, Timeout: queryWait, Version: []byte("LD\x00\x01")})
	if err != nil {
		t.Fatalf("krpc.New: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- tr.Serve(context.Background()) }()
	t.Cleanup(func() {
		tr.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return tr
}

// TestAnacrolixAnswersPingOnSimnet runs an anacrolix/dht/v2 server on an
// in-memory conn and pings it from this project's transport.
func TestAnacrolixAnswersPingOnSimnet(t *testing.T) {
	n, err := simnet.New(simnet.Config{Latency: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	serverConn, err := n.NewConn4()
	if err != nil {
		t.Fatal(err)
	}
	clientConn, err := n.NewConn4()
	if err != nil {
		t.Fatal(err)
	}
	server := newAnacrolix(t, serverConn)
	client := startTransport(t, clientConn)

	myID := krpc.RandomID()
	resp, err := client.Query(context.Background(), serverConn.AddrPort(), &krpc.Msg{Q: krpc.MethodPing, A: krpc.Args{ID: myID}})
	if err != nil {
		t.Fatalf("ping anacrolix over simnet: %v", err)
	}
	if resp.R.ID != krpc.ID(server.ID()) {
		t.Errorf("reply ID %v, want the anacrolix server's %x", resp.R.ID, server.ID())
	}
	// anacrolix reports our address (BEP 42 "ip"), which must be the simnet one.
	if resp.IP != clientConn.AddrPort() {
		t.Errorf("anacrolix saw us as %v, want %v", resp.IP, clientConn.AddrPort())
	}
	// Having heard from us, it answers find_node with a well-formed reply.
	resp, err = client.Query(context.Background(), serverConn.AddrPort(), &krpc.Msg{Q: krpc.MethodFindNode, A: krpc.Args{ID: myID, Target: krpc.RandomID()}})
	if err != nil {
		t.Fatalf("find_node to anacrolix: %v", err)
	}
	if resp.R.ID != krpc.ID(server.ID()) {
		t.Errorf("find_node reply ID %v", resp.R.ID)
	}
}

// TestAnacrolixAnswersPingOnLoopback does the same over real loopback UDP.
func TestAnacrolixAnswersPingOnLoopback(t *testing.T) {
	serverConn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	clientConn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	server := newAnacrolix(t, serverConn)
	client := startTransport(t, clientConn)
	addr := serverConn.LocalAddr().(*net.UDPAddr).AddrPort()
	resp, err := client.Query(context.Background(), netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port()), &krpc.Msg{Q: krpc.MethodPing, A: krpc.Args{ID: krpc.RandomID()}})
	if err != nil {
		t.Fatalf("ping anacrolix over loopback: %v", err)
	}
	if resp.R.ID != krpc.ID(server.ID()) {
		t.Errorf("reply ID %v, want %x", resp.R.ID, server.ID())
	}
}
