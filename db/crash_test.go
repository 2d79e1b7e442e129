package db

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lightdht/lightdht/krpc"
	"github.com/lightdht/lightdht/observe"
)

// crashFileCycles is how many crash cycles share one database file.
const crashFileCycles = 50

// crashChildEnv names the database file TestCrashChild writes to.
const crashChildEnv = "LIGHTDHT_DB_CRASH_CHILD"

// TestCrash runs TestCrashChild in a child process, SIGKILLs it at a
// random moment, and checks that the file is intact and holds at least
// every sighting the child reported as committed. The same file is reused
// for up to crashFileCycles cycles, so each cycle also recovers the
// previous crash. The random moment is 50 to 500 ms after the child has
// reported its first commit, or its second, or (every third cycle) after
// its start, which may come before it has committed anything: how fast
// the child runs changes where the kills land, not whether commits are
// checked.
// LIGHTDHT_CRASH_CYCLES sets the number of cycles (default 20).
func TestCrash(t *testing.T) {
	cycles := 20
	if v := os.Getenv("LIGHTDHT_CRASH_CYCLES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("LIGHTDHT_CRASH_CYCLES=%q", v)
		}
		cycles = n
	}
	dir := t.TempDir()
	var total, reportedCycles int64
	for cycle := range cycles {
		// A fresh file every crashFileCycles cycles keeps the integrity
		// check of a long run from growing without bound; within a file,
		// every cycle recovers the crash before it.
		path := filepath.Join(dir, fmt.Sprintf("crash-%d.db", cycle/crashFileCycles))
		before := int64(0)
		if cycle%crashFileCycles > 0 {
			before = checkCrashFile(t, path, cycle)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var committed, commits atomic.Int64
		progress := make(chan struct{}, 1) // a commit was reported
		eof := make(chan struct{})
		go func() {
			defer close(eof)
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if v, ok := strings.CutPrefix(sc.Text(), "committed "); ok {
					n, err := strconv.ParseInt(v, 10, 64)
					if err == nil {
						committed.Store(n)
						commits.Add(1)
						select {
						case progress <- struct{}{}:
						default:
						}
					}
				}
			}
		}()
		hung := time.After(hangGuard)
		for want := [...]int64{1, 2, 0}[cycle%3]; commits.Load() < want; {
			select {
			case <-progress:
			case <-eof:
				cmd.Wait()
				t.Fatalf("cycle %d: the child exited after %d commits, before the %d to wait for", cycle, commits.Load(), want)
			case <-hung:
				cmd.Process.Kill()
				t.Fatalf("cycle %d: the child reported %d commits in %v, want %d", cycle, commits.Load(), hangGuard, want)
			}
		}
		time.Sleep(time.Duration(50+rand.IntN(451)) * time.Millisecond)
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		<-eof // every line written before the kill has been read
		cmd.Wait()
		last := committed.Load()
		after := checkCrashFile(t, path, cycle+1)
		if after < before+last {
			t.Fatalf("cycle %d: %d nodes after the crash, want >= %d before + %d the child reported committed",
				cycle, after, before, last)
		}
		total += last
		if last > 0 {
			reportedCycles++
		}
	}
	t.Logf("%d crash cycles, %d with commits reported, %d sightings reported committed", cycles, reportedCycles, total)
}

// checkCrashFile opens the file after a crash as the crawler would, checks
// its integrity and returns its node count.
func checkCrashFile(t *testing.T, path string, cycle int) int64 {
	t.Helper()
	d, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("cycle %d: reopen after crash: %v", cycle, err)
	}
	defer d.Close()
	var ok string
	if err := d.SQL().QueryRow("PRAGMA integrity_check").Scan(&ok); err != nil || ok != "ok" {
		t.Fatalf("cycle %d: integrity_check = %q, %v", cycle, ok, err)
	}
	return count(t, d.SQL(), "SELECT count(*) FROM nodes")
}

// TestCrashChild is the child process of TestCrash: it writes a new node
// per sighting, and after each Flush prints how many it has committed,
// until it is killed.
func TestCrashChild(t *testing.T) {
	path := os.Getenv(crashChildEnv)
	if path == "" {
		t.Skip("helper process for TestCrash")
	}
	d, err := Open(path, Options{BatchSize: 64, FlushInterval: 5 * time.Millisecond})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	addr := netip.MustParseAddrPort("198.51.100.1:6881")
	for n := 0; ; {
		for range 150 {
			d.Observe(observe.Sighting{Node: krpc.NodeInfo{ID: krpc.RandomID(), Addr: addr}, Time: time.Now(),
				Source: observe.SourceReported})
			n++
		}
		if err := d.Flush(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Printf("committed %d\n", n)
	}
}
