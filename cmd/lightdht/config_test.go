package main

import (
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// parseFor parses args as command name does, in process.
func parseFor(t *testing.T, name string, args []string) (*cli, []string, error) {
	t.Helper()
	cmd := findCommand(name)
	if cmd == nil {
		t.Fatalf("no command %q", name)
	}
	c, _ := newCLI(cmd, nil, io.Discard, io.Discard)
	pos, err := c.parse(args)
	return c, pos, err
}

// writeConfig writes a config file into a temporary directory.
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "lightdht.toml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestConfigPrecedence: a flag wins over the environment, which wins over
// the config file (its [COMMAND] table over its top level), which wins
// over the default; each value's source is recorded.
func TestConfigPrecedence(t *testing.T) {
	const file = `# settings
timeout = "5s"
json = true
bootstrap = ["127.0.0.1:1", "127.0.0.2:2"]

[crawl]
rate = 3.5
idle = "1m"

[lookup]
timeout = "9s"
`
	path := writeConfig(t, file)
	cases := []struct {
		name string
		cmd  string
		env  []string
		args []string
		flag string
		want string
		src  string
	}{
		{"default", "ping", nil, nil, "timeout", "2s", "default"},
		{"file", "ping", nil, []string{"--config", path}, "timeout", "5s", path + ":2"},
		{"file bool", "ping", nil, []string{"--config", path}, "json", "true", path + ":3"},
		{"file array joined", "lookup", nil, []string{"--config", path}, "bootstrap", "127.0.0.1:1,127.0.0.2:2", path + ":4"},
		{"file section over top level", "lookup", nil, []string{"--config", path}, "timeout", "9s", path + ":11"},
		{"file section of the command", "crawl", nil, []string{"--config", path}, "rate", "3.5", path + ":7"},
		{"another command's section ignored", "ping", []string{"LIGHTDHT_CONFIG=" + path}, nil, "timeout", "5s", path + ":2"},
		{"config from env", "ping", []string{"LIGHTDHT_CONFIG=" + path}, nil, "config", path, "env LIGHTDHT_CONFIG"},
		{"env over file", "ping", []string{"LIGHTDHT_TIMEOUT=7s"}, []string{"--config", path}, "timeout", "7s", "env LIGHTDHT_TIMEOUT"},
		{"env over file section", "crawl", []string{"LIGHTDHT_RATE=2"}, []string{"--config", path}, "rate", "2", "env LIGHTDHT_RATE"},
		{"env over default", "ping", []string{"LIGHTDHT_TIMEOUT=7s"}, nil, "timeout", "7s", "env LIGHTDHT_TIMEOUT"},
		{"flag over env and file", "ping", []string{"LIGHTDHT_TIMEOUT=7s"}, []string{"--config", path, "--timeout", "8s"}, "timeout", "8s", "flag"},
		{"flag after a positional", "ping", []string{"LIGHTDHT_JSON=false"}, []string{"127.0.0.1:9", "--json=true", "--config", path}, "json", "true", "flag"},
		{"flag false over file true", "ping", nil, []string{"--config", path, "--json=false"}, "json", "false", "flag"},
		{"file without the key", "stats", nil, []string{"--config", path}, "db", "lightdht.db", "default"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("LIGHTDHT_CONFIG", "")
			os.Unsetenv("LIGHTDHT_CONFIG")
			for _, kv := range tc.env {
				k, v, _ := strings.Cut(kv, "=")
				t.Setenv(k, v)
			}
			c, _, err := parseFor(t, tc.cmd, tc.args)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if got := c.fs.Lookup(tc.flag).Value.String(); got != tc.want {
				t.Errorf("--%s = %q, want %q", tc.flag, got, tc.want)
			}
			if got := c.source(tc.flag); got != tc.src {
				t.Errorf("--%s from %q, want %q", tc.flag, got, tc.src)
			}
		})
	}
}

// TestConfigBadFile: each fault of a config file is one line that names
// the file and the line, and a usage error.
func TestConfigBadFile(t *testing.T) {
	cases := []struct {
		name string
		cmd  string
		text string
		line int
		want string
	}{
		{"syntax error", "ping", "timeout = \"5s\"\njson = \n", 2, "toml:"},
		{"unterminated string", "ping", "\n\nlisten = \"127.0.0.1:0\n", 3, "toml:"},
		{"unknown key", "ping", "timeout = \"5s\"\n\nbootstrp = \"127.0.0.1:1\"\n", 3, `unknown key "bootstrp"`},
		{"unknown key in a section", "ping", "[crawl]\nrate = 1\nfrob = true\n", 3, `unknown key "crawl.frob": lightdht crawl has no flag --frob`},
		{"unknown section", "ping", "json = true\n[frobnicate]\nx = 1\n", 2, "unknown table [frobnicate]"},
		{"dotted key of an unknown section", "ping", "\nnope.x = 1\n", 2, "unknown table [nope]"},
		{"bool given a string", "ping", "json = \"yes\"\n", 1, "json: want true or false, got a string"},
		{"duration given an integer", "ping", "timeout = 5\n", 1, `timeout: want a duration string such as "30s", got an integer`},
		{"bad duration", "ping", "\ntimeout = \"soon\"\n", 2, `timeout = "soon": parse error`},
		{"integer given a string", "crawl", "[crawl]\npeers-limit = \"ten\"\n", 2, "crawl.peers-limit: want an integer, got a string"},
		{"string given an integer", "ping", "# a\n# b\nzone = 8\n", 3, "zone: want a string, got an integer"},
		{"another command's key, wrong type", "ping", "rate = \"fast\"\n", 1, "rate: want a number, got a string"},
		{"array of non-strings", "lookup", "bootstrap = [1, 2]\n", 1, "bootstrap: want an array of strings"},
		{"optional integer given a string", "announce", "[announce]\n\nport = \"http\"\n", 3, "announce.port: want an integer, got a string"},
		{"config in a config file", "ping", "config = \"other.toml\"\n", 1, `"config" cannot be set in a config file`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.text)
			_, _, err := parseFor(t, tc.cmd, []string{"--config", path})
			var ue *usageError
			if !errors.As(err, &ue) {
				t.Fatalf("parse: %v, want a usage error", err)
			}
			msg := oneLine(err)
			if msg != err.Error() {
				t.Errorf("error of more than one line: %q", err.Error())
			}
			if wantPos := path + ":" + strconv.Itoa(tc.line) + ": "; !strings.HasPrefix(msg, wantPos) || !strings.Contains(msg, tc.want) {
				t.Errorf("error %q, want it to start with %q and mention %q", msg, wantPos, tc.want)
			}
		})
	}
	if _, _, err := parseFor(t, "ping", []string{"--config", filepath.Join(t.TempDir(), "missing.toml")}); err == nil || !strings.Contains(err.Error(), "missing.toml") {
		t.Errorf("missing file: %v", err)
	}
}

// TestConfigEveryFlag: every flag of every command can be set from a
// config file, to the value it prints as its default: the mechanism
// covers flags added later with no code of their own.
func TestConfigEveryFlag(t *testing.T) {
	total := 0
	for name, fs := range commandFlagSets() {
		var b strings.Builder
		b.WriteString("[" + name + "]\n")
		c, _ := newCLI(findCommand(name), nil, io.Discard, io.Discard)
		c.sources = map[string]string{}
		c.printSettings(&b)
		path := writeConfig(t, strings.ReplaceAll(b.String(), "# default", ""))
		got, _, err := parseFor(t, name, []string{"--config", path})
		if err != nil {
			t.Errorf("%s: its own printed settings as a config file: %v\n%s", name, err, b.String())
			continue
		}
		n := 0
		fs.VisitAll(func(f *flag.Flag) {
			if f.Name == "config" || strings.Contains(b.String(), "# "+f.Name+" is unset") {
				return
			}
			n++
			if src := got.source(f.Name); !strings.HasPrefix(src, path+":") {
				t.Errorf("%s --%s from %q, want the file", name, f.Name, src)
			}
		})
		total += n
	}
	if total < 50 {
		t.Errorf("only %d flags set from files in all", total)
	}
}

// TestConfigCommand runs "lightdht config" and a command with a bad file
// through the binary.
func TestConfigCommand(t *testing.T) {
	t.Parallel()
	path := writeConfig(t, "timeout = \"5s\"\n[crawl]\nrate = 2\n")
	out := ok(t, []string{"LIGHTDHT_JSON=true"}, "config", "ping", "--config", path, "--listen", "127.0.0.1:0")
	for _, want := range []string{
		"timeout = \"5s\" # " + path + ":1\n",
		"json = true # env LIGHTDHT_JSON\n",
		"listen = \"127.0.0.1:0\" # flag\n",
		"log-level = \"warn\" # default\n",
		"# config file " + path + " (flag)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("config ping lacks %q:\n%s", want, out)
		}
	}
	all := ok(t, []string{"LIGHTDHT_CONFIG=" + path}, "config")
	if !strings.Contains(all, "[crawl]\n") || !strings.Contains(all, "rate = 2 # "+path+":3\n") || !strings.Contains(all, "[ping]\n") {
		t.Errorf("config of every command:\n%s", all)
	}
	bad := writeConfig(t, "\ntimeout = \"5s\"\ntimout = \"6s\"\n")
	for _, args := range [][]string{{"ping", "127.0.0.1:9", "--config", bad}, {"config", "ping", "--config", bad}} {
		r := exe(t, nil, "", args...)
		want := bad + `:3: unknown key "timout"`
		if r.code != 2 || !strings.Contains(r.stderr, want) || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("lightdht %v: exit %d, stderr %q; want exit 2 and one line with %q", args[:2], r.code, r.stderr, want)
		}
	}
}
