package krpc

import (
	"bytes"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func id(s string) ID {
	if len(s) != IDLen {
		panic("test ID must be 20 bytes: " + s)
	}
	return ID([]byte(s))
}

func i64(v int64) *int64 { return &v }

// node26 is a valid compact IPv4 node: ID "0123456789abcdefghij", 127.0.0.9:6881.
const node26 = "0123456789abcdefghij\x7f\x00\x00\x09\x1a\xe1"

var nodeA = NodeInfo{ID: id("0123456789abcdefghij"), Addr: netip.MustParseAddrPort("127.0.0.9:6881")}

// goldenCases are byte-exact encodings: the BEP 5 examples (with a real
// compact node where the BEP prints a placeholder) and messages using the
// fields of BEP 32, 33, 42, 43, 44 and 51.
var goldenCases = []struct {
	name string
	wire string
	msg  Msg
}{
	{
		name: "bep5 ping query",
		wire: "d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe",
		msg:  Msg{T: []byte("aa"), Y: "q", Q: "ping", A: Args{ID: id("abcdefghij0123456789")}},
	},
	{
		name: "bep5 ping reply",
		wire: "d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re",
		msg:  Msg{T: []byte("aa"), Y: "r", R: Return{ID: id("mnopqrstuvwxyz123456")}},
	},
	{
		name: "bep5 error",
		wire: "d1:eli201e23:A Generic Error Ocurrede1:t2:aa1:y1:ee",
		msg:  Msg{T: []byte("aa"), Y: "e", E: &Error{Code: 201, Msg: "A Generic Error Ocurred"}},
	},
	{
		name: "bep5 find_node query",
		wire: "d1:ad2:id20:abcdefghij01234567896:target20:mnopqrstuvwxyz123456e1:q9:find_node1:t2:aa1:y1:qe",
		msg:  Msg{T: []byte("aa"), Y: "q", Q: "find_node", A: Args{ID: id("abcdefghij0123456789"), Target: id("mnopqrstuvwxyz123456")}},
	},
	{
		name: "bep5 find_node reply",
		wire: "d1:rd2:id20:0123456789abcdefghij5:nodes26:" + node26 + "e1:t2:aa1:y1:re",
		msg:  Msg{T: []byte("aa"), Y: "r", R: Return{ID: id("0123456789abcdefghij"), Nodes: []NodeInfo{nodeA}}},
	},
	{
		name: "bep5 get_peers query",
		wire: "d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz123456e1:q9:get_peers1:t2:aa1:y1:qe",
		msg:  Msg{T: []byte("aa"), Y: "q", Q: "get_peers", A: Args{ID: id("abcdefghij0123456789"), InfoHash: id("mnopqrstuvwxyz123456")}},
	},
	{
		name: "bep5 get_peers reply with values",
		wire: "d1:rd2:id20:abcdefghij01234567895:token8:aoeusnth6:valuesl6:axje.u6:idhtnmee1:t2:aa1:y1:re",
		msg: Msg{T: []byte("aa"), Y: "r", R: Return{ID: id("abcdefghij0123456789"), Token: []byte("aoeusnth"), Values: []netip.AddrPort{
			netip.AddrPortFrom(netip.AddrFrom4([4]byte{'a', 'x', 'j', 'e'}), uint16('.')<<8|uint16('u')),
			netip.AddrPortFrom(netip.AddrFrom4([4]byte{'i', 'd', 'h', 't'}), uint16('n')<<8|uint16('m')),
		}}},
	},
	{
		name: "bep5 get_peers reply with nodes",
		wire: "d1:rd2:id20:abcdefghij01234567895:nodes26:" + node26 + "5:token8:aoeusnthe1:t2:aa1:y1:re",
		msg:  Msg{T: []byte("aa"), Y: "r", R: Return{ID: id("abcdefghij0123456789"), Nodes: []NodeInfo{nodeA}, Token: []byte("aoeusnth")}},
	},
	{
		name: "bep5 announce_peer query",
		wire: "d1:ad2:id20:abcdefghij012345678912:implied_porti1e9:info_hash20:mnopqrstuvwxyz1234564:porti6881e5:token8:aoeusnthe1:q13:announce_peer1:t2:aa1:y1:qe",
		msg: Msg{T: []byte("aa"), Y: "q", Q: "announce_peer", A: Args{ID: id("abcdefghij0123456789"), ImpliedPort: true,
			InfoHash: id("mnopqrstuvwxyz123456"), Port: 6881, Token: []byte("aoeusnth")}},
	},
	{
		name: "bep5 announce_peer reply",
		wire: "d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re",
		msg:  Msg{T: []byte("aa"), Y: "r", R: Return{ID: id("mnopqrstuvwxyz123456")}},
	},
	{
		name: "bep32 find_node with want and nodes6",
		wire: "d1:ad2:id20:abcdefghij01234567896:target20:mnopqrstuvwxyz1234564:wantl2:n42:n6ee1:q9:find_node1:t2:xy1:y1:qe",
		msg: Msg{T: []byte("xy"), Y: "q", Q: "find_node", A: Args{ID: id("abcdefghij0123456789"),
			Target: id("mnopqrstuvwxyz123456"), Want: WantN4 | WantN6}},
	},
	{
		name: "bep32 reply with nodes6",
		wire: "d1:rd2:id20:0123456789abcdefghij6:nodes638:0123456789abcdefghij\xfd\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x1a\xe1e1:t2:xy1:y1:re",
		msg: Msg{T: []byte("xy"), Y: "r", R: Return{ID: id("0123456789abcdefghij"), Nodes6: []NodeInfo{
			{ID: id("0123456789abcdefghij"), Addr: netip.MustParseAddrPort("[fd00::1]:6881")}}}},
	},
	{
		name: "bep42 ip, bep43 ro and client version",
		wire: "d2:ip6:\x7f\x00\x00\x01\x1a\xe11:rd2:id20:mnopqrstuvwxyz123456e2:roi1e1:t2:aa1:v4:LD\x00\x011:y1:re",
		msg: Msg{T: []byte("aa"), Y: "r", R: Return{ID: id("mnopqrstuvwxyz123456")}, IP: netip.MustParseAddrPort("127.0.0.1:6881"),
			RO: true, V: []byte("LD\x00\x01")},
	},
	{
		name: "bep33 scrape query",
		wire: "d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz1234566:noseedi1e6:scrapei1ee1:q9:get_peers1:t2:aa1:y1:qe",
		msg: Msg{T: []byte("aa"), Y: "q", Q: "get_peers", A: Args{ID: id("abcdefghij0123456789"),
			InfoHash: id("mnopqrstuvwxyz123456"), NoSeed: true, Scrape: true}},
	},
	{
		name: "bep33 scrape reply",
		wire: "d1:rd4:BFpe256:" + strings.Repeat("\x02", 256) + "4:BFsd256:" + strings.Repeat("\x01", 256) + "2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re",
		msg: Msg{T: []byte("aa"), Y: "r", R: Return{ID: id("mnopqrstuvwxyz123456"),
			BFsd: bytes.Repeat([]byte{1}, 256), BFpe: bytes.Repeat([]byte{2}, 256)}},
	},
	{
		name: "bep44 put mutable",
		wire: "d1:ad3:casi3e2:id20:abcdefghij01234567891:k32:" + strings.Repeat("k", 32) + "4:salt6:foobar3:seqi4e3:sig64:" + strings.Repeat("s", 64) +
			"5:token8:aoeusnth1:v12:Hello World!e1:q3:put1:t2:aa1:y1:qe",
		msg: Msg{T: []byte("aa"), Y: "q", Q: "put", A: Args{ID: id("abcdefghij0123456789"), CAS: i64(3),
			K: [32]byte([]byte(strings.Repeat("k", 32))), Salt: []byte("foobar"), Seq: i64(4),
			Sig: [64]byte([]byte(strings.Repeat("s", 64))), Token: []byte("aoeusnth"), V: []byte("12:Hello World!")}},
	},
	{
		name: "bep44 get query and reply",
		wire: "d1:rd2:id20:mnopqrstuvwxyz1234561:k32:" + strings.Repeat("k", 32) + "3:seqi0e3:sig64:" + strings.Repeat("s", 64) +
			"5:token2:tk1:vli1e3:twoee1:t2:aa1:y1:re",
		msg: Msg{T: []byte("aa"), Y: "r", R: Return{ID: id("mnopqrstuvwxyz123456"), K: [32]byte([]byte(strings.Repeat("k", 32))),
			Seq: i64(0), Sig: [64]byte([]byte(strings.Repeat("s", 64))), Token: []byte("tk"), V: []byte("li1e3:twoe")}},
	},
	{
		name: "bep51 sample_infohashes reply",
		wire: "d1:rd2:id20:mnopqrstuvwxyz1234568:intervali21600e5:nodes26:" + node26 + "3:numi42e7:samples40:aaaaaaaaaaaaaaaaaaaabbbbbbbbbbbbbbbbbbbbe1:t2:aa1:y1:re",
		msg: Msg{T: []byte("aa"), Y: "r", R: Return{ID: id("mnopqrstuvwxyz123456"), Interval: 21600, Nodes: []NodeInfo{nodeA}, Num: 42,
			Samples: []ID{id("aaaaaaaaaaaaaaaaaaaa"), id("bbbbbbbbbbbbbbbbbbbb")}}},
	},
	{
		name: "bep51 empty sample reply still carries interval and num",
		wire: "d1:rd2:id20:mnopqrstuvwxyz1234568:intervali60e3:numi0e7:samples0:e1:t2:aa1:y1:re",
		msg:  Msg{T: []byte("aa"), Y: "r", R: Return{ID: id("mnopqrstuvwxyz123456"), Interval: 60}},
	},
}

func TestGoldenEncode(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.msg.MarshalBinary()
			if err != nil {
				t.Fatalf("MarshalBinary: %v", err)
			}
			if string(got) != tc.wire {
				t.Errorf("encoding differs\n got %q\nwant %q", got, tc.wire)
			}
		})
	}
}

func TestGoldenDecode(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			var got Msg
			if err := Unmarshal([]byte(tc.wire), &got); err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			want := tc.msg
			if want.R.Interval != 0 && want.R.Samples == nil {
				want.R.Samples = []ID{} // an empty samples string decodes to an empty list
				got.R.Samples = normalizeEmpty(got.R.Samples)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("decoded message differs\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

func normalizeEmpty(s []ID) []ID {
	if s == nil {
		return []ID{}
	}
	return s
}

// TestBEPPlaceholderNodesRejected: BEP 5 prints "def456..." (9 bytes) where a
// compact node list belongs; a real decoder must refuse it as a field fault
// and still return the envelope.
func TestBEPPlaceholderNodesRejected(t *testing.T) {
	var m Msg
	err := Unmarshal([]byte("d1:rd2:id20:0123456789abcdefghij5:nodes9:def456...e1:t2:aa1:y1:re"), &m)
	var de *DecodeError
	if !errors.As(err, &de) || de.Field != "r.nodes" {
		t.Fatalf("got %v, want a field error on r.nodes", err)
	}
	if string(m.T) != "aa" || m.Y != "r" || len(m.R.Nodes) != 0 {
		t.Errorf("envelope t=%q y=%q nodes=%d, want t=aa y=r and no nodes", m.T, m.Y, len(m.R.Nodes))
	}
}

func TestUnknownKeysSkipped(t *testing.T) {
	wire := "d1:ad2:id20:abcdefghij01234567895:zzzzzld1:xi1eeee1:q4:ping1:t2:aa3:zzz3:foo1:y1:qe"
	var m Msg
	if err := Unmarshal([]byte(wire), &m); err != nil {
		t.Fatalf("Unmarshal: %v", err)
	}
	if m.Q != MethodPing || m.A.ID != id("abcdefghij0123456789") {
		t.Errorf("got q=%q id=%v", m.Q, m.A.ID)
	}
}

func TestUnmarshalReusesSlices(t *testing.T) {
	wire := []byte("d1:rd2:id20:0123456789abcdefghij5:nodes26:" + node26 + "e1:t2:aa1:y1:re")
	var m Msg
	if err := Unmarshal(wire, &m); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if err := Unmarshal(wire, &m); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Unmarshal into a reused Msg allocated %v times per run, want 0", allocs)
	}
	// A later message without nodes must not show the old ones.
	if err := Unmarshal([]byte("d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re"), &m); err != nil {
		t.Fatal(err)
	}
	if len(m.R.Nodes) != 0 {
		t.Errorf("stale nodes after reuse: %v", m.R.Nodes)
	}
}

func TestAppendBinaryNoAllocs(t *testing.T) {
	m := goldenCases[4].msg
	buf := make([]byte, 0, 512)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := m.AppendBinary(buf[:0]); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("AppendBinary allocated %v times per run, want 0", allocs)
	}
}

func TestMalformed(t *testing.T) {
	long := "d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t" + strings.Repeat("1", 30) + ":x1:y1:qe"
	deep := strings.Repeat("l", 40) + strings.Repeat("e", 40)
	cases := []struct {
		name      string
		wire      string
		wantField string // "" for a structural error
		wantIn    string // substring of the error message
	}{
		{"empty", "", "", "end of packet"},
		{"not a dict", "l1:ae", "", "not a bencoded dictionary"},
		{"integer at top", "i3e", "", "not a bencoded dictionary"},
		{"truncated dict", "d1:t2:aa1:y1:q", "", "end of packet"},
		{"truncated string", "d1:t5:aa", "", "only 2 left"},
		{"truncated length", "d1:t2", "", "end of packet"},
		{"negative length", "d1:t2:aa1:z-2:aa1:y1:qe", "", "invalid byte '-'"},
		{"huge length", "d1:t99999999999999999999:aae", "", "exceeds the packet"},
		{"length with leading zero", "d1:t02:aa1:y1:re", "", "leading zero"},
		{"missing colon", "d1:t2aa1:y1:re", "", "invalid byte"},
		{"integer leading zero", "d1:rd2:id20:mnopqrstuvwxyz123456e2:roi01e1:t2:aa1:y1:re", "", "leading zero"},
		{"negative zero", "d2:roi-0e1:t2:aa1:y1:re", "", "negative zero"},
		{"integer overflow", "d2:roi9223372036854775808e1:t2:aa1:y1:re", "", "out of range"},
		{"integer too many digits", "d2:roi12345678901234567890e1:t2:aa1:y1:re", "", "out of range"},
		{"integer no digits", "d2:roie1:t2:aa1:y1:re", "", "without digits"},
		{"non-string key", "di1ei2ee", "", "key is not a string"},
		{"trailing bytes", "d1:t2:aa1:y1:r1:rd2:id20:mnopqrstuvwxyz123456ee!", "", "after the message"},
		{"no transaction", "d1:y1:q1:q4:ping1:ad2:id20:abcdefghij0123456789ee", "", "no transaction ID"},
		{"no kind", "d1:t2:aae", "", "no message kind"},
		{"unknown kind", "d1:t2:aa1:y1:xe", "", "unknown message kind"},
		{"kind not a string", "d1:t2:aa1:yi1ee", "", "kind is not a string"},
		{"query without method", "d1:ad2:id20:abcdefghij0123456789e1:t2:aa1:y1:qe", "", "without a method"},
		{"transaction not a string", "d1:ti1e1:y1:qe", "", "transaction ID is not a string"},
		{"oversize packet", long + strings.Repeat(" ", 1500), "", "exceeds the 1500-byte limit"},
		{"deep nesting", "d1:t2:aa1:y1:q1:q4:ping1:z" + deep + "e", "", "nesting deeper"},
		{"bad start byte", "d1:t2:aa1:y1:q1:zxe", "", "invalid byte"},
		// Field faults: the envelope is usable, the named field is not.
		{"short id", "d1:ad2:id19:abcdefghij012345678e1:q4:ping1:t2:aa1:y1:qe", "a.id", "want 20 bytes, got 19"},
		{"id wrong type", "d1:ad2:idi5ee1:q4:ping1:t2:aa1:y1:qe", "a.id", "want a string"},
		{"args not a dict", "d1:al2:ide1:q4:ping1:t2:aa1:y1:qe", "a", "want a dictionary"},
		{"port out of range", "d1:ad2:id20:abcdefghij01234567894:porti70000ee1:q13:announce_peer1:t2:aa1:y1:qe", "a.port", "out of range"},
		{"port negative", "d1:ad2:id20:abcdefghij01234567894:porti-1ee1:q13:announce_peer1:t2:aa1:y1:qe", "a.port", "out of range"},
		{"want not a list", "d1:ad2:id20:abcdefghij01234567894:want2:n4e1:q9:find_node1:t2:aa1:y1:qe", "a.want", "want a list"},
		{"nodes not multiple of 26", "d1:rd2:id20:mnopqrstuvwxyz1234565:nodes27:" + node26 + "xe1:t2:aa1:y1:re", "r.nodes", "not a multiple of 26"},
		{"nodes6 not multiple of 38", "d1:rd2:id20:mnopqrstuvwxyz1234566:nodes626:" + node26 + "e1:t2:aa1:y1:re", "r.nodes6", "not a multiple of 38"},
		{"values entry of 7 bytes", "d1:rd2:id20:mnopqrstuvwxyz1234566:valuesl7:abcdefgee1:t2:aa1:y1:re", "r.values", "length 7"},
		{"values not a list", "d1:rd2:id20:mnopqrstuvwxyz1234566:values6:abcdefe1:t2:aa1:y1:re", "r.values", "want a list"},
		{"samples not multiple of 20", "d1:rd2:id20:mnopqrstuvwxyz1234567:samples21:aaaaaaaaaaaaaaaaaaaaae1:t2:aa1:y1:re", "r.samples", "not a multiple of 20"},
		{"bloom filter short", "d1:rd4:BFsd3:abc2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re", "r.BFsd", "want 256 bytes"},
		{"ip of 5 bytes", "d2:ip5:abcde1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re", "ip", "length 5"},
		{"k of 31 bytes", "d1:ad2:id20:abcdefghij01234567891:k31:" + strings.Repeat("k", 31) + "e1:q3:put1:t2:aa1:y1:qe", "a.k", "want 32 bytes"},
		{"error list short", "d1:eli201ee1:t2:aa1:y1:ee", "e", "got 1 items"},
		{"error code not an integer", "d1:el3:abc3:msge1:t2:aa1:y1:ee", "e", "want an integer"},
		{"error without list", "d1:t2:aa1:y1:ee", "e", "without an error list"},
		{"query without arguments", "d1:q4:ping1:t2:aa1:y1:qe", "a", "query without arguments"},
		{"reply without values", "d1:t2:aa1:y1:re", "r", "reply without values"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var m Msg
			err := Unmarshal([]byte(tc.wire), &m)
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("got %v, want a *DecodeError", err)
			}
			if de.Field != tc.wantField {
				t.Errorf("field %q, want %q (error: %v)", de.Field, tc.wantField, err)
			}
			if !strings.Contains(err.Error(), tc.wantIn) {
				t.Errorf("error %q does not mention %q", err, tc.wantIn)
			}
			if tc.wantField != "" && (string(m.T) != "aa" || m.Y == "") {
				t.Errorf("field fault lost the envelope: t=%q y=%q", m.T, m.Y)
			}
		})
	}
}

func TestLimitsConfigurable(t *testing.T) {
	wire := []byte("d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe")
	var m Msg
	if err := (Limits{MaxSize: len(wire) - 1}).Unmarshal(wire, &m); err == nil {
		t.Error("packet one byte over MaxSize was accepted")
	}
	if err := (Limits{MaxDepth: 1}).Unmarshal(wire, &m); err == nil {
		t.Error("nested args accepted with MaxDepth 1")
	}
	if err := (Limits{MaxElements: 5}).Unmarshal(wire, &m); err == nil {
		t.Error("11 values accepted with MaxElements 5")
	}
	// The default element limit binds only when MaxSize is raised: 1,500
	// bytes cannot hold 1,025 values.
	many := []byte("d1:t2:aa1:y1:q1:q4:ping1:zl" + strings.Repeat("i1e", 1100) + "ee")
	if err := (Limits{MaxSize: 8000}).Unmarshal(many, &m); err == nil || !strings.Contains(err.Error(), "more than 1024 values") {
		t.Errorf("1,107 values with the default element limit: got %v", err)
	}
	if err := (Limits{MaxSize: len(wire), MaxDepth: 2, MaxElements: 11}).Unmarshal(wire, &m); err != nil {
		t.Errorf("message exactly at the limits refused: %v", err)
	}
}

func TestEncodeErrors(t *testing.T) {
	v6 := NodeInfo{ID: id("0123456789abcdefghij"), Addr: netip.MustParseAddrPort("[fd00::1]:1")}
	cases := []struct {
		name   string
		msg    Msg
		wantIn string
	}{
		{"no kind", Msg{T: []byte("aa")}, "unknown message kind"},
		{"query without method", Msg{T: []byte("aa"), Y: "q"}, "without a method"},
		{"error without E", Msg{T: []byte("aa"), Y: "e"}, "without E"},
		{"ipv6 node in nodes", Msg{T: []byte("aa"), Y: "r", R: Return{Nodes: []NodeInfo{v6}}}, "IPv6 address"},
		{"ipv4 node in nodes6", Msg{T: []byte("aa"), Y: "r", R: Return{Nodes6: []NodeInfo{nodeA}}}, "IPv4 address"},
		{"node without address", Msg{T: []byte("aa"), Y: "r", R: Return{Nodes: []NodeInfo{{ID: nodeA.ID}}}}, "no address"},
		{"raw v not bencode", Msg{T: []byte("aa"), Y: "q", Q: "put", A: Args{V: []byte("5:ab")}}, "a.v"},
		{"port out of range", Msg{T: []byte("aa"), Y: "q", Q: "announce_peer", A: Args{Port: 70000}}, "port 70000"},
		{"short bloom", Msg{T: []byte("aa"), Y: "r", R: Return{BFsd: []byte{1}}}, "BFsd"},
		{"invalid value", Msg{T: []byte("aa"), Y: "r", R: Return{Values: []netip.AddrPort{{}}}}, "r.values"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			buf := []byte("prefix")
			out, err := tc.msg.AppendBinary(buf)
			if err == nil || !strings.Contains(err.Error(), tc.wantIn) {
				t.Fatalf("got error %v, want one mentioning %q", err, tc.wantIn)
			}
			if string(out) != "prefix" {
				t.Errorf("buffer changed on failure: %q", out)
			}
		})
	}
}

func TestErrorType(t *testing.T) {
	var m Msg
	if err := Unmarshal([]byte("d1:eli203e9:bad tokene1:t2:aa1:y1:ee"), &m); err != nil {
		t.Fatal(err)
	}
	var kerr *Error
	if !errors.As(m.Err(), &kerr) || kerr.Code != CodeProtocol || kerr.Msg != "bad token" {
		t.Fatalf("Err() = %v, want protocol error 'bad token'", m.Err())
	}
	if got := kerr.Error(); got != "krpc error 203 (protocol): bad token" {
		t.Errorf("Error() = %q", got)
	}
}

func TestValidBencode(t *testing.T) {
	for _, ok := range []string{"i0e", "0:", "le", "de", "d1:ali1ei-2eee", "4:spam"} {
		if err := ValidBencode([]byte(ok)); err != nil {
			t.Errorf("ValidBencode(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"", "i", "i1e1:a", "5:spam", "d1:ae", "di1ei1ee", "x"} {
		if err := ValidBencode([]byte(bad)); err == nil {
			t.Errorf("ValidBencode(%q) = nil, want an error", bad)
		}
	}
}

// TestPeekTID: the transaction ID is found without a decode in every
// golden message, wherever it sits among the keys, and nothing is found
// where a decode would find no string "t" at the top level.
func TestPeekTID(t *testing.T) {
	for _, tc := range goldenCases {
		got, ok := Limits{}.peekTID([]byte(tc.wire))
		if !ok || !bytes.Equal(got, tc.msg.T) {
			t.Errorf("%s: peekTID = %q, %v; want %q", tc.name, got, ok, tc.msg.T)
		}
	}
	for _, tc := range []struct {
		wire string
		want string // "" for none
	}{
		{"d1:rd2:id20:mnopqrstuvwxyz1234565:nodes0:e1:t4:abcd1:v4:LT011:y1:re", "abcd"},
		{"d1:t4:abcd1:y1:re", "abcd"},
		{"d1:eli201e23:A Generic Error Ocurrede1:t4:wxyz1:y1:ee", "wxyz"},
		{"d1:rd2:id20:mnopqrstuvwxyz123456e1:y1:re", ""},  // no "t"
		{"d1:ti7e1:y1:re", ""},                            // "t" not a string
		{"d1:rd2:id20:mnopqrstuvwxyz123456e1:t", ""},      // cut short at the key
		{"d1:rd2:id20:mnopqrstuvwxyz1234561:t4:abcd", ""}, // cut short inside "r"
		{"d1:t99:abcd1:y1:re", ""},                        // string past the end
		{"l1:t4:abcde", ""},                               // a list, not a dictionary
		{"", ""},
		{"d1:rd1:xllllllllllllllllllllllllllllllllllleeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee1:t4:abcde", ""}, // deeper than the limit
	} {
		got, ok := Limits{}.peekTID([]byte(tc.wire))
		if ok != (tc.want != "") || string(got) != tc.want {
			t.Errorf("peekTID(%q) = %q, %v; want %q", tc.wire, got, ok, tc.want)
		}
	}
	big := append([]byte("d1:t4:abcd1:v"), bytes.Repeat([]byte("x"), DefaultMaxSize)...)
	if _, ok := (Limits{}).peekTID(big); ok {
		t.Error("peekTID read a packet over the size limit")
	}
}
