package simnet

import (
	"testing"
)

// TestSetReadBuffer: a conn's receive queue holds bytes/BufferPacketBytes
// packets once sized, in place of Config.QueueLen; a negative size fails.
func TestSetReadBuffer(t *testing.T) {
	n, err := New(Config{QueueLen: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	a, _ := n.NewConn4()
	b, _ := n.NewConn4()
	send := func(k int) {
		for range k {
			if _, err := a.WriteToUDPAddrPort([]byte("x"), b.AddrPort()); err != nil {
				t.Fatal(err)
			}
		}
	}
	send(6)
	if st := n.Stats(); st.Delivered != 4 || st.DroppedQueueFull != 2 {
		t.Fatalf("default queue: %+v, want 4 delivered and 2 dropped", st)
	}
	if err := b.SetReadBuffer(10 * BufferPacketBytes); err != nil {
		t.Fatal(err)
	}
	send(8)
	if st := n.Stats(); st.Delivered != 10 || st.DroppedQueueFull != 4 {
		t.Errorf("queue of 10: %+v, want 10 delivered and 4 dropped in all", st)
	}
	if err := b.SetReadBuffer(-1); err == nil {
		t.Error("SetReadBuffer(-1) succeeded")
	}
}
