package krpc

import (
	"net/netip"
	"testing"
)

// TestAnnouncedPeer: the port comes from the query, or from the source with
// implied_port, and a zero port is refused.
func TestAnnouncedPeer(t *testing.T) {
	src := netip.MustParseAddrPort("127.0.0.9:7001")
	for _, c := range []struct {
		args Args
		want netip.AddrPort
		ok   bool
	}{
		{Args{Port: 51413}, netip.MustParseAddrPort("127.0.0.9:51413"), true},
		{Args{Port: 51413, ImpliedPort: true}, src, true},
		{Args{ImpliedPort: true}, src, true},
		{Args{}, netip.MustParseAddrPort("127.0.0.9:0"), false},
		{Args{Port: 65535}, netip.MustParseAddrPort("127.0.0.9:65535"), true},
	} {
		got, ok := c.args.AnnouncedPeer(src)
		if got != c.want || ok != c.ok {
			t.Errorf("%+v.AnnouncedPeer(%v) = %v, %v; want %v, %v", c.args, src, got, ok, c.want, c.ok)
		}
	}
	if _, ok := (&Args{ImpliedPort: true}).AnnouncedPeer(netip.MustParseAddrPort("127.0.0.9:0")); ok {
		t.Error("implied_port from source port 0 accepted")
	}
}

// TestFail: Fail turns a reply into an error message carrying e.
func TestFail(t *testing.T) {
	m := &Msg{Y: KindReply, R: Return{ID: ID{1}}}
	if !m.Fail(ErrorBadToken) || m.Y != KindError || m.E != ErrorBadToken || m.E.Code != CodeProtocol {
		t.Errorf("after Fail: Y %q, E %+v", m.Y, m.E)
	}
	b, err := m.AppendBinary(nil)
	if err != nil {
		t.Fatalf("encoding the error reply: %v", err)
	}
	var back Msg
	if err := Unmarshal(b, &back); err != nil || back.Y != KindError || back.E == nil || *back.E != *ErrorBadToken {
		t.Errorf("round trip of %q: %v, %+v", b, err, back.E)
	}
}
