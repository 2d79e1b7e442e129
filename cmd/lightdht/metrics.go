package main

import (
	"fmt"
	"sync"

	"github.com/lightdht/lightdht/crawler"
	"github.com/lightdht/lightdht/metrics"
)

// addMetrics adds --metrics.
func (c *cli) addMetrics() *string {
	return c.fs.String("metrics", "", "serve Prometheus metrics on http://`ADDR`/metrics and pprof on /debug/pprof/, e.g. 127.0.0.1:9100 (empty: off; any address is allowed, so mind who can reach it)")
}

// startMetrics starts the metrics listener on addr, unless addr is empty,
// and prints its address on stderr as "metrics http://ADDR/metrics". It
// returns the Set to add sources to (nil when off), the listener's URL
// ("" when off) and a stop function to call once.
func (c *cli) startMetrics(addr string) (*metrics.Set, string, func(), error) {
	if addr == "" {
		return nil, "", func() {}, nil
	}
	set := metrics.New()
	srv, err := metrics.Serve(addr, set.Handler())
	if err != nil {
		return nil, "", nil, fmt.Errorf("--metrics: %w", err)
	}
	fmt.Fprintf(c.stderr, "metrics %s\n", srv.URL())
	return set, srv.URL(), func() {
		if err := srv.Close(); err != nil {
			c.log.Warn().Err(err).Msg("closing the metrics listener")
		}
	}, nil
}

// lastProgress keeps a crawl's latest progress report for the metrics.
type lastProgress struct {
	mu sync.Mutex
	p  crawler.Progress
}

func (l *lastProgress) set(p crawler.Progress) {
	l.mu.Lock()
	l.p = p
	l.mu.Unlock()
}

func (l *lastProgress) get() crawler.Progress {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.p
}
