package main

import (
	"strings"
	"testing"
)

// TestSelftest: testnet --selftest passes on 50 nodes, and fails with one
// clear line and exit 1 when nodes are made unreachable.
func TestSelftest(t *testing.T) {
	t.Parallel()
	res := decode[selftestResult](t, ok(t, nil, "testnet", "--selftest", "--nodes", "50", "--ips", "127.45.0.1", "--base-port", "0", "--json"))
	if !res.Passed || res.Nodes != 50 || res.Lookups.OK != 50 || res.Puts.OK != 50 || res.Gets.OK != 50 {
		t.Errorf("selftest on 50 nodes: %+v", res)
	}
	if res.TableMin == 0 || res.Lookups.MedianMs <= 0 {
		t.Errorf("selftest on 50 nodes: tables and timings %+v", res)
	}

	r := exe(t, nil, "", "testnet", "--selftest", "--nodes", "20", "--ip", "127.45.1.1", "--base-port", "0", "--unreachable", "3", "--seed", "1")
	if r.code != 1 {
		t.Errorf("selftest with unreachable nodes: exit %d, want 1\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	line := strings.TrimSpace(r.stderr)
	if strings.Contains(line, "\n") || !strings.HasPrefix(line, "lightdht testnet: selftest failed: ") || !strings.Contains(line, " of 20 lookups failed") ||
		!strings.Contains(line, "3 of 20 nodes made unreachable") {
		t.Errorf("selftest with unreachable nodes: stderr %q, want one line naming the failed lookups", r.stderr)
	}
	for _, want := range []string{"selftest: 20 nodes, 3 random contacts each (seed 1)", "unreachable: 3 nodes closed after the join", "lookups (found the node looked up): "} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("selftest output lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "selftest passed") {
		t.Errorf("a failed selftest says it passed:\n%s", r.stdout)
	}
	if r := exe(t, nil, "", "testnet", "--unreachable", "2", "--ips", "127.45.2.1"); r.code != 2 || !strings.Contains(r.stderr, "need --selftest") {
		t.Errorf("--unreachable without --selftest: exit %d, %q", r.code, r.stderr)
	}
}
