package pgtest

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestOrphanHelper is run by TestKilledBinaryStopsServer in a child
// process: it starts the server, prints its URL and folder, and kills
// itself, so that Main never stops the server.
func TestOrphanHelper(t *testing.T) {
	if os.Getenv("LIGHTDHT_PGTEST_ORPHAN") != "1" {
		t.Skip("run by TestKilledBinaryStopsServer")
	}
	url := Database(t)
	mu.Lock()
	dir := srv.dir
	mu.Unlock()
	os.Stdout.WriteString("orphan " + url + " " + dir + "\n")
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}

// TestKilledBinaryStopsServer: a test binary killed while its server
// runs leaves neither the server nor its folder behind: the watchdog
// stops the server and removes the folder.
func TestKilledBinaryStopsServer(t *testing.T) {
	if _, err := findBin(); err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("pgtest: %v; apt-get install postgresql", err)
		}
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestOrphanHelper$", "-test.v")
	cmd.Env = append(os.Environ(), "LIGHTDHT_PGTEST_ORPHAN=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var url, dir string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 3 && f[0] == "orphan" {
			url, dir = f[1], f[2]
		}
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v; want killed", err)
	}
	if url == "" {
		t.Fatal("the child printed no server")
	}
	// The server ran: the watchdog has something to stop. The wait below
	// only guards against a hang; the watchdog polls once a second.
	for deadline := time.Now().Add(2 * time.Minute); ; {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		conn, err := pgx.Connect(ctx, url)
		cancel()
		_, statErr := os.Stat(dir)
		if err != nil && os.IsNotExist(statErr) {
			break
		}
		if err == nil {
			conn.Close(context.Background())
		}
		if time.Now().After(deadline) {
			t.Fatalf("two minutes after the binary was killed: connect %v, folder %v", err, statErr)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
