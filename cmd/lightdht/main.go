package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

// programVersion is the version "lightdht version" prints and crawl runs
// record.
const programVersion = "0.1.0-dev"

// Exit codes.
const (
	exitOK          = 0
	exitRuntime     = 1   // the operation failed
	exitUsage       = 2   // bad flags, arguments or environment variables
	exitInterrupted = 130 // a crawl stopped by SIGINT or SIGTERM, after a clean shutdown
)

// usageError is an error in the command line: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// interrupted is returned by a command that stopped cleanly on a signal
// and wants exit code 130.
var errInterrupted = errors.New("interrupted")

// command is one subcommand.
type command struct {
	name    string
	args    string // positional arguments, for the usage line
	summary string
	setup   func(c *cli) func(ctx context.Context, args []string) error
}

var commands []command

func init() {
	commands = []command{
		{"node", "", "run a DHT node until interrupted, recording every node it sees", nodeCmd},
		{"crawl", "", "crawl the DHT into the database", crawlCmd},
		{"revisit", "", "visit the database's known nodes again and again, to measure their sessions", revisitCmd},
		{"ping", "ADDR", "send one ping", pingCmd},
		{"find-node", "ADDR [TARGET]", "send one find_node (TARGET: random if omitted)", findNodeCmd},
		{"get-peers", "ADDR INFOHASH", "send one get_peers", getPeersCmd},
		{"sample", "ADDR [TARGET]", "send one BEP 51 sample_infohashes", sampleCmd},
		{"lookup", "TARGET", "iterative find_node lookup of the nodes closest to TARGET", lookupCmd},
		{"peers", "INFOHASH", "iterative get_peers lookup of the peers of INFOHASH", peersCmd},
		{"announce", "INFOHASH", "announce a peer for INFOHASH (--port)", announceCmd},
		{"put", "NAME VALUE | VALUE", "set NAME to VALUE under your key (BEP 44 mutable item), or store an immutable VALUE", putCmd},
		{"get", "NAME | TARGET", "read NAME (yours, or --pubkey HEX's), or the immutable item TARGET", getCmd},
		{"delete", "NAME", "replace NAME with an empty value (BEP 44 has no delete; items expire)", deleteCmd},
		{"keygen", "FILE", "write a new ed25519 key for mutable items", keygenCmd},
		{"testnet", "", "run a local test network of DHT nodes on loopback", testnetCmd},
		{"stats", "", "summarise a database", statsCmd},
		{"report", "", "write an HTML report of plots and tables from a database (--out)", reportCmd},
		{"enrich", "", "record each IP's country and network from .mmdb databases (--geoip, --asn)", enrichCmd},
		{"export", "", "write a database's tables, or one crawl's, to Parquet or CSV files (--out DIR)", exportCmd},
		{"shell", "", "interactive prompt over a running node", shellCmd},
		{"version", "", "print the version", versionCmd},
		{"config", "[COMMAND]", "print the effective settings of COMMAND and where each came from", nil},
		{"help", "[COMMAND]", "list the commands, or describe one", nil},
	}
}

// cli is the state shared by a subcommand run: its streams, flag set,
// common flags and logger.
type cli struct {
	name   string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	fs     *flag.FlagSet

	logLevel   string
	logJSON    bool
	json       bool
	configPath string
	// sources says where each flag set got its value: "flag", "env
	// LIGHTDHT_X" or "FILE:LINE"; absent means the default.
	sources map[string]string
	log     zerolog.Logger
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run runs the command line args and returns the exit code. Every error
// is printed as one line on stderr.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		printCommands(stderr)
		return exitUsage
	}
	name := args[0]
	switch name {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 && name == "help" {
			return run([]string{args[1], "-h"}, stdin, stdout, stderr)
		}
		printCommands(stdout)
		return exitOK
	case "-version", "--version":
		name = "version"
	case "config":
		return configCmd(args[1:], stdin, stdout, stderr)
	}
	cmd := findCommand(name)
	if cmd == nil {
		fmt.Fprintf(stderr, "lightdht: unknown command %q (see lightdht help)\n", name)
		return exitUsage
	}
	c, do := newCLI(cmd, stdin, stdout, stderr)

	pos, err := c.parse(args[1:])
	if errors.Is(err, flag.ErrHelp) {
		c.usage(cmd, stdout)
		return exitOK
	}
	if err == nil {
		err = c.setupLog()
	}
	if err == nil {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		// After the first signal, the default action is back: a second
		// Ctrl-C ends the program at once.
		go func() { <-ctx.Done(); stop() }()
		err = do(ctx, pos)
		stop()
	}
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errInterrupted):
		return exitInterrupted
	}
	msg := strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "lightdht %s: %s (see lightdht %s -h)\n", name, msg, name)
		return exitUsage
	}
	fmt.Fprintf(stderr, "lightdht %s: %s\n", name, msg)
	return exitRuntime
}

// findCommand returns the command called name, or nil.
func findCommand(name string) *command {
	for i := range commands {
		if commands[i].name == name && commands[i].setup != nil {
			return &commands[i]
		}
	}
	return nil
}

// newCLI returns the state of a run of cmd, its flags defined (the
// common ones and the command's), and the command's body.
func newCLI(cmd *command, stdin io.Reader, stdout, stderr io.Writer) (*cli, func(context.Context, []string) error) {
	c := &cli{name: cmd.name, stdin: stdin, stdout: stdout, stderr: stderr,
		fs: flag.NewFlagSet("lightdht "+cmd.name, flag.ContinueOnError)}
	c.fs.SetOutput(io.Discard)
	c.fs.StringVar(&c.logLevel, "log-level", "warn", "log level: trace, debug, info, warn, error, disabled")
	c.fs.BoolVar(&c.logJSON, "log-json", false, "log JSON lines instead of human-readable lines")
	c.fs.StringVar(&c.configPath, "config", "", "TOML `file` of settings: flag names as keys, at the top level or in a [COMMAND] table")
	return c, cmd.setup(c)
}

// parse reads the command line, whose flags may come before, between or
// after the positional arguments, then gives the flags it did not set
// the values of the LIGHTDHT_* environment variables, then those of the
// --config file, in that order of precedence. It returns the positional
// arguments.
func (c *cli) parse(args []string) ([]string, error) {
	var pos []string
	for {
		if err := c.fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usagef("%v", err)
		}
		args = c.fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	c.sources = map[string]string{}
	c.fs.Visit(func(f *flag.Flag) { c.sources[f.Name] = "flag" })
	return pos, c.applyConfig()
}

// isSet reports whether the flag name was given on the command line, in
// the environment or in the config file.
func (c *cli) isSet(name string) bool {
	set := false
	c.fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}

func (c *cli) usage(cmd *command, w io.Writer) {
	fmt.Fprintf(w, "usage: lightdht %s", cmd.name)
	if cmd.args != "" {
		fmt.Fprintf(w, " %s", cmd.args)
	}
	fmt.Fprintf(w, " [flags]\n\n%s.\n\nflags (each also read from LIGHTDHT_<NAME>, e.g. --log-level from LIGHTDHT_LOG_LEVEL, and from\nthe --config file's key <name>; a flag wins over the environment, which wins over the file):\n", cmd.summary)
	c.fs.SetOutput(w)
	c.fs.PrintDefaults()
	c.fs.SetOutput(io.Discard)
}

func printCommands(w io.Writer) {
	fmt.Fprintln(w, "lightdht: a BitTorrent mainline DHT node, crawler and toolkit.")
	fmt.Fprintln(w, "\nusage: lightdht COMMAND [ARGS] [flags]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for _, c := range commands {
		names = append(names, c.name)
	}
	sort.Strings(names)
	for _, n := range names {
		for _, c := range commands {
			if c.name == n {
				fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
			}
		}
	}
	fmt.Fprintln(w, "\nRun 'lightdht COMMAND -h' for the flags of a command.")
}

// setupLog builds the logger from --log-level and --log-json.
func (c *cli) setupLog() error {
	lvl, err := zerolog.ParseLevel(strings.ToLower(c.logLevel))
	if err != nil || c.logLevel == "" {
		return usagef("bad --log-level %q: want trace, debug, info, warn, error or disabled", c.logLevel)
	}
	zerolog.TimeFieldFormat = time.RFC3339Nano
	var w io.Writer = c.stderr
	if !c.logJSON {
		w = zerolog.ConsoleWriter{Out: c.stderr, TimeFormat: "15:04:05.000", NoColor: !isTerminal(c.stderr)}
	}
	c.log = zerolog.New(w).Level(lvl).With().Timestamp().Logger()
	return nil
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// optInt is an integer flag that may be left unset. Its help shows no
// "(default …)", so that the usage text can say what unset means.
type optInt struct {
	v   int64
	set bool
}

func (o *optInt) String() string {
	if o == nil || !o.set {
		return ""
	}
	return strconv.FormatInt(o.v, 10)
}

// Get makes optInt a flag.Getter, so that a config file must give it an
// integer.
func (o *optInt) Get() any { return o.v }

func (o *optInt) Set(s string) error {
	v, err := strconv.ParseInt(s, 0, 64)
	if err != nil {
		return errors.New("parse error") // as the flag package's own integers say
	}
	o.v, o.set = v, true
	return nil
}

// optIntFlag adds an optInt flag. A word in backquotes in usage names the
// value in the help, as for the flag package's own flags.
func (c *cli) optIntFlag(name, usage string) *optInt {
	o := &optInt{}
	c.fs.Var(o, name, usage)
	return o
}

// addJSON adds --json.
func (c *cli) addJSON() {
	c.fs.BoolVar(&c.json, "json", false, "print the result as JSON")
}

// output prints v as one line of JSON with --json, or calls plain.
func (c *cli) output(v any, plain func(w io.Writer)) error {
	if c.json {
		return json.NewEncoder(c.stdout).Encode(v)
	}
	plain(c.stdout)
	return nil
}

// nargs checks the number of positional arguments.
func nargs(args []string, lo, hi int, what string) error {
	if len(args) < lo || len(args) > hi {
		return usagef("want %s, got %d argument(s)", what, len(args))
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func versionCmd(c *cli) func(context.Context, []string) error {
	return func(_ context.Context, args []string) error {
		if err := nargs(args, 0, 0, "no arguments"); err != nil {
			return err
		}
		goVersion := "unknown"
		if bi, ok := debug.ReadBuildInfo(); ok {
			goVersion = bi.GoVersion
		}
		fmt.Fprintf(c.stdout, "lightdht %s (%s)\n", programVersion, goVersion)
		return nil
	}
}
