package krpc

import (
	"maps"
	"testing"
)

func TestMethodCounts(t *testing.T) {
	var c MethodCounts
	for _, q := range []string{MethodPing, MethodPing, MethodGetPeers, MethodSampleInfohashes, MethodGet, "vote"} {
		c.Add(q)
	}
	want := map[string]uint64{MethodPing: 2, MethodGetPeers: 1, MethodSampleInfohashes: 1, "other": 2}
	if got := c.Snapshot(true); !maps.Equal(got, want) {
		t.Errorf("nonzero snapshot %v, want %v", got, want)
	}
	want[MethodFindNode], want[MethodAnnouncePeer] = 0, 0
	if got := c.Snapshot(false); !maps.Equal(got, want) {
		t.Errorf("full snapshot %v, want %v", got, want)
	}
}
