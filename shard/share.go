package shard

import (
	"context"
	"sync"

	"github.com/lightdht/lightdht/crawler"
)

// A zone's crawl publishes what it has learned each time it has grown by
// a sixteenth, and by shareStep outcomes at least: the zones beside it
// then see it within a few checks, and a crawl of a large zone writes its
// row a few hundred times in all, not once per resend.
const (
	shareStep     = 10
	shareFraction = 16
)

// sharer carries what a zone's crawl learns to its crawl_zones row, and
// what the crawl's other zones have learned back to it
// (crawler.Config.Share), so that zones crawled at once learn together
// what one crawl would learn once. Its fields are guarded by mu: the
// crawler's loop calls exchange, the goroutine of publish writes.
type sharer struct {
	mu     sync.Mutex
	own    crawler.Learned // the latest the crawl handed over
	sent   int             // outcomes in the latest published (total)
	others crawler.Learned // the other zones', as last read
	wake   chan struct{}   // capacity 1: own has grown enough to publish
}

func newSharer(others crawler.Learned) *sharer {
	return &sharer{others: others, wake: make(chan struct{}, 1)}
}

// exchange is crawler.Config.Share: it keeps own, wakes publish once own
// has grown enough since it last wrote, and returns the others' as last
// read. It never waits for the database.
func (s *sharer) exchange(own crawler.Learned) crawler.Learned {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.own = own
	if n := total(own); n-s.sent >= max(shareStep, s.sent/shareFraction) {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	return s.others
}

// total is the number of outcomes in l, of every kind.
func total(l crawler.Learned) int {
	return l.Resends.Sent + l.FollowUps.Sent + l.Resamples.Sent + l.Checks.Sent
}

// publish writes s's own to zone z's row and reads the other zones' back
// each time exchange wakes it, until stop is closed. A failed write is
// logged and tried again at the next wake: what is shared only saves
// queries, and the zone's row gets its final figures when it is done.
func (c *Crawl) publish(ctx context.Context, z int, s *sharer, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-s.wake:
		}
		s.mu.Lock()
		own := s.own
		s.mu.Unlock()
		others, err := c.exchange(ctx, z, own)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			c.log.Warn().Err(err).Int("zone", z).Msg("sharing what the zone's crawl learned failed")
			continue
		}
		s.mu.Lock()
		s.others, s.sent = others, total(own)
		s.mu.Unlock()
	}
}
