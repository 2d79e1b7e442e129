package main

// Settings from a TOML file (--config FILE), the environment (LIGHTDHT_*)
// and the command line, over any command's flag.FlagSet: the file's keys
// are the flags' names, so a flag added to a command can be set in the
// file with no further code. Precedence: flag, then environment, then
// file, then the flag's default.
//
// Top-level keys apply to every command that has a flag of that name (a
// key that no command has is an error); a [COMMAND] table applies to that
// command only and wins over the top level.

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// configFile is a parsed --config file.
type configFile struct {
	path     string
	top      map[string]fileSetting            // top-level keys
	sections map[string]map[string]fileSetting // [COMMAND] tables
}

// fileSetting is one key of a config file.
type fileSetting struct {
	key   string
	line  int
	value any // as go-toml decodes it: string, int64, float64, bool, []any, ...
}

// configError is a fault in a config file, at a line: one line of text
// that names the file and the line.
func configError(path string, line int, format string, args ...any) error {
	if line > 0 {
		return usagef("%s:%d: %s", path, line, fmt.Sprintf(format, args...))
	}
	return usagef("%s: %s", path, fmt.Sprintf(format, args...))
}

// loadConfig reads and checks the config file at path against the flags
// of every command.
func loadConfig(path string) (*configFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, usagef("--config: %v", err)
	}
	var doc map[string]any
	if err := toml.Unmarshal(data, &doc); err != nil {
		var de *toml.DecodeError
		if errors.As(err, &de) {
			row, _ := de.Position()
			return nil, configError(path, row, "%s", de.Error())
		}
		return nil, configError(path, 0, "%v", err)
	}
	lines, err := keyLines(data)
	if err != nil {
		return nil, configError(path, 0, "%v", err)
	}
	cf := &configFile{path: path, top: map[string]fileSetting{}, sections: map[string]map[string]fileSetting{}}
	sets := commandFlagSets()
	for key, v := range doc {
		line := lines[key]
		if sub, ok := v.(map[string]any); ok {
			fs, isCmd := sets[key]
			if !isCmd {
				return nil, configError(path, line, "unknown table [%s]: tables are command names (%s)", key, strings.Join(sortedKeys(sets), ", "))
			}
			sec := map[string]fileSetting{}
			for k, sv := range sub {
				s := fileSetting{key: key + "." + k, line: lines[key+"."+k], value: sv}
				var having []*flag.FlagSet
				if fs.Lookup(k) != nil {
					having = append(having, fs)
				}
				if err := checkSetting(cf.path, s, k, having, key); err != nil {
					return nil, err
				}
				sec[k] = s
			}
			cf.sections[key] = sec
			continue
		}
		s := fileSetting{key: key, line: line, value: v}
		var having []*flag.FlagSet
		for _, name := range sortedKeys(sets) {
			if sets[name].Lookup(key) != nil {
				having = append(having, sets[name])
			}
		}
		if err := checkSetting(cf.path, s, key, having, ""); err != nil {
			return nil, err
		}
		cf.top[key] = s
	}
	return cf, nil
}

// checkSetting checks that s sets the flag name on each of the flag sets
// that have it; a key that none has is unknown.
func checkSetting(path string, s fileSetting, name string, sets []*flag.FlagSet, section string) error {
	if name == "config" {
		return configError(path, s.line, "%q cannot be set in a config file", s.key)
	}
	if len(sets) == 0 {
		if section != "" {
			return configError(path, s.line, "unknown key %q: lightdht %s has no flag --%s", s.key, section, name)
		}
		return configError(path, s.line, "unknown key %q: no command has a flag --%s", s.key, name)
	}
	for _, fs := range sets {
		if err := setFromFile(fs, name, s); err != nil {
			return configError(path, s.line, "%v", err)
		}
	}
	return nil
}

// setFromFile sets the flag name of fs to the value of s.
func setFromFile(fs *flag.FlagSet, name string, s fileSetting) error {
	str, err := flagString(fs.Lookup(name), s.value)
	if err != nil {
		return fmt.Errorf("%s: %v", s.key, err)
	}
	if err := fs.Set(name, str); err != nil {
		return fmt.Errorf("%s = %s: %v", s.key, tomlQuote(str), err)
	}
	return nil
}

// flagKind is the TOML type a flag takes.
type flagKind int

const (
	kindAny      flagKind = iota // a flag.Value of its own: any scalar, which Set parses
	kindString                   // a string, or an array of strings joined with commas
	kindBool                     // a boolean
	kindInt                      // an integer
	kindFloat                    // a number
	kindDuration                 // a string such as "30s"
)

func kindOf(f *flag.Flag) flagKind {
	if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		return kindBool
	}
	g, ok := f.Value.(flag.Getter)
	if !ok {
		return kindAny
	}
	switch g.Get().(type) {
	case string:
		return kindString
	case int, int64, uint, uint64:
		return kindInt
	case float64:
		return kindFloat
	case time.Duration:
		return kindDuration
	}
	return kindAny
}

// tomlType names the TOML type of a decoded value, for errors.
func tomlType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	}
	return "a date or time"
}

// flagString turns a decoded TOML value into the text the flag's Set
// takes, if the value has the flag's type.
func flagString(f *flag.Flag, v any) (string, error) {
	k := kindOf(f)
	wrong := func(want string) (string, error) {
		return "", fmt.Errorf("want %s, got %s", want, tomlType(v))
	}
	switch x := v.(type) {
	case string:
		if k == kindString || k == kindDuration || k == kindAny {
			return x, nil
		}
	case bool:
		if k == kindBool || k == kindAny {
			return strconv.FormatBool(x), nil
		}
	case int64:
		if k == kindInt || k == kindFloat || k == kindAny {
			return strconv.FormatInt(x, 10), nil
		}
	case float64:
		if k == kindFloat || k == kindAny {
			return strconv.FormatFloat(x, 'g', -1, 64), nil
		}
	case []any:
		if k == kindString {
			parts := make([]string, len(x))
			for i, e := range x {
				s, ok := e.(string)
				if !ok {
					return "", fmt.Errorf("want an array of strings, got %s in it", tomlType(e))
				}
				parts[i] = s
			}
			return strings.Join(parts, ","), nil
		}
	}
	switch k {
	case kindString:
		return wrong("a string")
	case kindBool:
		return wrong("true or false")
	case kindInt:
		return wrong("an integer")
	case kindFloat:
		return wrong("a number")
	case kindDuration:
		return wrong(`a duration string such as "30s"`)
	}
	return wrong("a string, number or boolean")
}

// keyLines maps each key of a TOML document ("key", or "table.key") to
// the line it is on. The document has parsed already.
func keyLines(data []byte) (map[string]int, error) {
	lines := map[string]int{}
	var p unstable.Parser
	p.Reset(data)
	var table []string
	keyOf := func(n *unstable.Node) ([]string, int) {
		var parts []string
		line := 0
		it := n.Key()
		for it.Next() {
			k := it.Node()
			parts = append(parts, string(k.Data))
			if line == 0 {
				line = p.Shape(k.Raw).Start.Line
			}
		}
		return parts, line
	}
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			parts, line := keyOf(e)
			table = parts
			lines[strings.Join(parts, ".")] = line
		case unstable.KeyValue:
			parts, line := keyOf(e)
			full := append(append([]string{}, table...), parts...)
			// Dotted keys name tables too: a.b = 1 defines the table a.
			for i := 1; i <= len(full); i++ {
				if k := strings.Join(full[:i], "."); lines[k] == 0 {
					lines[k] = line
				}
			}
		}
	}
	return lines, p.Error()
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// commandFlagSets returns the flag set of every command, by name, as its
// setup defines them: the keys a config file may use.
func commandFlagSets() map[string]*flag.FlagSet {
	sets := map[string]*flag.FlagSet{}
	for i := range commands {
		if commands[i].setup == nil {
			continue
		}
		c, _ := newCLI(&commands[i], nil, io.Discard, io.Discard)
		sets[commands[i].name] = c.fs
	}
	return sets
}

// applyConfig sets, on c's flags not given on the command line, the
// values of the file (its [COMMAND] table over its top level), then of
// the environment, and records where each came from.
func (c *cli) applyConfig() error {
	if c.sources["config"] == "" {
		if v, ok := os.LookupEnv("LIGHTDHT_CONFIG"); ok {
			c.configPath = v
			c.sources["config"] = "env LIGHTDHT_CONFIG"
		}
	}
	if c.configPath != "" {
		cf, err := loadConfig(c.configPath)
		if err != nil {
			return err
		}
		for _, layer := range []map[string]fileSetting{cf.top, cf.sections[c.name]} {
			for name, s := range layer {
				f := c.fs.Lookup(name)
				if f == nil || c.sources[name] == "flag" {
					continue
				}
				if err := setFromFile(c.fs, name, s); err != nil {
					return configError(cf.path, s.line, "%v", err)
				}
				c.sources[name] = fmt.Sprintf("%s:%d", cf.path, s.line)
			}
		}
	}
	var envErr error
	c.fs.VisitAll(func(f *flag.Flag) {
		if envErr != nil || f.Name == "config" || c.sources[f.Name] == "flag" {
			return
		}
		key := envName(f.Name)
		if v, ok := os.LookupEnv(key); ok {
			if err := c.fs.Set(f.Name, v); err != nil {
				envErr = usagef("environment variable %s=%q: %v", key, v, err)
			}
			c.sources[f.Name] = "env " + key
		}
	})
	return envErr
}

// envName is the environment variable of a flag: LIGHTDHT_ and its name
// in upper case with dashes as underscores.
func envName(flagName string) string {
	return "LIGHTDHT_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// source says where flag name's value came from.
func (c *cli) source(name string) string {
	if s := c.sources[name]; s != "" {
		return s
	}
	return "default"
}

// printSettings writes c's effective settings as TOML, each with where it
// came from, so that the output can serve as a config file.
func (c *cli) printSettings(w io.Writer) {
	c.fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "config" {
			return
		}
		v := tomlValue(f)
		if v == "" {
			// An integer flag left unset (such as announce's --port)
			// has no TOML value to show.
			fmt.Fprintf(w, "# %s is unset # %s\n", f.Name, c.source(f.Name))
			return
		}
		fmt.Fprintf(w, "%s = %s # %s\n", f.Name, v, c.source(f.Name))
	})
}

// tomlValue renders a flag's value as a TOML value of its kind.
func tomlValue(f *flag.Flag) string {
	s := f.Value.String()
	switch kindOf(f) {
	case kindBool, kindInt, kindFloat:
		return s
	case kindAny:
		if _, err := strconv.ParseInt(s, 10, 64); err == nil {
			return s
		}
	}
	return tomlQuote(s)
}

// tomlQuote writes s as a TOML basic string.
func tomlQuote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

const configUsage = `usage: lightdht config [COMMAND] [COMMAND's flags]

Print the settings COMMAND would run with, and where each comes from
(flag, env LIGHTDHT_*, FILE:LINE of --config, or default), as TOML that
can serve as a config file. Without COMMAND, every command's, as a
[COMMAND] table each.`

// configCmd runs "lightdht config [COMMAND] [flags]": the settings COMMAND
// would run with, or without COMMAND every command's, as a [COMMAND]
// table each.
func configCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintf(stderr, "lightdht config: %s (see lightdht help config)\n", oneLine(err))
		return exitUsage
	}
	var names []string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		if findCommand(args[0]) == nil {
			return fail(usagef("unknown command %q", args[0]))
		}
		names, args = []string{args[0]}, args[1:]
	} else {
		for i := 0; i < len(args); i++ {
			switch a := args[i]; {
			case a == "--config" || a == "-config":
				i++
			case strings.HasPrefix(a, "--config=") || strings.HasPrefix(a, "-config="):
			case a == "-h" || a == "--help" || a == "-help":
				fmt.Fprintln(stdout, configUsage)
				return exitOK
			default:
				return fail(usagef("flags other than --config need a COMMAND: lightdht config COMMAND [flags]"))
			}
		}
		for _, cmd := range commands {
			if cmd.setup != nil {
				names = append(names, cmd.name)
			}
		}
		sort.Strings(names)
	}
	fmt.Fprintln(stdout, "# effective settings: flag, then LIGHTDHT_* environment, then --config file, then default")
	for _, name := range names {
		c, _ := newCLI(findCommand(name), stdin, stdout, stderr)
		pos, err := c.parse(args)
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stdout, configUsage)
			return exitOK
		}
		if err == nil && len(pos) > 0 {
			err = usagef("unexpected argument %q", pos[0])
		}
		if err != nil {
			return fail(err)
		}
		if len(names) > 1 {
			fmt.Fprintf(stdout, "\n[%s]\n", name)
		}
		if c.configPath != "" {
			fmt.Fprintf(stdout, "# config file %s (%s)\n", c.configPath, c.source("config"))
		}
		c.printSettings(stdout)
	}
	return exitOK
}
