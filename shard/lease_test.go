package shard

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/lightdht/lightdht/crawler"
	"github.com/lightdht/lightdht/db"
	"github.com/lightdht/lightdht/internal/pgtest"
)

// clock is a clock the test moves by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// openTest joins the shared crawl name on url with its own store and a
// loopback socket that sends nothing.
func openTest(t *testing.T, url, name string, bits int, clk *clock) (*Crawl, error) {
	t.Helper()
	store, err := db.Open(url, db.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	cfg := Config{URL: url, Name: name, Bits: bits, Store: store, Host: "test", Lease: time.Minute,
		Crawler: crawler.Config{Conn: conn}}
	if clk != nil {
		cfg.Now = clk.now
	}
	c, err := Open(context.Background(), cfg)
	if err == nil {
		t.Cleanup(c.Close)
	}
	return c, err
}

// TestLeaseExpiryReclaim: a zone is claimed by one crawler at a time; a
// zone whose lease ran out is claimed again, and its first holder can
// neither renew it nor mark it done; a renewed lease is not taken; every
// other zone is claimed once; exactly one crawler finishes the crawl.
func TestLeaseExpiryReclaim(t *testing.T) {
	url := pgtest.Database(t)
	ctx := context.Background()
	clk := &clock{t: time.UnixMilli(1_700_000_000_000)}
	a, err := openTest(t, url, "lease", 2, clk)
	if err != nil {
		t.Fatal(err)
	}
	b, err := openTest(t, url, "lease", 2, clk)
	if err != nil {
		t.Fatal(err)
	}
	c, err := openTest(t, url, "lease", 0, clk) // 0: the crawl's own bits
	if err != nil {
		t.Fatal(err)
	}
	if !a.Created() || b.Created() || c.Created() || b.ID() != a.ID() || c.ID() != a.ID() || c.Bits() != 2 {
		t.Fatalf("created %v %v %v, ids %d %d %d, bits %d: want one crawl of 2 bits created by the first", a.Created(), b.Created(), c.Created(), a.ID(), b.ID(), c.ID(), c.Bits())
	}
	claim := func(cr *Crawl, want int) {
		t.Helper()
		z, ok, err := cr.claim(ctx)
		if err != nil || !ok || z.Number != want {
			t.Fatalf("claim = zone %d, %v, %v; want zone %d", z.Number, ok, err, want)
		}
	}
	noClaim := func(cr *Crawl) {
		t.Helper()
		if z, ok, err := cr.claim(ctx); err != nil || ok {
			t.Fatalf("claim = zone %d, %v, %v; want none free", z.Number, ok, err)
		}
	}
	claim(a, 0)
	claim(b, 1)
	claim(a, 2)
	claim(b, 3)
	noClaim(c)
	if open, next, err := c.status(ctx); err != nil || open != 4 || next != time.Minute {
		t.Fatalf("status = %d open, next expiry %v, %v; want 4, 1m0s", open, next, err)
	}

	// Half a lease later b renews its zones; a, which has stalled, does not.
	clk.add(30 * time.Second)
	for _, z := range []int{1, 3} {
		if held, err := b.renew(ctx, z); err != nil || !held {
			t.Fatalf("b renews zone %d: held %v, %v", z, held, err)
		}
	}
	// Just before a's leases run out, nothing is free.
	clk.add(30*time.Second - time.Millisecond)
	noClaim(c)
	// Then a's two zones are claimed again, lowest first; b's are not.
	clk.add(time.Millisecond)
	claim(c, 0)
	claim(c, 2)
	noClaim(c)
	if held, err := a.renew(ctx, 0); err != nil || held {
		t.Fatalf("a renews zone 0 after c claimed it: held %v, %v; want lost", held, err)
	}
	if held, _, err := a.done(ctx, 2, figures{found: 99}); err != nil || held {
		t.Fatalf("a marks zone 2 done after c claimed it: held %v, %v; want lost", held, err)
	}
	for _, z := range []int{0, 2} {
		if held, last, err := c.done(ctx, z, figures{found: 10, replied: 9, queries: 20, size: 10}); err != nil || !held || last {
			t.Fatalf("c marks zone %d done: held %v, last %v, %v; want held, not last", z, held, last, err)
		}
	}
	if held, last, err := b.done(ctx, 1, figures{found: 10, replied: 9, queries: 20, size: 10}); err != nil || !held || last {
		t.Fatalf("b marks zone 1 done: held %v, last %v, %v", held, last, err)
	}
	if held, last, err := b.done(ctx, 3, figures{found: 10, replied: 9, queries: 20, size: 10.5}); err != nil || !held || !last {
		t.Fatalf("b marks the last zone done: held %v, last %v, %v; want held and last", held, last, err)
	}
	// Done twice: the second is no one's.
	if held, last, err := b.done(ctx, 3, figures{}); err != nil || held || last {
		t.Fatalf("b marks zone 3 done again: held %v, last %v, %v; want neither", held, last, err)
	}
	noClaim(a)

	zones, err := a.Zones(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantClaims := []int{2, 1, 2, 1}
	wantHolder := []*Crawl{c, b, c, b}
	for i, z := range zones {
		if z.State != StateDone || z.Claims != wantClaims[i] || z.Holder != wantHolder[i].Holder() || z.NodesFound != 10 || !z.LeaseUntil.IsZero() {
			t.Errorf("zone %d: %+v; want done, %d claims, by %s, 10 nodes found", i, z, wantClaims[i], wantHolder[i].Holder())
		}
		if z.Prefix != ZonePrefix(i, 2) || z.Prefix[0] != byte(i)<<6 {
			t.Errorf("zone %d has prefix %v", i, z.Prefix)
		}
	}
	tot, err := c.Totals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if tot.Done != 4 || tot.Claims != 6 || tot.NodesFound != 40 || tot.SizeEstimate != 40.5 || tot.QueriesSent != 80 {
		t.Errorf("totals %+v", tot)
	}
	var finisher string
	if err := a.pool.QueryRow(ctx, "SELECT finisher FROM shared_crawls WHERE name = 'lease'").Scan(&finisher); err != nil || finisher != b.Holder() {
		t.Errorf("finisher %q, %v; want %q", finisher, err, b.Holder())
	}
}

// TestOpenRace: processes that open one name at once join one crawl,
// created by exactly one of them, with its zones created once.
func TestOpenRace(t *testing.T) {
	url := pgtest.Database(t)
	const n = 6
	crawls := make([]*Crawl, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { crawls[i], errs[i] = openTest(t, url, "race", 3, nil) })
	}
	wg.Wait()
	created := 0
	for i, c := range crawls {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if c.ID() != crawls[0].ID() {
			t.Errorf("crawl %d has id %d, crawl 0 %d", i, c.ID(), crawls[0].ID())
		}
		if c.Created() {
			created++
		}
	}
	if created != 1 {
		t.Errorf("%d processes created the crawl, want 1", created)
	}
	zones, err := crawls[0].Zones(context.Background())
	if err != nil || len(zones) != 8 {
		t.Errorf("%d zones, %v; want 8", len(zones), err)
	}
}

// TestOpenErrors: a name that exists with other bits, bits out of range
// and a database that is not PostgreSQL are refused with a clear error.
func TestOpenErrors(t *testing.T) {
	url := pgtest.Database(t)
	if _, err := openTest(t, url, "four", 4, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := openTest(t, url, "four", 5, nil); !errors.Is(err, ErrBitsMismatch) {
		t.Errorf("Open with other bits: %v, want ErrBitsMismatch", err)
	}
	for _, bits := range []int{-1, MaxBits + 1} {
		if _, err := openTest(t, url, "bad", bits, nil); err == nil {
			t.Errorf("Open with %d bits: no error", bits)
		}
	}
	if _, err := openTest(t, url, "none", 20, nil); err == nil {
		t.Error("Open with 20 bits: no error")
	}
	store, err := db.Open(t.TempDir()+"/x.db", db.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = Open(context.Background(), Config{URL: t.TempDir() + "/x.db", Name: "x", Store: store, Crawler: crawler.Config{Conn: conn}})
	if !errors.Is(err, ErrNotPostgres) {
		t.Errorf("Open of a SQLite file: %v, want ErrNotPostgres", err)
	}
}

// TestRecoverEnd: a finisher that died after marking the last zone done
// left the crawl without its end. A process that runs the crawl later
// records it, once a lease has passed since the last zone was marked
// (before that the finisher may still be recording it).
func TestRecoverEnd(t *testing.T) {
	url := pgtest.Database(t)
	ctx := context.Background()
	clk := &clock{t: time.UnixMilli(1_700_000_000_000)}
	a, err := openTest(t, url, "orphan", 1, clk)
	if err != nil {
		t.Fatal(err)
	}
	for z := range 2 {
		if _, ok, err := a.claim(ctx); err != nil || !ok {
			t.Fatalf("claim: %v, %v", ok, err)
		}
		held, last, err := a.done(ctx, z, figures{found: 10, replied: 7, queries: 15, size: 11})
		if err != nil || !held || last != (z == 1) {
			t.Fatalf("done zone %d: held %v, last %v, %v", z, held, last, err)
		}
	}
	// a dies here, before it records the end.
	ended := func() *int64 {
		t.Helper()
		var e *int64
		var replied *int64
		if err := a.pool.QueryRow(ctx, "SELECT ended, nodes_replied FROM crawl_runs WHERE id = $1", a.ID()).Scan(&e, &replied); err != nil {
			t.Fatal(err)
		}
		if e != nil && (replied == nil || *replied != 14) {
			t.Errorf("ended with nodes_replied %v, want 14", replied)
		}
		return e
	}
	b, err := openTest(t, url, "orphan", 0, clk)
	if err != nil {
		t.Fatal(err)
	}
	clk.add(time.Minute - time.Millisecond)
	sum, err := b.Run(ctx)
	if err != nil || sum.Recovered || sum.Last || sum.Done != 2 {
		t.Fatalf("Run within the lease: %+v, %v; want every zone done, the end not recorded", sum, err)
	}
	if e := ended(); e != nil {
		t.Fatalf("ended %d within the finisher's lease", *e)
	}
	clk.add(time.Millisecond)
	c, err := openTest(t, url, "orphan", 0, clk)
	if err != nil {
		t.Fatal(err)
	}
	sum, err = c.Run(ctx)
	if err != nil || !sum.Recovered || sum.NodesReplied != 14 {
		t.Fatalf("Run a lease later: %+v, %v; want the end recovered", sum, err)
	}
	if e := ended(); e == nil {
		t.Fatal("the crawl has no end after the recovery")
	}
	// Recorded: no one records it again.
	if sum, err = b.Run(ctx); err != nil || sum.Recovered {
		t.Fatalf("Run after the recovery: %+v, %v", sum, err)
	}
}
