package shard

import (
	"context"
	"testing"
	"time"

	"github.com/lightdht/lightdht/crawler"
	"github.com/lightdht/lightdht/internal/pgtest"
)

// TestZonesShareLearned: what a zone's crawl has learned so far is written
// to its row while it holds the zone, and the crawls of the other zones
// read it back summed with the zones done; a process that lost its zone
// writes nothing over the new holder's; the sharer wakes its publisher
// once its crawl's outcomes have grown by shareStep, not at every one.
func TestZonesShareLearned(t *testing.T) {
	url := pgtest.Database(t)
	ctx := context.Background()
	clk := &clock{t: time.UnixMilli(1_700_000_000_000)}
	a, err := openTest(t, url, "share", 2, clk)
	if err != nil {
		t.Fatal(err)
	}
	b, err := openTest(t, url, "share", 2, clk)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct {
		cr *Crawl
		z  int
	}{{a, 0}, {b, 1}, {a, 2}} {
		if z, ok, err := want.cr.claim(ctx); err != nil || !ok || z.Number != want.z {
			t.Fatalf("claim = zone %d, %v, %v; want %d", z.Number, ok, err, want.z)
		}
	}
	done := crawler.Learned{Resends: crawler.Outcomes{Sent: 40, Answered: 2}, Checks: crawler.Outcomes{Sent: 150, Answered: 1}}
	if held, _, err := a.done(ctx, 2, figures{learned: done}); err != nil || !held {
		t.Fatalf("done zone 2: held %v, %v", held, err)
	}

	soFar := crawler.Learned{Resends: crawler.Outcomes{Sent: 30}, Checks: crawler.Outcomes{Sent: 70}}
	got, err := a.exchange(ctx, 0, soFar)
	if err != nil {
		t.Fatal(err)
	}
	if got != done {
		t.Fatalf("zone 0 reads %+v, want zone 2's %+v (zone 1 has learned nothing yet)", got, done)
	}
	got, err = b.learned(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if want := done.Add(soFar); got != want {
		t.Fatalf("zone 1 reads %+v, want zone 2's and zone 0's so far, %+v", got, want)
	}
	// Zone 0 claimed by b (a's lease ran out): a's late writes are
	// dropped, and b's own zone is left out of what b reads for it.
	clk.add(2 * DefaultLease)
	if z, ok, err := b.claim(ctx); err != nil || !ok || z.Number != 0 {
		t.Fatalf("reclaim = zone %d, %v, %v; want 0", z.Number, ok, err)
	}
	if _, err := a.exchange(ctx, 0, crawler.Learned{Checks: crawler.Outcomes{Sent: 9999}}); err != nil {
		t.Fatal(err)
	}
	got, err = b.learned(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got != done {
		t.Fatalf("zone 0's new holder reads %+v, want zone 2's %+v", got, done)
	}
	got, err = b.learned(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if want := done.Add(soFar); got != want {
		t.Fatalf("after a lost holder's write zone 1 reads %+v, want %+v", got, want)
	}

	// The sharer: exchange hands back the others' as last read and wakes
	// publish only once its crawl's outcomes have grown enough.
	s := newSharer(done)
	woken := func() bool {
		select {
		case <-s.wake:
			return true
		default:
			return false
		}
	}
	if got := s.exchange(crawler.Learned{Checks: crawler.Outcomes{Sent: shareStep - 1}}); got != done || woken() {
		t.Fatalf("exchange = %+v, woken %v after %d outcomes; want %+v, not woken", got, !woken(), shareStep-1, done)
	}
	if s.exchange(crawler.Learned{Checks: crawler.Outcomes{Sent: shareStep}}); !woken() {
		t.Fatalf("not woken after %d outcomes", shareStep)
	}
	stop := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		b.publish(ctx, 1, s, stop)
		close(finished)
	}()
	s.exchange(crawler.Learned{Checks: crawler.Outcomes{Sent: 2 * shareStep}})
	// b's publish writes zone 1's 20 checks and reads back zones 0 and
	// 2: zone 0 still holds what a's crawl of it learned (b has written
	// nothing there yet), which counts as what the network taught.
	deadline := time.Now().Add(time.Minute) // a guard against a hang, not a speed test
	for {
		s.mu.Lock()
		sent, others := s.sent, s.others
		s.mu.Unlock()
		if sent == 2*shareStep {
			if want := done.Add(soFar); others != want {
				t.Fatalf("publish read %+v, want %+v", others, want)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("publish wrote nothing in a minute")
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	<-finished
	got, err = a.learned(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := done.Add(crawler.Learned{Checks: crawler.Outcomes{Sent: 2 * shareStep}}); got != want {
		t.Fatalf("zone 0 reads %+v after zone 1's publish, want %+v", got, want)
	}
}
