// Command lightdht runs, crawls and queries the BitTorrent mainline DHT.
//
// Usage:
//
//	lightdht COMMAND [ARGS] [flags]
//
// The commands:
//
//	node       run a DHT node until interrupted, recording every node it sees (--db)
//	crawl      crawl the DHT into the database (--db), then print a summary
//	revisit    visit the database's known nodes again and again, to measure sessions
//	ping       ADDR: send one ping
//	find-node  ADDR [TARGET]: send one find_node
//	get-peers  ADDR INFOHASH: send one get_peers
//	sample     ADDR [TARGET]: send one BEP 51 sample_infohashes
//	lookup     TARGET: iterative lookup of the nodes closest to TARGET
//	peers      INFOHASH: iterative get_peers lookup
//	announce   INFOHASH --port P: announce a peer
//	put        NAME VALUE [--key FILE]: set a name (a BEP 44 mutable item, salt NAME)
//	put        VALUE [--key FILE --salt S --seq N --cas N]: store a BEP 44 item
//	get        NAME [--pubkey HEX] | TARGET | --pubkey HEX [--salt S]: fetch a BEP 44 item
//	delete     NAME [--key FILE]: replace a name with an empty value
//	keygen     FILE: write a new ed25519 key for mutable items
//	testnet    run a local test network of DHT nodes on loopback
//	stats      summarise a database (opened read-only)
//	report     write a self-contained HTML report of plots and tables (--out report.html)
//	enrich     record each IP's country and network from .mmdb files (--geoip, --asn)
//	export     write tables, or one crawl's, to Parquet or CSV files (--out DIR)
//	shell      interactive prompt over a running node
//	version    print the version
//	config     [COMMAND]: print the effective settings and where each came from
//	help       list the commands; "lightdht COMMAND -h" lists a command's flags
//
// Flags may come before, between or after the positional arguments. Every
// flag can also be set in the environment as LIGHTDHT_ and its name in
// upper case with dashes as underscores (LIGHTDHT_DB, LIGHTDHT_BOOTSTRAP,
// LIGHTDHT_LOG_LEVEL), and in a TOML file given by --config (or
// LIGHTDHT_CONFIG) with the flag's name as key: at the top level for
// every command that has the flag, or in a [COMMAND] table for one
// command, which wins over the top level. A string flag also takes an
// array of strings (bootstrap = ["127.0.0.1:6881", "127.0.0.2:6881"]);
// durations are strings ("30s"). Precedence: command line, environment,
// file, default. A key no command has, a value of the wrong type and a
// syntax error each stop the command with one line naming the file and
// the line. "lightdht config COMMAND" prints the settings COMMAND would
// run with, each commented with its source, as TOML.
//
// Names: put NAME VALUE stores VALUE as the BEP 44 mutable item with salt
// NAME under the user's key pair (--key, default lightdht/key in the
// user's configuration directory, created mode 0600 on the first put), at
// one more than the stored sequence number; get NAME reads it back, get
// NAME --pubkey HEX reads another key's; delete NAME stores an empty value
// at a higher seq, since BEP 44 has no delete (items expire 2 hours after
// the last put). A 40-hex-digit argument to get is an immutable TARGET.
//
// --bootstrap takes comma-separated host:port addresses and defaults to
// the public routers router.bittorrent.com:6881, router.utorrent.com:6881,
// dht.transmissionbt.com:6881 and dht.libtorrent.org:25401. --db defaults
// to lightdht.db in the working directory; a postgres:// URL instead
// writes into that PostgreSQL database (it must exist; the schema is
// created on first use), which several processes can write at once. The
// commands that print results
// take --json and then print one JSON document on one line.
//
// Single queries (ping, find-node, get-peers, sample) go out from a BEP 43
// read-only transport on an ephemeral socket: 127.0.0.1:0 when the
// destination is loopback, 0.0.0.0:0 otherwise (--listen overrides); each
// attempt waits --timeout (2s), and a query without a reply is resent
// once, with the same transaction ID. The iterative commands (lookup,
// peers, announce, put, get, delete) start a temporary read-only node, join
// through --bootstrap (waiting for Bootstrap to finish), run the operation
// and exit; --timeout (1 minute) bounds the whole run, and
// --query-timeout (2s, at most 1m) is the node's wait per attempt of each
// query (lightdht.Config.QueryTimeout; an unanswered query is resent 3
// times). The shell takes --query-timeout too, for its node's queries and
// its single find-node and sample queries. When every bootstrap address is loopback or private,
// those nodes drop the one-node-per-IP limit of k-buckets, since a test
// network often runs many nodes per IP.
//
// node, crawl and testnet take --metrics ADDR: an HTTP listener with
// Prometheus metrics on /metrics and net/http/pprof on /debug/pprof/ (off
// by default; any address is allowed). The command prints "metrics
// http://ADDR/metrics" on stderr; the README lists the metrics.
//
// crawl records a crawl_runs row (StartRun / EndRun) around the crawl,
// and a visit per node (--visits=false: none; --neighbours adds who
// listed whom). --every INTERVAL repeats the crawl, one run each, a crawl
// starting every INTERVAL (at once if the last one took longer), until
// interrupted or --count crawls; each prints its summary (--json: one
// line each).
//
// crawl --shared NAME with a PostgreSQL --db (postgres://…) joins the
// shared crawl NAME, or creates it with 2^--zones-bits zones (1 to 16,
// default 4 bits), and crawls its zones one at a time under a lease
// (--lease, default 1m) with the other processes started the same way,
// on this machine or others, until every zone is done (--parallel N: N
// zones at a time; --overlap: the next zone claimed while the last one's
// crawl waits out its final timeouts); it prints a line
// per zone and then the crawl's totals (package shard,
// docs/shared-crawls.md). It does not combine with --zone, --continuous,
// --every, --respond or --duration; an interrupted process leaves its
// zone to be claimed again when the lease runs out.
//
// crawl, node and enrich take --geoip FILE and --asn FILE, MaxMind-format
// .mmdb databases the user supplies (GeoLite2 Country or City and ASN, or
// DB-IP's Lite databases): each IP of the file gets its country, network
// and organisation in ip_info (crawl: after each crawl; node: when it
// stops; enrich: at once). Nothing is downloaded.
//
// export writes one file per table into --out (created if missing):
// the whole history, or with --crawl N that crawl's run, visits,
// neighbours, the nodes they name and the code tables; --tables picks
// some, --format csv writes CSV instead of Parquet. It refuses to replace
// a file unless --force, and prints each table's rows, bytes and file.
// docs/export.md describes the files.
//
// revisit reads the nodes worth revisiting from --db (open sessions, and
// sessions that timed out within --since) and visits each again and
// again, after a quarter of the time it has been up or down, within
// [--min, --max], until interrupted or --duration; it records one
// crawl_runs row of kind revisit. It needs no --bootstrap: it queries
// only nodes already in the file, and without --testnet refuses loopback
// and private ones.
// On a terminal it keeps a status line up to date on stderr; otherwise it
// prints a status line every --progress. Without --testnet, loopback and
// private bootstrap addresses are refused. SIGINT or SIGTERM cancels the
// crawl; the sightings are flushed, the run is ended with its counts, the
// summary is printed and the exit code is 130. A second signal ends the
// program at once (SQLite's WAL keeps the file consistent, but the run
// stays without an end time).
//
// node, testnet and shell run until SIGINT or SIGTERM (shell also until
// quit or the end of its input) and then exit 0 after a clean shutdown.
//
// node prints a line each time the votes of its repliers (BEP 42 "ip")
// decide a new external address, and says when it takes a BEP 42 ID for
// it and rejoins. With --state FILE it keeps its ID and its routing
// table's good nodes in FILE, a versioned JSON file saved every
// --state-every (5 minutes) and on a clean stop (to a temporary file,
// then renamed over FILE). At start it takes the saved ID back (unless
// --id is given, or the ID is not valid for the saved external address)
// and pings the saved nodes before it asks --bootstrap. A damaged FILE is
// renamed FILE.damaged-TIME with a warning and the node starts afresh; a
// file of another version or program is an error and stays as it is.
//
// testnet runs --nodes nodes on loopback: by default node i listens on
// 127.10.0.1 plus i (--ips sets the first address), all on --base-port;
// with --ip, every node shares that one IP on consecutive ports from
// --base-port, and the k-bucket one-node-per-IP limit is lifted. Port 0
// gives each node a free port. Every node but the first joins through the
// first; the per-IP and per-/24 reply limits and the send cap are off
// (lightdht.LocalTestNet), since crawlers hit test nodes hard. Once every node has joined it prints "bootstrap ADDR"
// (after a "node ID ADDR" line per node) or, with --json,
// {"bootstrap": ADDR, "nodes": [{"id": ..., "addr": ...}, ...]}.
//
// testnet --selftest builds the network, then checks it and exits: each
// node starts with 3 random contacts and bootstraps (twice, so that early
// nodes learn of later ones); then every node is looked up by a random
// other node (a success when the lookup's closest node is the one looked
// up), and each node puts an immutable item that a random other node
// gets. It prints the success counts and timings of each phase and exits
// 1 with one line naming the failures if any operation failed.
// --unreachable N closes N random nodes after the join, to see the check
// fail; --seed repeats a run's random choices.
//
// The shell reads its commands through a line editor with history when
// stdin and stdout are a terminal, and line by line otherwise; it has
// put, get and delete of names as well, and quotes ("hello world"). Its
// prompt also shows the memory the process has in use. The shell's
// prompt shows the routing table's size and an estimate of
// the network's size: the K (8) nodes closest to the node's own ID span a
// fraction d/2^160 of the ID space, d being the XOR distance to the K-th,
// so the network holds about K x 2^160 / d nodes. With fewer than K nodes
// in the table (a small test network) the estimate is the table's size
// plus one, the node itself.
//
// Errors are printed as one line on stderr. Exit codes: 0 success, 1 the
// operation failed (no reply, port in use, unwritable or corrupt database),
// 2 a usage error (unknown command or flag, bad ID, infohash, address,
// zone or environment variable), 130 a crawl interrupted by a signal.
//
// Logs go to stderr through zerolog: human-readable lines (colour on a
// terminal), or JSON lines with --log-json; --log-level sets the level
// (default warn).
package main
