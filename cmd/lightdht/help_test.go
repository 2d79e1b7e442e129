package main

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestSingleQueryAttempts: a single query to a silent address is sent as
// many times as the help of --timeout says.
func TestSingleQueryAttempts(t *testing.T) {
	t.Parallel()
	if out := ok(t, nil, "ping", "-h"); !strings.Contains(out, queryTimeoutUsage) || !strings.Contains(out, "resent once: 2 attempts") {
		t.Errorf("ping -h does not state the resends:\n%s", out)
	}
	silent, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.25.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	r := exe(t, nil, "", "ping", silent.LocalAddr().String(), "--timeout", "200ms")
	if r.code != 1 || !strings.Contains(r.stderr, "timed out") {
		t.Fatalf("ping of a silent address: exit %d, stderr %q", r.code, r.stderr)
	}
	// The ping has exited, so its attempts are on their way: read as many
	// as there should be, then up to a marker sent now, which queues
	// behind any further attempt.
	self := silent.LocalAddr().(*net.UDPAddr).AddrPort()
	silent.SetReadDeadline(time.Now().Add(hangGuard))
	buf := make([]byte, 1500)
	packets := 0
	fromPing := func() bool {
		t.Helper()
		_, from, err := silent.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("%d of the ping's %d attempts read: %v", packets, queryRetries+1, err)
		}
		return from != self
	}
	for packets < queryRetries+1 && fromPing() {
		packets++
	}
	if _, err := silent.WriteToUDPAddrPort([]byte("marker"), self); err != nil {
		t.Fatal(err)
	}
	for fromPing() {
		packets++
	}
	if packets != queryRetries+1 {
		t.Errorf("the ping was sent %d times, want %d", packets, queryRetries+1)
	}
}

// TestHelpStatesNoFalseDefault: flags that mean something when unset
// print no "(default -1)" next to the text that says what unset means.
func TestHelpStatesNoFalseDefault(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ cmd, flag string }{
		{"announce", "-port port"},
		{"put", "-seq number"},
		{"put", "-cas number"},
	} {
		out := ok(t, nil, tc.cmd, "-h")
		if !strings.Contains(out, tc.flag) {
			t.Errorf("%s -h lacks %q:\n%s", tc.cmd, tc.flag, out)
		}
		if strings.Contains(out, "(default -1)") {
			t.Errorf("%s -h states a default of -1:\n%s", tc.cmd, out)
		}
	}
}
