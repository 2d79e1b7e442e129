package crawler

import (
	"math"
	"testing"
)

// TestZoneInterval: the interval is near count/p ± 1.96·sqrt(count·(1-p))/p
// for large counts, covers the count itself, and reaches up from 0.
func TestZoneInterval(t *testing.T) {
	for _, c := range []struct{ count, bits int }{{3906, 8}, {62500, 4}, {500, 1}, {40, 12}} {
		p := math.Ldexp(1, -c.bits)
		low, high := zoneInterval(c.count, c.bits)
		est := float64(c.count) / p
		half := 1.959964 * math.Sqrt(float64(c.count)*(1-p)) / p
		if low >= est || high <= est {
			t.Errorf("count %d, %d bits: interval %.0f to %.0f leaves out the estimate %.0f", c.count, c.bits, low, high, est)
		}
		if got := (high - low) / 2; math.Abs(got-half) > 0.02*half {
			t.Errorf("count %d, %d bits: half-width %.0f, want about %.0f", c.count, c.bits, got, half)
		}
	}
	if low, high := zoneInterval(3906, 8); math.Abs((high-low)/2/(3906*256)-0.0313) > 0.001 {
		t.Errorf("1/256 zone with 3,906 nodes: ±%.2f%%, want ±3.13%%", 100*(high-low)/2/(3906*256))
	}
	if low, high := zoneInterval(0, 8); low != 0 || high < 256 || high > 4*256 {
		t.Errorf("empty zone: %.0f to %.0f", low, high)
	}
}
