package main

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/lightdht/lightdht"
	"github.com/lightdht/lightdht/krpc"
)

func testSnapshot() lightdht.Snapshot {
	return lightdht.Snapshot{
		ID:            krpc.ID{1, 2, 3, 19: 4},
		ExternalAddr4: netip.MustParseAddr("203.0.113.9"),
		Nodes: []krpc.NodeInfo{
			{ID: krpc.ID{5}, Addr: netip.MustParseAddrPort("127.0.0.7:6881")},
			{ID: krpc.ID{6}, Addr: netip.MustParseAddrPort("127.0.0.8:6882")},
		},
		Nodes6: []krpc.NodeInfo{{ID: krpc.ID{7}, Addr: netip.MustParseAddrPort("[::1]:6883")}},
	}
}

// TestStateRoundTrip: what writeState saves readState returns, and the
// atomic write leaves no temporary file behind.
func TestStateRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "node.state")
	want := testSnapshot()
	for range 2 { // the second write replaces the first
		if err := writeState(path, want, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	got, err := readState(path)
	if err != nil || got == nil || !reflect.DeepEqual(*got, want) {
		t.Fatalf("readState = %+v, %v; want %+v", got, err, want)
	}
	if es, _ := os.ReadDir(dir); len(es) != 1 {
		t.Errorf("directory holds %d files after two saves, want 1", len(es))
	}
	if got, err := readState(filepath.Join(dir, "missing")); got != nil || err != nil {
		t.Errorf("missing file: %+v, %v; want a fresh start", got, err)
	}
}

// TestStateDamagedOrForeign: a truncated, garbage or damaged file is set
// aside with a warning and the node starts afresh; a file of another
// version or program is a clear error and stays as it is.
func TestStateDamagedOrForeign(t *testing.T) {
	good := filepath.Join(t.TempDir(), "good")
	if err := writeState(good, testSnapshot(), time.Now()); err != nil {
		t.Fatal(err)
	}
	whole, _ := os.ReadFile(good)
	for _, tc := range []struct {
		name    string
		content []byte
		foreign bool
	}{
		{"truncated", whole[:len(whole)/2], false},
		{"empty", nil, false},
		{"garbage", []byte("\x00\xff\x13garbage\x7f"), false},
		{"bad id", bytes.Replace(whole, []byte(`"id": "0102`), []byte(`"id": "zz02`), 1), false},
		{"bad node address", bytes.Replace(whole, []byte("127.0.0.7:6881"), []byte("127.0.0.7"), 1), false},
		{"foreign version", bytes.Replace(whole, []byte(`"version": 1`), []byte(`"version": 2`), 1), true},
		{"another program's JSON", []byte(`{"hello": "world"}`), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "node.state")
			if err := os.WriteFile(path, tc.content, 0o600); err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			c := &cli{log: zerolog.New(&logs)}
			snap, err := c.loadState(path)
			if tc.foreign {
				if !errors.Is(err, errForeignState) || snap != nil {
					t.Fatalf("loadState = %+v, %v; want an error wrapping errForeignState", snap, err)
				}
				if b, _ := os.ReadFile(path); !bytes.Equal(b, tc.content) {
					t.Error("the foreign file was changed")
				}
				return
			}
			if err != nil || snap != nil {
				t.Fatalf("loadState = %+v, %v; want a fresh start", snap, err)
			}
			if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the damaged file is still at %s", path)
			}
			moved, _ := filepath.Glob(path + ".damaged-*")
			if len(moved) != 1 {
				t.Fatalf("set-aside files: %v, want one", moved)
			}
			if b, _ := os.ReadFile(moved[0]); !bytes.Equal(b, tc.content) {
				t.Error("the set-aside file differs from the damaged one")
			}
			if !strings.Contains(logs.String(), "state file set aside") {
				t.Errorf("no warning logged: %q", logs.String())
			}
		})
	}
}

// TestNodeState: lightdht node --state saves its ID on stop and takes it
// again at the next start; a foreign state file stops it with a clear
// error, a damaged one is set aside with a warning.
func TestNodeState(t *testing.T) {
	t.Parallel()
	tn := startTestnet(t, 6, "127.29.0.1")
	dir := t.TempDir()
	state := filepath.Join(dir, "node.state")
	// run starts a node, waits until it has joined, stops it with SIGINT
	// and returns its ID and stderr.
	run := func(extra ...string) (string, string) {
		t.Helper()
		args := append([]string{"node", "--listen", "127.29.1.1:0", "--bootstrap", tn.Bootstrap, "--db", filepath.Join(dir, "node.db"), "--json", "--state", state}, extra...)
		began := time.Now()
		node := startProc(t, args...)
		started := decode[map[string]string](t, node.first)
		// Wait (with a hang guard) for a periodic save of this run that
		// lists nodes.
		hung := time.Now().Add(hangGuard)
		for {
			fi, err := os.Stat(state)
			if snap, rerr := readState(state); err == nil && fi.ModTime().After(began) && rerr == nil && snap != nil &&
				snap.ID.String() == started["id"] && len(snap.Nodes) > 0 {
				break
			}
			if time.Now().After(hung) {
				t.Fatalf("after %v no state file with nodes; stderr:\n%s", hangGuard, node.stderr.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
		_, stderr := node.stop()
		return started["id"], stderr
	}
	first, _ := run("--state-every", "200ms")
	second, _ := run("--state-every", "200ms")
	if first != second {
		t.Errorf("second run took ID %s, the first saved %s", second, first)
	}

	if err := os.WriteFile(state, []byte("\x00garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	third, stderr := run("--state-every", "200ms")
	if third == first || !strings.Contains(stderr, "state file set aside") {
		t.Errorf("after a damaged state file: ID %s (first %s), stderr:\n%s", third, first, stderr)
	}

	if err := os.WriteFile(state, []byte(`{"format":"lightdht-state","version":99}`), 0o600); err != nil {
		t.Fatal(err)
	}
	r := exe(t, nil, "", "node", "--listen", "127.29.1.1:0", "--bootstrap", tn.Bootstrap, "--db", filepath.Join(dir, "node.db"), "--state", state)
	if r.code != 1 || !strings.Contains(r.stderr, "version 99, this lightdht reads version 1") {
		t.Errorf("foreign state file: exit %d, stderr:\n%s", r.code, r.stderr)
	}
}
