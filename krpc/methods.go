package krpc

import "sync/atomic"

// countedMethods are the methods MethodCounts keeps apart, in slot order;
// every other method shares the last slot, reported as "other".
var countedMethods = [...]string{MethodPing, MethodFindNode, MethodGetPeers, MethodAnnouncePeer, MethodSampleInfohashes, "other"}

// MethodCounts counts queries by method: ping, find_node, get_peers,
// announce_peer and sample_infohashes each on their own, every other
// method together as "other". The zero value is ready; it is safe for
// concurrent use.
type MethodCounts struct {
	n [len(countedMethods)]atomic.Uint64
}

// Add counts one query of method q.
func (c *MethodCounts) Add(q string) {
	slot := len(countedMethods) - 1
	for i, m := range countedMethods[:slot] {
		if q == m {
			slot = i
			break
		}
	}
	c.n[slot].Add(1)
}

// Snapshot returns the counts by method name, "other" included. With
// nonzero set, methods never counted are left out.
func (c *MethodCounts) Snapshot(nonzero bool) map[string]uint64 {
	out := make(map[string]uint64, len(countedMethods))
	for i, m := range countedMethods {
		if v := c.n[i].Load(); v > 0 || !nonzero {
			out[m] = v
		}
	}
	return out
}
