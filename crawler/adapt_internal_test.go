package crawler

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// ctlPath is a scripted path for the controller: for a query sent at
// now, its round trip if it is answered, and the share of queries that
// time out.
type ctlPath func(now time.Duration) (rtt time.Duration, timeoutShare float64)

// ctlSim drives a controller in 10 ms ticks on a scripted path: it sends
// at the controller's rate (or at most limit queries/s when limit > 0, as
// a crawl with little to ask) and feeds back the outcomes the path says,
// each in its time.
type ctlSim struct {
	c          *controller
	limit      float64
	now        time.Duration
	pending    []ctlEvent // outcomes to come, by time
	owed, lost float64
}

// ctlEvent is the outcome of one query.
type ctlEvent struct {
	sent, at int64
	answered bool
	rtt      time.Duration
}

// run moves the simulation on by d and returns the rate after each tick.
func (s *ctlSim) run(d time.Duration, path ctlPath) []float64 {
	const tick = 10 * time.Millisecond
	var rates []float64
	for end := s.now + d; s.now < end; s.now += tick {
		t := int64(s.now)
		for len(s.pending) > 0 && s.pending[0].at <= t {
			e := s.pending[0]
			s.pending = s.pending[1:]
			s.c.outcome(e.sent, e.at, e.answered, e.rtt, true)
		}
		r := s.c.update(t)
		rates = append(rates, r)
		if s.limit > 0 {
			r = min(r, s.limit)
		}
		for s.owed += r * tick.Seconds(); s.owed >= 1; s.owed-- {
			rtt, share := path(s.now)
			s.c.sent()
			e := ctlEvent{sent: t, at: t + int64(rtt), answered: true, rtt: rtt}
			if s.lost += share; s.lost >= 1 {
				s.lost--
				e = ctlEvent{sent: t, at: t + s.c.timeout}
			}
			i := len(s.pending)
			for i > 0 && s.pending[i-1].at > e.at {
				i--
			}
			s.pending = append(s.pending, ctlEvent{})
			copy(s.pending[i+1:], s.pending[i:])
			s.pending[i] = e
		}
	}
	return rates
}

const ctlBase = 40 * time.Millisecond

// steady is a path with a constant round trip and a constant share of
// silent nodes.
func steady(share float64) ctlPath {
	return func(time.Duration) (time.Duration, float64) { return ctlBase, share }
}

// TestControllerSlowStart: on a path that never queues, the rate doubles
// from adaptStart each round to the ceiling and stays there.
func TestControllerSlowStart(t *testing.T) {
	c := newController(2000, time.Second, 0)
	rates := (&ctlSim{c: c}).run(5*time.Second, steady(0))
	if rates[0] != adaptStart {
		t.Errorf("first rate %v, want %v", rates[0], adaptStart)
	}
	reached := -1
	for i, r := range rates {
		if r == 2000 && reached < 0 {
			reached = i
		}
		if reached >= 0 && r != 2000 {
			t.Fatalf("rate %v at %v after reaching the ceiling", r, time.Duration(i)*10*time.Millisecond)
		}
	}
	// 32 -> 2048 is 6 doublings, each a round of at least 100 ms.
	if reached < 0 || reached > 150 {
		t.Errorf("ceiling reached after %d ticks of 10 ms, want within 1.5 s", reached)
	}
	if !c.slowStart || c.baseRTT() != ctlBase {
		t.Errorf("slow start %v, base %v: want still in slow start, base %v", c.slowStart, c.baseRTT(), ctlBase)
	}
}

// TestControllerSilentNodes: nodes that never answer time out at any
// rate; however many there are, they are not taken for congestion: the
// rate is never cut, and reaches the ceiling (slowly when answers are
// few, as rounds wait for enough of them).
func TestControllerSilentNodes(t *testing.T) {
	for _, share := range []float64{0.1, 0.5, 0.9} {
		c := newController(1000, time.Second, 0)
		rates := (&ctlSim{c: c}).run(20*time.Second, steady(share))
		for i := 1; i < len(rates); i++ {
			if rates[i] < rates[i-1] {
				t.Errorf("%.0f%% silent: rate cut from %v to %v at %v", 100*share, rates[i-1], rates[i], time.Duration(i)*10*time.Millisecond)
				break
			}
		}
		if rates[1000] != 1000 {
			t.Errorf("%.0f%% silent: rate %v at 10 s, want the ceiling", 100*share, rates[1000])
		}
	}
}

// cuts returns the indexes at which rates fell.
func cuts(rates []float64) []int {
	var out []int
	for i := 1; i < len(rates); i++ {
		if rates[i] < rates[i-1] {
			out = append(out, i)
		}
	}
	return out
}

// TestControllerDelay: a queueing delay above the target ends slow start
// with a cut of at least a half; a queue that then drains is left to drain, and the rate
// grows back by equal steps; a standing queue cuts the rate again and
// again; once the queue is gone the rate regains the ceiling, the step
// doubling once well past the rate of the last cut.
func TestControllerDelay(t *testing.T) {
	c := newController(1000, time.Second, 0)
	sim := &ctlSim{c: c}
	var queue func(now time.Duration) time.Duration
	path := func(now time.Duration) (time.Duration, float64) { return ctlBase + queue(now), 0 }

	queue = func(time.Duration) time.Duration { return 0 }
	sim.run(3*time.Second, path)
	if c.rate != 1000 || !c.slowStart {
		t.Fatalf("rate %v, slow start %v before any queue; want 1000 in slow start", c.rate, c.slowStart)
	}

	// A 200 ms queue that halves every 300 ms.
	onset := sim.now
	queue = func(now time.Duration) time.Duration {
		return time.Duration(float64(200*time.Millisecond) * math.Pow(0.5, (now-onset).Seconds()/0.3))
	}
	rates := sim.run(3*time.Second, path)
	cs := cuts(rates)
	// Slow start ends with a halving at least, and at most a cut to a
	// quarter: what arrived in the round, the queue holding replies
	// back, says the path carried less.
	if len(cs) != 1 || c.slowStart {
		t.Fatalf("a draining queue: %d cuts, slow start %v; want one cut, ending slow start", len(cs), c.slowStart)
	}
	cutTo := rates[cs[0]]
	if cutTo > 500 || cutTo < 1000*adaptLossCutMin {
		t.Errorf("slow start cut to %v, want from %v to 500", cutTo, 1000*adaptLossCutMin)
	}
	// Slow start's rate says little of the link's (it may have doubled
	// past it): growth starts from the rate cut to, as if that were a
	// cut of adaptDelayCut, and stays additive up to adaptProbe times
	// the rate it regains.
	peak := cutTo / adaptDelayCut
	steps := map[float64]bool{}
	for i := cs[0] + 1; i < len(rates) && rates[i-1] < adaptProbe*peak; i++ {
		if d := rates[i] - rates[i-1]; d != 0 {
			steps[math.Round(d*1e6)/1e6] = true
		}
	}
	if want := math.Round((peak-cutTo)/adaptRegain*1e6) / 1e6; len(steps) != 1 || !steps[want] {
		t.Errorf("growth after the cut in steps of %v, want all of %v", steps, want)
	}

	// A standing 100 ms queue.
	queue = func(time.Duration) time.Duration { return 100 * time.Millisecond }
	before := c.rate
	rates = sim.run(3*time.Second, path)
	if n := len(cuts(rates)); n < 2 || c.rate > before*adaptDelayCut*adaptDelayCut {
		t.Errorf("a standing queue: %d cuts, rate from %v to %v; want repeated cuts", n, before, c.rate)
	}

	queue = func(time.Duration) time.Duration { return 0 }
	sim.run(20*time.Second, path)
	if c.rate != 1000 {
		t.Errorf("rate %v 20 s after the queue went, want back at the 1000 ceiling", c.rate)
	}
}

// TestControllerLoss: a rise in the share of timeouts while a small
// queue shows cuts the rate; when the cut does not bring the answers back
// (they fell with the rate: the crawl moved on to more silent nodes, the
// link dropped nothing), the new share becomes the usual one and the cut
// is undone.
func TestControllerLoss(t *testing.T) {
	c := newController(1000, time.Second, 0)
	sim := &ctlSim{c: c}
	share := 0.1
	queue := time.Duration(0)
	path := func(time.Duration) (time.Duration, float64) { return ctlBase + queue, share }
	sim.run(5*time.Second, path)
	if c.rate != 1000 {
		t.Fatalf("rate %v at 10%% timeouts, want the ceiling", c.rate)
	}
	share, queue = 0.4, 15*time.Millisecond
	rates := sim.run(5*time.Second, path)
	if n := len(cuts(rates)); n != 1 {
		t.Errorf("%d cuts after the share of timeouts rose for good, want 1, then undone", n)
	}
	if low := slices.Min(rates); low > 1000*adaptLossCut {
		t.Errorf("lowest rate %v after a rise in timeouts, want at most %v", low, 1000*adaptLossCut)
	}
	if c.rate != 1000 || math.Abs(c.usual-0.4) > 0.05 {
		t.Errorf("rate %v, usual share %.2f 5 s after the rise; want the cut undone and 0.40 usual", c.rate, c.usual)
	}
}

// TestControllerLossOnly: a link whose queue is too shallow to delay
// much (30 ms when full, below the target, as 10 packets at 300/s) drops
// what is sent beyond its capacity of 300 queries/s; the rate settles
// near it. (With a queue that delays less than a quarter of the target
// the controller cannot tell loss from a change among the nodes, and
// does not cut: see TestControllerLossWithoutQueue.)
func TestControllerLossOnly(t *testing.T) {
	const capacity = 300
	c := newController(3000, time.Second, 0)
	sim := &ctlSim{c: c}
	path := func(time.Duration) (time.Duration, float64) {
		if c.rate <= capacity {
			return ctlBase, 0.1
		}
		return ctlBase + 30*time.Millisecond, 0.1 + 0.9*(1-capacity/c.rate)
	}
	sim.run(10*time.Second, path)
	rates := sim.run(20*time.Second, path)
	mean := 0.0
	for _, r := range rates {
		mean += r
	}
	mean /= float64(len(rates))
	// Loss shows a timeout late, and a queue that stands at 30 ms only
	// after 3 rounds, so the rate overshoots the link's before each cut.
	if mean < 0.7*capacity || mean > 1.3*capacity {
		t.Errorf("mean rate %.0f over 20 s behind a lossy %d/s link, want within 30%% of it", mean, capacity)
	}
}

// TestControllerAppLimited: a crawl that sends less than its rate allows
// (little to ask) does not raise the rate it has not tried.
func TestControllerAppLimited(t *testing.T) {
	c := newController(5000, time.Second, 0)
	(&ctlSim{c: c, limit: 10}).run(5*time.Second, steady(0))
	if c.rate > 2*adaptStart {
		t.Errorf("rate %v after 5 s of sending 10 queries/s, want at most %v", c.rate, 2*adaptStart)
	}
}

// TestControllerHeavyTail: on nodes whose round trips spread over two
// orders of magnitude (log-normal, median 150 ms, most between 40 ms and
// 600 ms, a few beyond a second) and half of which never answer, the
// spread is not taken for a queue: the rate reaches the ceiling and is
// not cut. A standing 150 ms queue on top of the same spread is seen and
// cut.
func TestControllerHeavyTail(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	queue := time.Duration(0)
	path := func(time.Duration) (time.Duration, float64) {
		rtt := time.Duration(float64(150*time.Millisecond) * math.Exp(0.8*rng.NormFloat64()))
		return min(rtt, 1900*time.Millisecond) + queue, 0.5
	}
	for _, ceiling := range []float64{250, 2500} {
		c := newController(ceiling, 2*time.Second, 0)
		sim := &ctlSim{c: c}
		rates := sim.run(60*time.Second, path)
		if cs := cuts(rates); len(cs) > 0 {
			t.Errorf("ceiling %v: cut %d times without a queue, first at %v", ceiling, len(cs), time.Duration(cs[0])*10*time.Millisecond)
		}
		if c.rate != ceiling {
			t.Errorf("rate %v after a minute without a queue, want the %v ceiling", c.rate, ceiling)
		}
		queue = 150 * time.Millisecond
		rates = sim.run(10*time.Second, path)
		if len(cuts(rates)) == 0 || c.rate > ceiling*adaptDelayCut {
			t.Errorf("ceiling %v: rate %v after 10 s of a standing 150 ms queue, want cut", ceiling, c.rate)
		}
		queue = 0
	}
}

// TestControllerLossWithoutQueue: a rise in the share of timeouts while
// no round shows a queue is nodes, not the link (a crawl that moves on to
// nodes that drop sample_infohashes): the rate is not cut.
func TestControllerLossWithoutQueue(t *testing.T) {
	c := newController(1000, time.Second, 0)
	sim := &ctlSim{c: c}
	share := 0.1
	path := func(time.Duration) (time.Duration, float64) { return ctlBase, share }
	sim.run(5*time.Second, path)
	for _, share = range []float64{0.5, 0.1, 0.6, 0.2} {
		if rates := sim.run(3*time.Second, path); len(cuts(rates)) > 0 {
			t.Errorf("timeouts at %.0f%% without a queue cut the rate to %v", 100*share, slices.Min(rates))
		}
	}
}
