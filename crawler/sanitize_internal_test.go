package crawler

import (
	"testing"

	"github.com/lightdht/lightdht/krpc"
)

// TestImplausible: three contacts sharing 40 bits with the target make a
// reply implausible; two do not, nor do contacts at 39 bits, nor the
// reporter itself.
func TestImplausible(t *testing.T) {
	target := krpc.RandomID()
	at := func(bits int) krpc.NodeInfo {
		return krpc.NodeInfo{ID: krpc.RandomIDAtDepth(target, bits)}
	}
	reporter := at(150).ID
	for _, tc := range []struct {
		name  string
		nodes []krpc.NodeInfo
		want  bool
	}{
		{"three at 40 bits", []krpc.NodeInfo{at(40), at(41), at(100), at(3)}, true},
		{"two at 40 bits", []krpc.NodeInfo{at(40), at(60), at(39), at(2)}, false},
		{"eight at 39 bits", []krpc.NodeInfo{at(39), at(39), at(39), at(39), at(39), at(39), at(39), at(39)}, false},
		{"the reporter is not counted", []krpc.NodeInfo{{ID: reporter}, at(45), at(50)}, false},
	} {
		if got := implausible(tc.nodes, target, reporter); got != tc.want {
			t.Errorf("%s: implausible = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestDeadContacts: at a measured silent share of half, a reporter is
// discounted once chance would give its answers less than once in a
// million: 20 contacts and none answering, not 19; 40 with 3 answering,
// not 40 with 8; nothing before the silent share is known.
func TestDeadContacts(t *testing.T) {
	c := &Crawler{}
	if c.deadContacts(0, 50) {
		t.Error("discounted before the silent share was measured")
	}
	c.san = sanitizer{replied: 500, failed: 500}
	for _, tc := range []struct {
		answered, failed int
		want             bool
	}{
		{0, 19, false}, {0, 20, true}, {3, 37, true}, {8, 32, false}, {10, 10, false},
	} {
		if got := c.deadContacts(tc.answered, tc.failed); got != tc.want {
			t.Errorf("%d answered, %d failed: discounted = %v, want %v", tc.answered, tc.failed, got, tc.want)
		}
	}
	// Seen in a crawl of a network with a tenth of its nodes silent: an
	// honest reporter with 3 of its 7 contacts answering, while 4,515
	// contacts had answered, 56 had failed and 500 more were still being
	// waited for (most of them silent). At the resolved share (1.2%
	// silent) chance explains it less than once in a million; at the
	// bound (11%), often.
	c.san = sanitizer{replied: 4515, failed: 56}
	if !c.deadContacts(3, 4) {
		t.Error("3 of 7 answering at a resolved silent share of 1.2%: not discounted, want discounted (the case this guards)")
	}
	c.san.queried = 4515 + 56 + 500
	if c.deadContacts(3, 4) {
		t.Error("3 of 7 answering with 500 contacts unresolved: discounted, want not")
	}
}
