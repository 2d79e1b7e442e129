-- 0001: the tables. Times are Unix milliseconds; IDs and infohashes are
-- 40-digit lower-case hex; IPs are netip text (IPv4 unmapped). See SCHEMA.md.

CREATE TABLE nodes (
    id               TEXT    NOT NULL,
    ip               TEXT    NOT NULL,
    port             INTEGER NOT NULL,
    first_seen       INTEGER NOT NULL,
    last_seen        INTEGER NOT NULL,
    times_seen       INTEGER NOT NULL,
    first_source     TEXT    NOT NULL,
    last_reply       INTEGER,
    replies          INTEGER NOT NULL DEFAULT 0,
    timeouts         INTEGER NOT NULL DEFAULT 0,
    queries_sent     INTEGER NOT NULL DEFAULT 0,
    queries_received INTEGER NOT NULL DEFAULT 0,
    last_rtt_ms      REAL,
    version          TEXT,
    version_seen     INTEGER,
    bep42_valid      INTEGER NOT NULL,
    read_only        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (id, ip, port)
) WITHOUT ROWID;

CREATE TABLE reports (
    reporter_id   TEXT    NOT NULL,
    reporter_ip   TEXT    NOT NULL,
    reporter_port INTEGER NOT NULL,
    reported_id   TEXT    NOT NULL,
    reported_ip   TEXT    NOT NULL,
    reported_port INTEGER NOT NULL,
    first_seen    INTEGER NOT NULL,
    last_seen     INTEGER NOT NULL,
    count         INTEGER NOT NULL,
    PRIMARY KEY (reporter_id, reporter_ip, reporter_port, reported_id, reported_ip, reported_port)
) WITHOUT ROWID;

CREATE TABLE infohashes (
    infohash      TEXT    NOT NULL PRIMARY KEY,
    first_seen    INTEGER NOT NULL,
    last_seen     INTEGER NOT NULL,
    via_sample    INTEGER NOT NULL DEFAULT 0,
    via_get_peers INTEGER NOT NULL DEFAULT 0,
    via_announce  INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE TABLE peers (
    infohash   TEXT    NOT NULL,
    ip         TEXT    NOT NULL,
    port       INTEGER NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    source     TEXT    NOT NULL,
    count      INTEGER NOT NULL,
    PRIMARY KEY (infohash, ip, port)
) WITHOUT ROWID;

CREATE TABLE samples (
    node_id       TEXT    NOT NULL,
    ip            TEXT    NOT NULL,
    port          INTEGER NOT NULL,
    time          INTEGER NOT NULL,
    num           INTEGER NOT NULL,
    interval_s    INTEGER NOT NULL,
    samples_count INTEGER NOT NULL
);
CREATE INDEX samples_node_id ON samples (node_id);

CREATE TABLE crawl_runs (
    id              INTEGER PRIMARY KEY,
    started         INTEGER NOT NULL,
    ended           INTEGER,
    config          TEXT,
    program_version TEXT,
    bootstrap       TEXT,
    nodes_found     INTEGER,
    nodes_replied   INTEGER,
    infohashes      INTEGER,
    queries_sent    INTEGER,
    sightings_shed  INTEGER,
    size_estimate   REAL
);
