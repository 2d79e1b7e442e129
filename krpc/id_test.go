package krpc

import "testing"

func TestRandomIDAtDepth(t *testing.T) {
	self := RandomID()
	for _, depth := range []int{0, 1, 7, 8, 9, 63, 158, 159} {
		for range 50 {
			id := RandomIDAtDepth(self, depth)
			if got := self.CommonPrefixLen(id); got != depth {
				t.Fatalf("RandomIDAtDepth(%v, %d) shares %d leading bits", self, depth, got)
			}
		}
	}
	// Depths out of range are clamped to a bucket that exists.
	if got := self.CommonPrefixLen(RandomIDAtDepth(self, 400)); got != 159 {
		t.Errorf("depth 400: shares %d bits, want 159", got)
	}
	if got := self.CommonPrefixLen(RandomIDAtDepth(self, -3)); got != 0 {
		t.Errorf("depth -3: shares %d bits, want 0", got)
	}
}

func TestRandomIDWithPrefix(t *testing.T) {
	prefix := RandomID()
	for _, bits := range []int{0, 1, 5, 8, 13, 100, 160} {
		seen := map[ID]bool{}
		for range 50 {
			id := RandomIDWithPrefix(prefix, bits)
			if got := prefix.CommonPrefixLen(id); got < bits {
				t.Fatalf("RandomIDWithPrefix(%v, %d) shares only %d leading bits", prefix, bits, got)
			}
			seen[id] = true
		}
		// Below 160 bits the rest of the ID is random.
		if bits <= 150 && len(seen) < 40 {
			t.Errorf("bits %d: only %d distinct IDs in 50", bits, len(seen))
		}
	}
}

// TestIDIsZero: only the all-zero ID is zero; a set bit in any of its 20
// bytes, the last four included, makes it not.
func TestIDIsZero(t *testing.T) {
	if !(ID{}).IsZero() {
		t.Fatal("the zero ID is not zero")
	}
	for i := range IDLen {
		for _, b := range []byte{0x01, 0x80} {
			var id ID
			id[i] = b
			if id.IsZero() {
				t.Errorf("ID with byte %d = %#x is zero", i, b)
			}
		}
	}
}
