package krpc_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lightdht/lightdht/internal/simnet"
	"github.com/lightdht/lightdht/krpc"
)

// TestReplyWithCutNodesList: a reply whose only fault is a nodes list cut
// short (some DHT nodes send one) is used with its whole entries, so that
// the node is heard; a reply with a second faulty field is still dropped.
func TestReplyWithCutNodesList(t *testing.T) {
	node26 := "0123456789abcdefghij\x7f\x00\x00\x09\x1a\xe1"
	for _, c := range []struct {
		name  string
		r     string // the "r" dictionary's body
		nodes int    // entries delivered; -1: the reply is dropped
	}{
		{"cut after two entries", "2:id20:mnopqrstuvwxyz1234565:nodes62:" + node26 + node26 + "0123456789", 2},
		{"cut before any entry", "2:id20:mnopqrstuvwxyz1234565:nodes9:def456...", 0},
		{"cut, and bad samples", "2:id20:mnopqrstuvwxyz1234565:nodes27:" + node26 + "x7:samples3:abc", -1},
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n := newNet(t, simnet.Config{Latency: time.Millisecond})
				server, err := n.NewConn4()
				if err != nil {
					t.Fatal(err)
				}
				go func() {
					buf := make([]byte, 1500)
					k, from, err := server.ReadFromUDPAddrPort(buf)
					if err != nil {
						return
					}
					var q krpc.Msg
					if krpc.Unmarshal(buf[:k], &q) != nil {
						return
					}
					reply := "d1:rd" + c.r + "e1:t" + strconv.Itoa(len(q.T)) + ":" + string(q.T) + "1:y1:re"
					server.WriteToUDPAddrPort([]byte(reply), from)
				}()
				client, _ := startTransport(t, n, krpc.Config{Timeout: time.Second, Retries: krpc.NoRetries})
				resp, err := client.Query(context.Background(), server.AddrPort(),
					&krpc.Msg{Q: krpc.MethodFindNode, A: krpc.Args{ID: krpc.RandomID(), Target: krpc.RandomID()}})
				if c.nodes < 0 {
					if !errors.Is(err, krpc.ErrTimeout) {
						t.Fatalf("Query: %v, %+v; want the reply dropped and a timeout", err, resp.Msg)
					}
					return
				}
				if err != nil {
					t.Fatalf("Query: %v", err)
				}
				if len(resp.R.Nodes) != c.nodes || !strings.HasPrefix(string(resp.R.ID[:]), "mnop") {
					t.Errorf("got id %q and %d nodes, want %d", resp.R.ID[:], len(resp.R.Nodes), c.nodes)
				}
			})
		})
	}
}
