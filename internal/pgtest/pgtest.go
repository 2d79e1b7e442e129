package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// server is the one server of this test binary, started by the first
// Database call and stopped by Main. Guarded by mu.
var (
	mu      sync.Mutex
	srv     *server
	srvErr  error
	mainRan bool
	dbCount atomic.Int64
)

type server struct {
	dir  string // the temporary folder: data, log
	bin  string // the folder holding initdb, pg_ctl and postgres
	port int
	cred *syscall.Credential // nil unless running as root
	base string              // URL of the postgres database
}

// Main runs the tests of m and then stops the server, if one was
// started. A package whose tests call Database has
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
func Main(m *testing.M) { os.Exit(Run(m)) }

// Run is Main for a TestMain that has more to do: it runs the tests of
// m, stops the server if one was started, and returns the exit code.
func Run(m *testing.M) int {
	mu.Lock()
	mainRan = true
	mu.Unlock()
	code := m.Run()
	mu.Lock()
	if srv != nil {
		srv.stop()
	}
	mu.Unlock()
	return code
}

// Database creates an empty database on the test binary's server
// (starting the server on first use) and returns its URL; the database
// is dropped when t ends. Without the PostgreSQL binaries t skips, or
// fails when CI is set.
func Database(t testing.TB) string {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if !mainRan {
		t.Fatal("pgtest: the package's TestMain must call pgtest.Main(m) or pgtest.Run(m)")
	}
	if srv == nil && srvErr == nil {
		srv, srvErr = start()
	}
	if srvErr != nil {
		var missing *missingError
		if errors.As(srvErr, &missing) && os.Getenv("CI") == "" {
			t.Skipf("pgtest: %v; apt-get install postgresql", srvErr)
		}
		t.Fatalf("pgtest: %v", srvErr)
	}
	name := fmt.Sprintf("lightdht_test_%d_%d", os.Getpid(), dbCount.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := srv.exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// WITH (FORCE) ends connections a failed test left open.
		if err := srv.exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", srv.port, name)
}

// missingError says the PostgreSQL binaries are not installed.
type missingError struct{ what string }

func (e *missingError) Error() string {
	return e.what + " not found (the PostgreSQL server binaries, Debian package postgresql)"
}

// findBin returns the folder of the server binaries: the one holding
// the initdb on PATH, or the newest of Debian's /usr/lib/postgresql/N/bin.
func findBin() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		dir := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(dir, "postgres")); err == nil {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "postgres")); err == nil {
			return d, nil
		}
	}
	return "", &missingError{what: "initdb and postgres"}
}

func version(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func start() (*server, error) {
	bin, err := findBin()
	if err != nil {
		return nil, err
	}
	s := &server{bin: bin}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root, which PostgreSQL refuses, and no postgres user to run it as: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	if s.dir, err = os.MkdirTemp("", "lightdht-pgtest-"); err != nil {
		return nil, err
	}
	if s.cred != nil {
		if err := os.Chown(s.dir, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			s.remove()
			return nil, err
		}
	}
	data := filepath.Join(s.dir, "data")
	if out, err := s.run("initdb", "-D", data, "-U", "postgres", "--auth=trust",
		"--no-sync", "--encoding=UTF8", "--locale=C"); err != nil {
		s.remove()
		return nil, fmt.Errorf("initdb: %v: %s", err, out)
	}
	// The kernel picks a free port; another process may take it before
	// the server binds it, so a failed start is tried again on another.
	for attempt := 0; ; attempt++ {
		if s.port, err = freePort(); err != nil {
			s.remove()
			return nil, err
		}
		out, err := s.run("pg_ctl", "-D", data, "-l", filepath.Join(s.dir, "log"), "-w", "-t", "120",
			"-o", fmt.Sprintf("-c listen_addresses=127.0.0.1 -c port=%d -c unix_socket_directories='' "+
				"-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200", s.port),
			"start")
		if err == nil {
			break
		}
		log, _ := os.ReadFile(filepath.Join(s.dir, "log"))
		if attempt < 4 && strings.Contains(string(log), "could not bind") {
			continue
		}
		s.remove()
		return nil, fmt.Errorf("pg_ctl start: %v: %s\n%s", err, out, log)
	}
	s.base = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", s.port)
	if err := s.watch(os.Getpid()); err != nil {
		s.stop()
		return nil, fmt.Errorf("watchdog: %v", err)
	}
	return s, nil
}

// watchdog is the shell script that stops a server whose test binary
// has gone without stopping it (it panicked, timed out or was killed):
// once process $1 has ended, it shuts the postmaster of folder $2 down
// (SIGQUIT: immediate shutdown), waits for it, and removes the folder.
// After a normal stop the folder is gone already and it does nothing.
const watchdog = `while kill -0 "$1" 2>/dev/null; do sleep 1; done
pid=$(head -n 1 "$2/data/postmaster.pid" 2>/dev/null) || pid=
if [ -n "$pid" ] && kill -QUIT "$pid" 2>/dev/null; then
	while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
fi
rm -rf "$2"`

// watch starts the watchdog for process pid in a session of its own, so
// that the signal that ends the test binary's process group does not end
// it too. pg_ctl starts the server as a daemon, so the server outlives
// the test binary without it.
func (s *server) watch(pid int) error {
	cmd := exec.Command("/bin/sh", "-c", watchdog, "pgtest-watchdog", strconv.Itoa(pid), s.dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	return cmd.Process.Release()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// run runs one of the server's programs, as the postgres user when
// running as root.
func (s *server) run(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	cmd.Dir = s.dir
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	return cmd.CombinedOutput()
}

func (s *server) exec(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, s.base)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

func (s *server) stop() {
	s.run("pg_ctl", "-D", filepath.Join(s.dir, "data"), "-m", "immediate", "-w", "stop")
	s.remove()
}

func (s *server) remove() { os.RemoveAll(s.dir) }
