// Package db stores every DHT node lightdht sees in a SQLite file or a
// PostgreSQL database, for researchers: one row per node (ID, IP, port) with when it was first and
// last seen, how often it replied or timed out, its client version and
// whether its ID satisfies BEP 42; optionally who reported whom; the
// infohashes seen in queries and BEP 51 samples; the peers announced for
// them; and one row per crawl run. SCHEMA.md documents every column.
//
// A node speaks the DHT: a UDP endpoint with a 160-bit ID. A peer speaks
// BitTorrent over TCP; the DHT only stores where peers are. Nodes go in the
// nodes table, peers in the peers table; the same host may be both.
//
// # Writing
//
// A DB implements observe.Observer: pass it as the node's observer, or
// call Observe, RecordPeer and RecordSample. These enqueue on a bounded
// queue and return; a writer goroutine folds repeated sightings of a key
// in memory and hands the batch to a committer goroutine, which commits it
// in one transaction, when it holds Options.BatchSize items or its oldest
// is Options.FlushInterval old. The two overlap: the next batch fills while
// the previous one commits, and the writer waits for that commit before it
// hands over another, so a full queue waits at most one commit. When
// the queue is full the callers wait (back-pressure), or with Options.Shed
// the item is dropped and counted in Stats().Shed: nothing is lost
// silently. Flush waits for everything enqueued before it to be
// committed; Close commits what is queued and closes the file.
//
// The file is in WAL mode with synchronous=NORMAL: a crash of the process
// loses nothing that was committed; a crash of the machine may lose the
// last batches, never the file's integrity.
//
// # Reading
//
// Times are Unix milliseconds (INTEGER), IDs and infohashes 40 lower-case
// hex digits (TEXT), IPs text as netip prints them (IPv4 never mapped).
// Other programs may read the file while a crawler writes it:
//
//	sqlite3 nodes.db 'SELECT version, nodes, replied FROM client_versions ORDER BY nodes DESC'
//
//	duckdb -c "INSTALL sqlite; LOAD sqlite; ATTACH 'nodes.db' AS dht (TYPE sqlite, READ_ONLY);
//	           SELECT count(*) FROM dht.live_nodes"
//
//	import sqlite3, pandas as pd
//	con = sqlite3.connect("file:nodes.db?mode=ro", uri=True)
//	nodes = pd.read_sql("SELECT * FROM nodes", con)
//	nodes["first_seen"] = pd.to_datetime(nodes["first_seen"], unit="ms")
//
// In Go, DB.SQL returns a read-only pool on the file being written, and
// OpenReadOnly opens one from another program.
//
// # PostgreSQL
//
// Open with a postgres:// URL instead of a path writes into that
// PostgreSQL database, with the same tables, views and meaning (see
// SCHEMA.md for the few differences). Everything above the database (the
// queue, batching, back-pressure and shedding, runs) is shared: a
// backend interface holds what differs. Several processes on several
// machines can write one database; JoinRun lets them record one run
// together (package shard builds shared crawls on it).
package db
