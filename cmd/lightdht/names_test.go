package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNames: put and get of a name through the binary, from separate
// processes: the key pair is created on first use (mode 0600, with a
// message saying where), an update raises seq and a third process sees
// it, another key's pubkey reads that key's value of the same name,
// delete leaves an empty value and says BEP 44 has no delete, and a name
// or value too large gets one line and creates no key.
func TestNames(t *testing.T) {
	t.Parallel()
	tn := startTestnet(t, 12, "127.41.0.1")
	dir := t.TempDir()
	keyA, keyB := filepath.Join(dir, "a", "key"), filepath.Join(dir, "b.key")
	boot := []string{"--bootstrap", tn.Bootstrap}
	run := func(args ...string) result {
		t.Helper()
		r := exe(t, nil, "", append(args, boot...)...)
		if r.code != 0 {
			t.Fatalf("lightdht %v: exit %d\nstdout: %s\nstderr: %s", args, r.code, r.stdout, r.stderr)
		}
		return r
	}

	r := run("put", "greeting", "hello there", "--key", keyA)
	if !strings.Contains(r.stderr, "created a new key pair in "+keyA) {
		t.Errorf("first put: stderr %q, want the key file named", r.stderr)
	}
	if !strings.Contains(r.stdout, `put "greeting" seq 1: stored at `) {
		t.Errorf("first put: %s", r.stdout)
	}
	if st, err := os.Stat(keyA); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v; want mode 0600", st, err)
	}
	pubA := decode[putResult](t, run("put", "greeting", "hello there", "--key", keyA, "--json").stdout)
	if pubA.Seq == nil || *pubA.Seq != 2 || pubA.Name != "greeting" || len(pubA.Pubkey) != 64 {
		t.Fatalf("second put: %+v, want seq 2", pubA)
	}
	if r := run("put", "greeting", "again", "--key", keyA); strings.Contains(r.stderr, "created") {
		t.Errorf("a put with an existing key created one: %q", r.stderr)
	}

	// Another process reads it by name with the owner's public key, and
	// the owner by name alone.
	got := decode[getResult](t, run("get", "greeting", "--pubkey", pubA.Pubkey, "--json").stdout)
	if got.Value != "again" || got.Seq == nil || *got.Seq != 3 || got.Name != "greeting" {
		t.Errorf("get by pubkey: %+v, want again at seq 3", got)
	}
	if out := run("get", "greeting", "--key", keyA).stdout; out != "seq 3\nagain\n" {
		t.Errorf("get with own key: %q", out)
	}

	// Another key, the same name: a different item.
	pubB := decode[putResult](t, run("put", "greeting", "from B", "--key", keyB, "--json").stdout)
	if pubB.Pubkey == pubA.Pubkey || *pubB.Seq != 1 {
		t.Fatalf("B's put: %+v", pubB)
	}
	if got := decode[getResult](t, run("get", "greeting", "--pubkey", pubB.Pubkey, "--json").stdout); got.Value != "from B" {
		t.Errorf("get of B's greeting: %+v", got)
	}
	if got := decode[getResult](t, run("get", "greeting", "--pubkey", pubA.Pubkey, "--json").stdout); got.Value != "again" {
		t.Errorf("A's greeting after B's put: %+v", got)
	}

	// An update seen by a third process.
	run("put", "greeting", "updated", "--key", keyA)
	if got := decode[getResult](t, run("get", "greeting", "--pubkey", pubA.Pubkey, "--json").stdout); got.Value != "updated" || *got.Seq != 4 {
		t.Errorf("get after the update: %+v, want updated at seq 4", got)
	}

	del := run("delete", "greeting", "--key", keyA).stdout
	for _, want := range []string{"BEP 44 has no delete", `"greeting" now holds an empty value (seq 5`, "2 hours after its last put", "unless someone puts them again"} {
		if !strings.Contains(del, want) {
			t.Errorf("delete output lacks %q:\n%s", want, del)
		}
	}
	if got := decode[getResult](t, run("get", "greeting", "--pubkey", pubA.Pubkey, "--json").stdout); got.Value != "" || got.Raw != "0:" || *got.Seq != 5 {
		t.Errorf("get after delete: %+v, want an empty value at seq 5", got)
	}
	if out := run("get", "greeting", "--key", keyA).stdout; out != "seq 5\n(empty value: deleted)\n" {
		t.Errorf("plain get after delete: %q", out)
	}

	keyC := filepath.Join(dir, "c.key")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"put", strings.Repeat("n", 65), "v", "--key", keyC}, 2, "name of 65 bytes is over BEP 44's 64-byte limit"},
		{[]string{"put", "big", strings.Repeat("v", 997), "--key", keyC}, 2, "value of 1001 bytes bencoded is over BEP 44's 1000-byte limit"},
		{[]string{"get", strings.Repeat("n", 65), "--pubkey", pubA.Pubkey}, 2, "name of 65 bytes"},
		{[]string{"delete", strings.Repeat("n", 65), "--key", keyA}, 2, "name of 65 bytes"},
		{[]string{"get", "greeting", "--key", keyC}, 1, "no key file at " + keyC},
		{[]string{"delete", "never-put", "--key", keyA}, 1, "nothing to delete"},
		{[]string{"get", "never-put", "--pubkey", pubA.Pubkey}, 1, `get "never-put": not found`},
		{[]string{"get", "greeting", "--pubkey", "abc"}, 2, "want 64 hex digits"},
		{[]string{"put", "greeting", "v", "--salt", "s", "--key", keyC}, 2, "--salt is the NAME"},
	} {
		r := exe(t, nil, "", append(tc.args, boot...)...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.want) || strings.Count(strings.TrimSpace(r.stderr), "\n") > 0 {
			t.Errorf("lightdht %v: exit %d, stderr %q; want exit %d and one line mentioning %q", tc.args[:2], r.code, r.stderr, tc.code, tc.want)
		}
	}
	if _, err := os.Stat(keyC); err == nil {
		t.Errorf("a refused put created the key file %s", keyC)
	}
}

// TestShellNames drives names through shells over stdin: a put in one
// shell process is read in another, an update from a third shell is
// seen, a second key's value of the same name stays apart, delete
// explains itself, and bad input leaves the shell running.
func TestShellNames(t *testing.T) {
	t.Parallel()
	tn := startTestnet(t, 12, "127.42.0.1")
	dir := t.TempDir()
	keyA, keyB := filepath.Join(dir, "a.key"), filepath.Join(dir, "b.key")
	shell := func(key string, lines ...string) string {
		t.Helper()
		r := exe(t, nil, strings.Join(lines, "\n")+"\n", "shell", "--bootstrap", tn.Bootstrap, "--key", key, "--timeout", queryWait.String())
		if r.code != 0 {
			t.Fatalf("shell exit %d: %s", r.code, r.stderr)
		}
		return r.stdout
	}
	contains := func(out string, wants ...string) {
		t.Helper()
		for _, w := range wants {
			if !strings.Contains(out, w) {
				t.Errorf("shell output lacks %q:\n%s", w, out)
			}
		}
	}

	out := shell(keyA,
		`put motd "hello world"`,
		`get motd`,
		`put `+strings.Repeat("n", 65)+` v`,
		`put big `+strings.Repeat("v", 1000),
		`put motd "unterminated`,
		`get motd --pubkey nothex`,
		`delete`,
		`put motd "hello again"`,
		`stats`)
	contains(out, "created a new key pair in "+keyA, `put "motd" seq 1: stored at `, "seq 1\nhello world\n",
		"error: name of 65 bytes is over BEP 44's 64-byte limit",
		"error: value of 1005 bytes bencoded is over BEP 44's 1000-byte limit",
		"error: unterminated \" quote", `error: bad --pubkey "nothex"`, "error: usage: delete NAME",
		`put "motd" seq 2: stored at `, "memory in use", "MiB]> ")
	pubA := pubkeyOf(t, out)

	// A second process, with its own key, reads A's name and writes its own.
	out = shell(keyB, "get motd "+pubA, `put motd "B's motd"`, "get motd")
	contains(out, "seq 2\nhello again\n", "created a new key pair in "+keyB, "seq 1\nB's motd\n")
	pubB := pubkeyOf(t, out)

	// A third updates A's name; a fourth sees it, and B's is unchanged.
	shell(keyA, `put motd "third version"`)
	out = shell(keyB, "get motd --pubkey "+pubA, "get motd "+pubB)
	contains(out, "seq 3\nthird version\n", "seq 1\nB's motd\n")

	out = shell(keyA, "delete motd", "get motd", "delete nothing-here")
	contains(out, "BEP 44 has no delete", "(seq 4,", "2 hours after its last put", "seq 4\n(empty value: deleted)\n",
		"error: delete \"nothing-here\": no item of that name")
}

// pubkeyOf finds the public key in a "created a new key pair" message.
func pubkeyOf(t *testing.T, out string) string {
	t.Helper()
	_, after, ok := strings.Cut(out, "read them with --pubkey ")
	if !ok || len(after) < 64 {
		t.Fatalf("no public key in:\n%s", out)
	}
	return after[:64]
}

// TestShellHelp: help lists every command of the shell, each one runs
// (a usage error rather than "unknown command"), and the shell keeps
// going after each error.
func TestShellHelp(t *testing.T) {
	t.Parallel()
	tn := startTestnet(t, 4, "127.43.0.1")
	var in []string
	for _, c := range shellCommands {
		if c.run != nil && c.name != "help" && c.name != "stats" {
			in = append(in, c.name+" a b c d e")
		}
	}
	in = append(in, "help")
	r := exe(t, nil, strings.Join(in, "\n")+"\n", "shell", "--bootstrap", tn.Bootstrap, "--key", filepath.Join(t.TempDir(), "k"), "--timeout", queryWait.String())
	if r.code != 0 {
		t.Fatalf("shell exit %d: %s", r.code, r.stderr)
	}
	if strings.Contains(r.stdout, "unknown command") {
		t.Errorf("a command in the table is unknown to the shell:\n%s", r.stdout)
	}
	if n := strings.Count(r.stdout, "error: usage: "); n != len(in)-1 {
		t.Errorf("%d usage errors for %d commands with too many arguments:\n%s", n, len(in)-1, r.stdout)
	}
	_, help, _ := strings.Cut(r.stdout, "commands (")
	for _, c := range shellCommands {
		if !strings.Contains(help, "  "+strings.TrimSpace(c.name+" "+c.args)+" ") {
			t.Errorf("help lacks %s %s:\n%s", c.name, c.args, help)
		}
	}
}
