package cmdtest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// HangGuard bounds every wait on a subprocess.
const HangGuard = 3 * time.Minute

// Build builds the lightdht command in folder pkg into the file out,
// with -race when the calling test binary runs with it.
func Build(pkg, out string) error {
	args := []string{"build", "-o", out}
	if raceEnabled {
		args = append(args, "-race")
	}
	b, err := exec.Command("go", append(args, pkg)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

// CleanEnv returns the environment without LIGHTDHT_* variables, so that
// the machine's settings do not reach the command, plus extra.
func CleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LIGHTDHT_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// needsBootstrap lists the commands that contact --bootstrap.
var needsBootstrap = map[string]bool{"node": true, "crawl": true, "lookup": true, "peers": true,
	"announce": true, "shell": true, "put": true, "get": true, "delete": true}

// CheckLoopback returns an error unless every address the command line
// args (run with the extra environment env) would contact is on
// loopback: the commands that join the DHT need an explicit loopback
// --bootstrap (or LIGHTDHT_BOOTSTRAP), or they would fall back on the
// public routers.
func CheckLoopback(env, args []string) error {
	if len(args) == 0 || !needsBootstrap[args[0]] || slices.Contains(args, "-h") {
		return nil
	}
	var val string
	found := false
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "LIGHTDHT_BOOTSTRAP="); ok {
			val, found = v, true
		}
	}
	for i, a := range args {
		name, v, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if strings.HasPrefix(a, "-") && name == "bootstrap" {
			if !hasVal && i+1 < len(args) {
				v = args[i+1]
			}
			val, found = v, true
		}
	}
	if !found {
		return fmt.Errorf("refusing to run %v without an explicit loopback --bootstrap", args)
	}
	for _, s := range strings.Split(val, ",") {
		if _, _, err := net.SplitHostPort(s); err != nil {
			continue // malformed: the command rejects it before sending anything
		}
		ap, err := netip.ParseAddrPort(s)
		if err != nil || !ap.Addr().IsLoopback() {
			return fmt.Errorf("refusing to run %v: bootstrap %q is not a loopback address", args, s)
		}
	}
	return nil
}

// Crash returns what on stderr shows that the command crashed or raced
// (a panic, a goroutine dump, a race report), or "" if nothing does.
func Crash(stderr string) string {
	for _, bad := range []string{"panic", "goroutine ", "DATA RACE"} {
		if strings.Contains(stderr, bad) {
			return bad
		}
	}
	return ""
}

// Testnet is the --json output of lightdht testnet.
type Testnet struct {
	Bootstrap string `json:"bootstrap"`
	Nodes     []struct {
		ID   string `json:"id"`
		Addr string `json:"addr"`
	} `json:"nodes"`
	Metrics string `json:"metrics"` // with --metrics
}

// StartTestnet runs bin testnet with n nodes from the loopback IP first,
// on ports the kernel picks, with the extra arguments, and returns its
// output once the network is ready, and a function that stops it and
// waits for it. It is stopped when the test ends, if not before, and
// fails the test if it then lingers, exits with an error or crashed.
func StartTestnet(t testing.TB, bin string, n int, first string, extra ...string) (Testnet, func()) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"testnet", "--nodes", strconv.Itoa(n), "--ips", first, "--base-port", "0", "--json"}, extra...)...)
	cmd.Env = CleanEnv()
	var se LockedBuffer
	cmd.Stderr = &se
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1)
	exited := make(chan struct{})
	go func() {
		br := bufio.NewReader(stdout)
		line, _ := br.ReadString('\n')
		lines <- line
		io.Copy(io.Discard, br) // keep the pipe drained
		cmd.Wait()
		close(exited)
	}()
	stop := sync.OnceFunc(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(HangGuard):
			cmd.Process.Kill()
			<-exited
			t.Errorf("testnet still running %v after SIGINT: killed", HangGuard)
		}
		if code := cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("testnet exit code %d; stderr:\n%s", code, se.String())
		}
		if bad := Crash(se.String()); bad != "" {
			t.Errorf("testnet: %q on stderr:\n%s", bad, se.String())
		}
	})
	t.Cleanup(stop)
	select {
	case line := <-lines:
		var out Testnet
		if err := json.Unmarshal([]byte(line), &out); err != nil || len(out.Nodes) == 0 || len(out.Nodes) != n || out.Bootstrap != out.Nodes[0].Addr {
			t.Fatalf("testnet output %q (%v); stderr:\n%s", line, err, se.String())
		}
		return out, stop
	case <-time.After(HangGuard):
		t.Fatalf("testnet not ready after %v; stderr:\n%s", HangGuard, se.String())
	}
	return Testnet{}, stop
}

// LockedBuffer is a bytes.Buffer that a running command may write while
// the test reads it.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p, as bytes.Buffer.Write does.
func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns what has been written so far.
func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
