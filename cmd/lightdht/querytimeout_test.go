package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lightdht/lightdht"
)

// queryTimeoutCommands are the commands whose node runs lookups: they
// take --query-timeout.
var queryTimeoutCommands = []string{"lookup", "peers", "announce", "put", "get", "delete", "shell"}

// TestQueryTimeoutFlag: --query-timeout reaches the node of every
// iterative command and of the shell. Every query goes to a loopback
// socket that never answers, and each run is bounded by a --timeout that
// is shorter than the default per-query timeout's attempts but far longer
// than the flag's: with the flag, the queries run out of attempts ("no
// node answered", "no reply after N attempts"); with the default, the
// run's --timeout ends them first. Only the outcome is checked, never
// how long a run took.
func TestQueryTimeoutFlag(t *testing.T) {
	t.Parallel()
	silent := silentAddr(t, "127.46.0.1")
	key := filepath.Join(t.TempDir(), "key")
	ok(t, nil, "keygen", key)
	const ih = "0123456789abcdef0123456789abcdef01234567"

	// The temporary node's bootstrap is one query to silent: without the
	// flag its attempts take (DefaultRetries+1) * DefaultQueryTimeout.
	iterTimeout := ((lightdht.DefaultRetries+1)*lightdht.DefaultQueryTimeout - time.Second).String()
	for _, args := range [][]string{
		{"lookup", ih},
		{"peers", ih},
		{"announce", ih, "--port", "6881"},
		{"put", "a value"},
		{"get", ih},
		{"delete", "a name", "--key", key},
	} {
		args = append(args, "--bootstrap", silent, "--timeout", iterTimeout, "--query-timeout", "10ms")
		r := exe(t, nil, "", args...)
		if r.code != 1 || !strings.Contains(r.stderr, "bootstrap: ") || !strings.Contains(r.stderr, "no node answered") {
			t.Errorf("lightdht %v: exit %d, stderr %q; want exit 1 and the bootstrap's \"no node answered\"", args, r.code, r.stderr)
		}
	}
	// The same without the flag: the default per-query timeout outlasts
	// the run.
	r := exe(t, nil, "", "lookup", ih, "--bootstrap", silent, "--timeout", iterTimeout)
	if want := "bootstrap: timed out after " + iterTimeout; r.code != 1 || !strings.Contains(r.stderr, want) {
		t.Errorf("lookup without --query-timeout: exit %d, stderr %q; want %q", r.code, r.stderr, want)
	}

	// The shell: its node's bootstrap and ping (DefaultRetries resends)
	// and its own single queries (queryRetries resends) all wait
	// --query-timeout per attempt. --timeout bounds each command, and the
	// bootstrap, below the default's fewest attempts.
	shellTimeout := ((queryRetries+1)*lightdht.DefaultQueryTimeout - time.Second).String()
	in := "ping " + silent + "\nfind-node " + silent + "\nquit\n"
	for _, tc := range []struct {
		flags []string
		want  []string
	}{
		{[]string{"--query-timeout", "10ms"}, []string{
			"bootstrap failed: ",
			"no node answered",
			"no reply after 4 attempts", // the node's ping
			"no reply after 2 attempts", // the single find_node
		}},
		{nil, []string{
			"bootstrap failed: ",
			"context deadline exceeded (the node keeps trying)",
			"ping to " + silent + ": context deadline exceeded",
			"find_node to " + silent + ": context deadline exceeded",
		}},
	} {
		args := append([]string{"shell", "--bootstrap", silent, "--timeout", shellTimeout}, tc.flags...)
		r := exe(t, nil, in, args...)
		if r.code != 0 {
			t.Errorf("lightdht %v: exit %d, stderr %q", args, r.code, r.stderr)
		}
		for _, want := range tc.want {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("lightdht %v: output lacks %q:\n%s", args, want, r.stdout)
			}
		}
		if tc.flags == nil && strings.Contains(r.stdout, "no reply after") {
			t.Errorf("lightdht %v: a query ran out of attempts within %s:\n%s", args, shellTimeout, r.stdout)
		}
	}
}

// TestQueryTimeoutBad: --query-timeout that is not positive, above the
// maximum or not a duration, from the command line or the environment,
// is a usage error (exit 2, one line naming the flag) before anything is
// sent; the maximum itself is accepted.
func TestQueryTimeoutBad(t *testing.T) {
	t.Parallel()
	silent := silentAddr(t, "127.46.0.2")
	const ih = "0123456789abcdef0123456789abcdef01234567"
	for _, name := range queryTimeoutCommands {
		if out := ok(t, nil, name, "-h"); !strings.Contains(out, "-query-timeout duration") || !strings.Contains(out, queryTimeoutFlagUsage) {
			t.Errorf("%s -h does not describe --query-timeout:\n%s", name, out)
		}
	}
	for _, tc := range []struct {
		args []string
		env  []string
		want string
	}{
		{[]string{"lookup", ih, "--query-timeout", "0s"}, nil, "bad --query-timeout 0s: want a positive duration of at most 1m"},
		{[]string{"peers", ih, "--query-timeout", "-1s"}, nil, "bad --query-timeout -1s"},
		{[]string{"announce", ih, "--port", "1", "--query-timeout", "61s"}, nil, "bad --query-timeout 1m1s"},
		{[]string{"put", "v", "--query-timeout", "1h"}, nil, "bad --query-timeout 1h0m0s"},
		{[]string{"get", ih}, []string{"LIGHTDHT_QUERY_TIMEOUT=0"}, "bad --query-timeout 0s"},
		{[]string{"shell", "--query-timeout", "2m"}, nil, "bad --query-timeout 2m0s"},
		{[]string{"lookup", ih, "--query-timeout", "soon"}, nil, `invalid value "soon" for flag -query-timeout`},
	} {
		args := append(tc.args, "--bootstrap", silent)
		r := exe(t, tc.env, "", args...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("lightdht %v: exit %d, stderr %q; want exit 2 and one line with %q", args, r.code, r.stderr, tc.want)
		}
	}
	// 1m is allowed: the run ends on its own --timeout instead.
	r := exe(t, nil, "", "lookup", ih, "--bootstrap", silent, "--query-timeout", "1m", "--timeout", "100ms")
	if r.code != 1 || !strings.Contains(r.stderr, "timed out after 100ms") {
		t.Errorf("lookup --query-timeout 1m: exit %d, stderr %q; want exit 1, timed out", r.code, r.stderr)
	}
}
