package crawler

import (
	"math"
	"slices"
	"time"
)

// The adaptive sender's constants (see controller).
const (
	// adaptTarget is the queueing delay the sender tolerates before it
	// slows down, as LEDBAT's target (RFC 6817 allows at most 100 ms):
	// well below any query timeout, and above the noise of a round's
	// measure (adaptQuantile) on a heavy-tailed spread of nodes.
	adaptTarget = 50 * time.Millisecond
	// adaptStart is the rate, in queries per second, a crawl starts at
	// (or Config.Rate if lower), doubled every round until the first
	// sign of congestion, as TCP's slow start.
	adaptStart = 32.0
	// adaptFloor is the lowest rate (or Config.Rate if lower).
	adaptFloor = 4.0
	// adaptDelayCut and adaptLossCut scale the rate down on a queueing
	// delay above adaptTarget, and on a rise in the share of timeouts
	// (the queue overflowed: a stronger sign). Slow start, which may have
	// doubled past the link's capacity, ends with a halving either way.
	adaptDelayCut = 0.85
	adaptLossCut  = 0.7
	// adaptLossCutMin is the deepest cut for loss, which otherwise scales
	// the rate to the share of queries the link delivered.
	adaptLossCutMin = 0.25
	// adaptStanding is the number of rounds in a row a queue of half
	// adaptTarget or more must stand for a cut: one or two such rounds
	// are the noise of a heavy-tailed spread of nodes.
	adaptStanding = 3
	// adaptRegain is the number of rounds in which additive growth brings
	// the rate back to where it was cut: the step is the cut's size over
	// this.
	adaptRegain = 8
	// adaptProbe times the rate of the last cut, additive growth turns
	// into a search for a new maximum, its step doubling each round.
	adaptProbe = 1.5
	// adaptRoundMin and adaptRoundMax bound a round, in which replies are
	// gathered before the rate is changed: twice the base round trip
	// within these bounds.
	adaptRoundMin = 100 * time.Millisecond
	adaptRoundMax = time.Second
	// adaptSamples is the fewest replies a round's delay is measured
	// from: with fewer, the quantile says more about which nodes were
	// asked than about the queue. A round waits for them (see update).
	adaptSamples = 16
	// adaptMinSamples is the fewest replies a round that waited its
	// longest is measured from; with fewer it changes nothing.
	adaptMinSamples = 4
	// adaptLossSamples is the fewest outcomes of first queries sent in one
	// loss bucket for its timeout share to count.
	adaptLossSamples = 20
	// adaptLossExcess is how far above its usual level the share of
	// timeouts must rise to count as loss: silent nodes time out at any
	// rate, so only a rise says the link drops packets.
	adaptLossExcess = 0.1
	// adaptUsualBuckets is the number of loss buckets (8 s at the
	// shortest) the usual share of timeouts is about the mean of.
	adaptUsualBuckets = 32
	// adaptQuantile is the quantile of a round's round trips that stands
	// for the round. A queue delays every packet
	// alike, so it shifts every quantile by its delay; a low quantile is
	// where round trips are densest on a heavy-tailed spread of nodes
	// (and so least noisy), and unlike the minimum it does not fall as
	// more replies come in.
	adaptQuantile = 0.1
	// adaptBaseQuantile is the quantile of the last adaptBaseWindow's
	// rounds that is the base: low, so that only a queue that stood
	// through nine tenths of the minute is taken for the path, but not
	// the least, which one round of fast nodes would set below what a
	// round usually shows (lower quantiles, tried, cut the rate on a
	// heavy-tailed spread of nodes without any queue).
	adaptBaseQuantile = 0.1
	// adaptBaseWindow is how long a round counts towards the base, so
	// that it follows a change of path within a minute, as LEDBAT's base
	// delay history does.
	adaptBaseWindow = time.Minute
	// adaptRoundCap bounds the round trips kept per round, and
	// adaptHistoryCap the rounds kept for the base.
	adaptRoundCap   = 1024
	adaptHistoryCap = 1024
)

// controller is the adaptive sender (Config.Adaptive): it sets the
// rate at which the pacer lets queries out from what the crawl sees, in
// the manner of delay-based congestion control (TCP Vegas, LEDBAT), with
// Config.Rate as the ceiling. A link that is sent more than it carries
// queues the packets first and drops them only once its queue is full,
// so the round trips of the nodes that answer grow before any packet is
// lost.
//
// The nodes are many, their round trips spread widely, and each is asked
// once or twice, so the controller measures the crawl as a whole: a
// round (at least two base round trips, until enough of the round's own
// queries are answered) is summed up by a low quantile of its replies'
// round trips (adaptQuantile), and the base round trip is a low quantile
// of the rounds of the last minute (adaptBaseQuantile). Their difference is the
// queueing delay. A delay above adaptTarget, or above half of it for
// adaptStanding rounds, cuts the rate by adaptDelayCut, unless it is
// falling by a twentieth a round (a queue that drains after a cut is
// left to drain); far above the target, or in slow start, it cuts to
// what the round's replies say the link carried, so that slow start's
// overshoot is undone in one cut. Below half the
// target the rate grows: doubling in slow start (which ends at half the
// target), then by a constant step per round that regains a cut of
// adaptDelayCut in adaptRegain rounds, a step that doubles each round
// once well past the rate of the last cut (as TCP BIC probes for a new
// maximum). After a cut for loss the rate holds until the first bucket
// sent after it is judged. A round in which the crawl sent less than half its rate
// allows (it had nothing more to send) does not raise the rate, which
// would then be untested.
//
// Timeouts are weighed apart, by the time their query was sent: the
// first queries sent in each bucket of time are counted until their
// outcome is known (Config.Timeout after the bucket), and the bucket's
// share of timeouts is compared with the usual share. Silent nodes time
// out at any rate and make the usual share (on the live DHT, half the
// listed contacts never answer); a share adaptLossExcess above it, and
// three standard deviations of chance, while a round has shown a queue
// (a quarter of the target) since the bucket was sent, means the link
// dropped queries:
// the rate is cut by adaptLossCut, or to what the bucket's answers say
// the link delivered if that is less. The usual share follows the
// buckets that show no loss, over the last few seconds. When a bucket after such a cut still shows
// loss and its answers fell with the rate (a congested link answers as
// much at any rate above its capacity), the timeouts were not the link's
// doing: the crawl has moved on to more silent nodes, their share
// becomes the usual one, and the cut is undone. Resends are left out:
// they go to nodes that timed out, mostly silent ones.
//
// Only the outcomes of queries sent after the last cut can cause another,
// so that one episode of congestion is answered once, not once per
// packet it delayed. All times are Unix nanoseconds of Config.Now.
type controller struct {
	ceiling, floor float64
	rate           float64
	slowStart      bool
	step           float64 // additive growth per round
	peak           float64 // the rate before the last cut
	lastCut        int64   // when the rate was last cut

	// The rounds of the last adaptBaseWindow, oldest first, for the
	// base round trip.
	history []roundTrip
	base    time.Duration // their adaptQuantile; 0: no round yet

	// The current round.
	roundStart int64
	rtts       []time.Duration // round trips of replies to queries sent in the round, the first adaptRoundCap
	roundN     int             // such replies
	roundSent  int             // queries sent in the round
	arrived    int             // replies received in the round, to queries sent in it or before
	prevDelay  time.Duration   // the last round's queueing delay
	prevValid  bool
	standing   int   // rounds in a row with a standing queue of half the target or more
	lastQueued int64 // when a round last showed a queue of a quarter of the target or more

	// Loss, per bucket of send time.
	timeout      int64 // Config.Timeout
	bucketLen    int64
	buckets      []lossBucket // ring, by send time / bucketLen
	closed       int64        // buckets before this epoch are evaluated
	usual        float64      // the usual share of timeouts
	usualN       int          // buckets the usual share is the mean of, up to adaptUsualBuckets
	lossCut      float64      // the rate before a cut for loss not yet confirmed by a bucket after it; 0: none
	lossAnswered float64      // the answers in the bucket that caused that cut
	lossRate     float64      // the rate that cut set
}

// roundTrip is one round's round trip (its adaptQuantile) and its end.
type roundTrip struct {
	at  int64
	rtt time.Duration
}

// lossBucket counts the first queries sent in one bucket of time.
type lossBucket struct {
	epoch             int64 // send time / bucketLen
	answered, timeout int
}

// newController returns the adaptive sender of a crawl with ceiling rate
// and query timeout, starting at now.
func newController(rate float64, timeout time.Duration, now int64) *controller {
	bucketLen := max(int64(250*time.Millisecond), int64(timeout)/8)
	ring := (int64(timeout)+2*bucketLen)/bucketLen + 2
	c := &controller{
		ceiling:    rate,
		floor:      min(rate, adaptFloor),
		rate:       min(rate, adaptStart),
		slowStart:  true,
		lastCut:    now,
		lastQueued: math.MinInt64 / 2,
		roundStart: now,
		timeout:    int64(timeout),
		bucketLen:  bucketLen,
		buckets:    make([]lossBucket, ring),
		closed:     now / bucketLen,
	}
	for i := range c.buckets {
		c.buckets[i].epoch = -1
	}
	return c
}

// sent counts a query sent in the current round.
func (c *controller) sent() { c.roundSent++ }

// outcome takes in the outcome of a query sent at sent: a reply at now
// after rtt (answered), or a timeout. first says it was not a resend.
func (c *controller) outcome(sent, now int64, answered bool, rtt time.Duration, first bool) {
	if answered {
		c.arrived++
	}
	// A round measures the rate it sent at: replies to queries sent
	// before it began tell of an earlier rate.
	if answered && rtt > 0 && sent >= c.roundStart {
		if len(c.rtts) < adaptRoundCap {
			c.rtts = append(c.rtts, rtt)
		}
		c.roundN++
	}
	if !first {
		return
	}
	e := sent / c.bucketLen
	b := &c.buckets[e%int64(len(c.buckets))]
	if e < c.closed {
		return // its bucket has been evaluated (a reply after the timeout)
	}
	if b.epoch != e {
		*b = lossBucket{epoch: e}
	}
	if answered {
		b.answered++
	} else {
		b.timeout++
	}
}

// baseRTT returns the base round trip, or 0 before the first round.
func (c *controller) baseRTT() time.Duration { return c.base }

// quantile returns the q quantile of d, which it sorts; d is not empty.
func quantile(d []time.Duration, q float64) time.Duration {
	slices.Sort(d)
	return d[int(q*float64(len(d)-1))]
}

// measured takes in a round's round trip at now and returns the base it
// is to be compared with: the base of the rounds before it, or, for the
// first, its own.
func (c *controller) measured(rtt time.Duration, now int64) time.Duration {
	base := c.base
	if base == 0 {
		base = rtt
	}
	drop := 0
	for drop < len(c.history) && (c.history[drop].at < now-int64(adaptBaseWindow) || len(c.history)-drop >= adaptHistoryCap) {
		drop++
	}
	c.history = append(c.history[drop:], roundTrip{at: now, rtt: rtt})
	sorted := make([]time.Duration, len(c.history))
	for i, h := range c.history {
		sorted[i] = h.rtt
	}
	c.base = quantile(sorted, adaptBaseQuantile)
	return base
}

// update moves the controller on to now and returns the rate to send at.
func (c *controller) update(now int64) float64 {
	c.checkLoss(now)
	round := min(max(2*c.base, adaptRoundMin), adaptRoundMax)
	elapsed := time.Duration(now - c.roundStart)
	// A round waits for adaptSamples replies to its own queries, as long
	// as four rounds, the time for twice that many at the rate, or the
	// timeout, by which its first query's fate is known however long the
	// queue.
	wait := max(4*round, time.Duration(2*adaptSamples/c.rate*float64(time.Second)), time.Duration(c.timeout)+round)
	if elapsed < round || (c.roundN < adaptSamples && elapsed < wait) {
		return c.rate
	}
	if c.roundN < adaptMinSamples {
		// No measure of the delay: hold the rate (timeouts are weighed
		// apart, by checkLoss).
		c.newRound(now)
		return c.rate
	}
	appLimited := float64(c.roundSent) < 0.5*c.rate*elapsed.Seconds()
	delay := quantile(c.rtts, adaptQuantile)
	delay -= c.measured(delay, now)
	// A queue that does not fall by a twentieth a round stands: one that
	// drains after a cut is left to drain, one that stands is not.
	standing := !c.prevValid || delay > c.prevDelay-c.prevDelay/20
	if delay >= adaptTarget/4 {
		c.lastQueued = now
	}
	if standing && delay >= adaptTarget/2 {
		c.standing++
	} else {
		c.standing = 0
	}
	switch {
	case standing && (delay > adaptTarget || c.standing >= adaptStanding):
		// Above the target, or above half of it for adaptStanding
		// rounds: a shallow queue, full below the target, drops packets
		// while its delay stands at half of it. Far above the target,
		// the rate is far above what the link carries: cut as for
		// loss.
		factor := adaptDelayCut
		if delay > 4*adaptTarget || c.slowStart || delay <= adaptTarget {
			// The link is busy the whole round, so the replies that
			// arrived in it, over the share of queries that answer, are
			// about what it carries: a rate far above it (slow start's
			// last doubling, or a shallow queue's standing overflow) is
			// cut to it at once. (Just above the target, a round's
			// replies are too few to say more than the delay.)
			carried := float64(c.arrived) / elapsed.Seconds() / c.answering()
			factor = max(adaptLossCutMin, min(adaptLossCut, carried/c.rate))
		}
		c.cut(factor, now)
		c.standing = 0
	case delay < adaptTarget/2 && !appLimited && c.lossCut == 0:
		// (After a cut for loss the rate holds until a bucket sent after
		// it is judged: the loss came without a delay to watch, and
		// growth before the verdict would only repeat it.)
		c.grow()
		c.newRound(now)
	case delay >= adaptTarget/2 && c.slowStart:
		// A queue is forming: doubling would overshoot it (as HyStart
		// ends TCP's slow start on a delay increase). Grow by steps from
		// here on.
		c.slowStart = false
		c.peak = c.rate
		c.step = max(1, c.rate*(1/adaptDelayCut-1)/adaptRegain)
		c.newRound(now)
	default:
		c.newRound(now)
	}
	c.prevDelay, c.prevValid = delay, true
	return c.rate
}

// checkLoss evaluates the loss buckets whose every outcome is known by
// now, and cuts the rate if one sent after the last cut shows loss.
func (c *controller) checkLoss(now int64) {
	for ; (c.closed+1)*c.bucketLen+c.timeout+c.bucketLen <= now; c.closed++ {
		b := &c.buckets[c.closed%int64(len(c.buckets))]
		if b.epoch != c.closed {
			continue
		}
		n := b.answered + b.timeout
		if n < adaptLossSamples {
			continue
		}
		share := float64(b.timeout) / float64(n)
		if c.usualN == 0 {
			c.usual, c.usualN = share, 1
			continue
		}
		// A bucket of n outcomes strays from the usual share by chance
		// alone: three standard deviations of it are not loss.
		sd := math.Sqrt(c.usual * (1 - c.usual) / float64(n))
		lossy := share > c.usual+max(adaptLossExcess, 3*sd)
		switch {
		case !lossy:
			// The usual share is the mean of the buckets without loss,
			// over the last adaptUsualBuckets or so: slow, since a rate
			// that creeps past the link's raises the share of timeouts
			// by a little at a time, and must not teach the controller
			// that its loss is usual. A crawl that moves on to more
			// silent nodes raises it at once, and is learnt at the
			// first cut (below).
			c.usualN = min(c.usualN+1, adaptUsualBuckets)
			c.usual += (share - c.usual) / float64(c.usualN)
			c.lossCut = 0
		case c.closed*c.bucketLen < c.lastCut:
			// Sent before the last change of rate: it tells of an
			// earlier rate.
		case now-c.lastQueued > c.timeout+2*c.bucketLen:
			// No round has shown a queue since the bucket was sent: a
			// link that drops what overflows its queue delays what it
			// queues first, so these timeouts are nodes, not the link
			// (a crawl that moves between kinds of nodes, such as
			// those that drop sample_infohashes, shifts the share).
		case c.lossCut > 0 && float64(b.answered) < c.lossAnswered*(1+c.lossRate/c.lossCut)/2:
			// Still lossy after a cut for loss, and the answers fell
			// with the rate: a congested link answers as much at any
			// rate above its capacity, so these timeouts are not the
			// link's doing (the crawl has moved on to more silent
			// nodes). Take their share as the usual one, and undo the
			// cut.
			c.usual = share
			c.rate, c.lossCut = c.lossCut, 0
			c.lastCut = now
		default:
			// What the link delivered (the answers, over the share of
			// queries that answer) is about what it carries: a far
			// overloaded link is cut to about its capacity at once,
			// not by a few tenths once per timeout.
			delivered := float64(b.answered) / c.answering() / (float64(c.bucketLen) / 1e9)
			factor := max(adaptLossCutMin, min(adaptLossCut, delivered/c.rate))
			c.lossCut, c.lossAnswered = c.rate, float64(b.answered)
			c.cut(factor, now)
			c.lossRate = c.rate
			// Loss that came without a queueing delay will come again
			// without warning, a timeout after the rate passes the
			// link's: grow back four times slower.
			c.step = max(1, c.step/4)
		}
	}
}

// answering returns the usual share of first queries answered, at least
// 1% (on a network that answers nothing the rates it scales mean
// nothing anyway).
func (c *controller) answering() float64 { return max(0.01, 1-c.usual) }

// cut lowers the rate by factor (by half at least in slow start), and
// sets the additive step: that which regains a cut of adaptDelayCut in
// adaptRegain rounds.
func (c *controller) cut(factor float64, now int64) {
	ended := c.slowStart
	if ended {
		factor, c.slowStart = min(factor, 0.5), false
	}
	was := c.rate
	c.rate = max(c.floor, c.rate*factor)
	// Slow start's last doubling overshoots by up to twice, so its rate
	// says little of the link's: growth after it starts from the rate
	// cut to, as after a cut of adaptDelayCut.
	c.peak = was
	if ended {
		c.peak = c.rate / adaptDelayCut
	}
	// The step is that of a cut of adaptDelayCut whatever the cut: a cut
	// to what the link carried is a deep cut from a rate that was never
	// the link's.
	c.step = max(1, c.rate*(1/adaptDelayCut-1)/adaptRegain)
	c.lastCut = now
	c.newRound(now)
}

// grow raises the rate by one round's growth, up to the ceiling. Well
// past the rate of the last cut (adaptProbe times it) the step doubles
// every round: the link no longer holds back what it held back then
// (other traffic ended, a transient queue drained), and the ceiling may
// be far. Just past it, the link's capacity is likely near, and the step
// stays small.
func (c *controller) grow() {
	switch {
	case c.slowStart:
		c.rate *= 2
	case c.rate >= adaptProbe*c.peak:
		c.step *= 2
		fallthrough
	default:
		c.rate += c.step
	}
	c.rate = min(c.rate, c.ceiling)
}

// newRound starts a round at now.
func (c *controller) newRound(now int64) {
	c.roundStart, c.rtts, c.roundN, c.roundSent, c.arrived = now, c.rtts[:0], 0, 0, 0
}
