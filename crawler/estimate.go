package crawler

import "math"

// estimateZ is the normal quantile of the zone estimates' 95% intervals.
const estimateZ = 1.959964

// zoneInterval returns the 95% interval of the number of nodes in the
// whole ID space, from count nodes found in a zone of bits bits.
//
// Node IDs are uniform, so each of the network's N nodes lies in the zone
// with probability p = 2^-bits, and count is Binomial(N, p): N is
// estimated as count/p, with variance N·p·(1-p)/p². The interval is the
// score interval, the Ns for which count lies within estimateZ standard
// deviations of N·p: it holds at count 0 (upward) and is near the normal
// interval count/p ± z·sqrt(count·(1-p))/p for large counts. It accounts
// for sampling alone: the nodes of the zone the crawl missed bias the
// estimate down by their share, which the tests measure.
func zoneInterval(count, bits int) (low, high float64) {
	p := math.Ldexp(1, -bits)
	q, z, x := 1-p, estimateZ, float64(count)
	// (x - λ)² = z²·q·λ, solved for λ = N·p.
	mid := x + z*z*q/2
	half := z * math.Sqrt(q*x+z*z*q*q/4)
	return max(0, mid-half) / p, (mid + half) / p
}
