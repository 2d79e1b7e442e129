-- 0004: crawl history. Visits (one row per node per crawl), neighbours
-- per crawl, sessions, and the crawl record's vantage and totals. Nodes
-- get a compact integer reference, ref, which the new tables use instead
-- of repeating (id, ip, port). See SCHEMA.md.

-- The views name nodes: drop them while the table is rebuilt.
DROP VIEW live_nodes;
DROP VIEW client_versions;
DROP VIEW ids_per_ip;
DROP VIEW ips_per_id;
DROP VIEW bep42_violators;

CREATE TABLE nodes_new (
    ref              INTEGER PRIMARY KEY,
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
    UNIQUE (id, ip, port)
);
-- Existing nodes are numbered in the order they were first seen.
INSERT INTO nodes_new (id, ip, port, first_seen, last_seen, times_seen, first_source,
        last_reply, replies, timeouts, queries_sent, queries_received, last_rtt_ms,
        version, version_seen, bep42_valid, read_only)
    SELECT id, ip, port, first_seen, last_seen, times_seen, first_source,
        last_reply, replies, timeouts, queries_sent, queries_received, last_rtt_ms,
        version, version_seen, bep42_valid, read_only
    FROM nodes ORDER BY first_seen, id, ip, port;
DROP TABLE nodes;
ALTER TABLE nodes_new RENAME TO nodes;

-- The views of 0002, unchanged.
CREATE VIEW live_nodes AS
    SELECT * FROM nodes WHERE replies > 0;

CREATE VIEW client_versions AS
    SELECT version,
           count(*)                AS nodes,
           sum(replies > 0)        AS replied
    FROM nodes
    WHERE version IS NOT NULL
    GROUP BY version;

CREATE VIEW ids_per_ip AS
    SELECT ip, count(DISTINCT id) AS ids
    FROM nodes
    GROUP BY ip
    HAVING count(DISTINCT id) > 1;

CREATE VIEW ips_per_id AS
    SELECT id, count(DISTINCT ip) AS ips
    FROM nodes
    GROUP BY id
    HAVING count(DISTINCT ip) > 1;

CREATE VIEW bep42_violators AS
    SELECT * FROM nodes
    WHERE bep42_valid = 0
      AND NOT (
            ip GLOB '10.*'
         OR ip GLOB '127.*'
         OR ip GLOB '192.168.*'
         OR ip GLOB '169.254.*'
         OR ip GLOB '172.1[6-9].*'
         OR ip GLOB '172.2[0-9].*'
         OR ip GLOB '172.3[01].*'
         OR ip = '::1'
         OR ip GLOB 'f[cd][0-9a-f][0-9a-f]:*'
         OR ip GLOB 'fe[89ab][0-9a-f]:*'
      );

-- The crawl record: what kind of run, from where, whether it recorded
-- visits and neighbours, and its visits' totals by outcome. Runs made
-- before this migration recorded no visits (visits = 0).
ALTER TABLE crawl_runs ADD COLUMN kind TEXT NOT NULL DEFAULT 'crawl';
ALTER TABLE crawl_runs ADD COLUMN vantage TEXT;
ALTER TABLE crawl_runs ADD COLUMN host TEXT;
ALTER TABLE crawl_runs ADD COLUMN visits INTEGER NOT NULL DEFAULT 0;
ALTER TABLE crawl_runs ADD COLUMN neighbours INTEGER NOT NULL DEFAULT 0;
ALTER TABLE crawl_runs ADD COLUMN visits_replied INTEGER;
ALTER TABLE crawl_runs ADD COLUMN visits_error INTEGER;
ALTER TABLE crawl_runs ADD COLUMN visits_timeout INTEGER;
ALTER TABLE crawl_runs ADD COLUMN visits_not_queried INTEGER;

-- Client versions, numbered, so that a visit stores one small integer.
CREATE TABLE versions (
    ref     INTEGER PRIMARY KEY,
    version TEXT NOT NULL UNIQUE
);

-- One row per node per crawl (or per revisit). Append-only, in the
-- order the writer commits them; no index, to keep a visit small (see
-- SCHEMA.md for the indexes to add on a copy).
CREATE TABLE visits (
    crawl        INTEGER,          -- crawl_runs.id; NULL outside a run
    node         INTEGER NOT NULL, -- nodes.ref
    time         INTEGER NOT NULL,
    outcome      INTEGER NOT NULL, -- visit_outcomes.outcome
    error_code   INTEGER,
    skipped      INTEGER,          -- visit_skips.skipped
    queries      INTEGER NOT NULL,
    rtt_us       INTEGER,
    version      INTEGER,          -- versions.ref
    read_only    INTEGER NOT NULL,
    bep51        INTEGER NOT NULL, -- 0 unknown, 1 yes, 2 no (204), 3 silent
    num          INTEGER,
    interval_s   INTEGER,
    id_changed   INTEGER NOT NULL,
    addr_changed INTEGER NOT NULL
);

CREATE TABLE visit_outcomes (
    outcome INTEGER PRIMARY KEY,
    name    TEXT NOT NULL
);
INSERT INTO visit_outcomes VALUES (1, 'replied'), (2, 'error'), (3, 'timeout'), (4, 'not_queried');

CREATE TABLE visit_skips (
    skipped INTEGER PRIMARY KEY,
    name    TEXT NOT NULL
);
INSERT INTO visit_skips VALUES (1, 'bogon'), (2, 'out_of_zone'), (3, 'unreached');

-- Who listed whom in which crawl (Options.Neighbours; off by default).
CREATE TABLE neighbours (
    crawl     INTEGER NOT NULL,
    node      INTEGER NOT NULL, -- the node whose reply listed the other
    neighbour INTEGER NOT NULL, -- the node listed
    PRIMARY KEY (crawl, node, neighbour)
) WITHOUT ROWID;

-- Intervals in which a node answered every visit.
CREATE TABLE sessions (
    id            INTEGER PRIMARY KEY,
    node          INTEGER NOT NULL,
    started       INTEGER NOT NULL, -- the visit that opened it
    last_answered INTEGER NOT NULL, -- the latest answered visit in it
    visits        INTEGER NOT NULL, -- visits in it, answered or not
    failed        INTEGER NOT NULL, -- visits in it that timed out
    failed_streak INTEGER NOT NULL, -- timed-out visits since the last answer
    failed_since  INTEGER,          -- the first of those; NULL when the last visit answered
    state         TEXT    NOT NULL, -- 'open' or 'closed'
    closed        INTEGER,          -- the visit that closed it
    close_reason  TEXT              -- 'timeout', 'id_changed' or 'addr_changed'
);
CREATE INDEX sessions_node ON sessions (node);
CREATE UNIQUE INDEX sessions_open ON sessions (node) WHERE state = 'open';

-- The node that last answered at each address: how a visit knows that
-- the ID at an address changed. (That an ID moved to another address is
-- found from the nodes with its ID and their latest sessions.)
CREATE TABLE address_nodes (
    ip   TEXT    NOT NULL,
    port INTEGER NOT NULL,
    node INTEGER NOT NULL,
    time INTEGER NOT NULL,
    PRIMARY KEY (ip, port)
) WITHOUT ROWID;

-- Views of the history.

-- Visits with their node's key and every code spelt out.
CREATE VIEW visit_details AS
    SELECT v.crawl, v.node, n.id, n.ip, n.port, v.time, o.name AS outcome, v.error_code,
           s.name AS skipped, v.queries, v.rtt_us / 1000.0 AS rtt_ms, ver.version,
           v.read_only, CASE v.bep51 WHEN 1 THEN 'yes' WHEN 2 THEN 'no' WHEN 3 THEN 'silent' END AS bep51,
           v.num, v.interval_s, v.id_changed, v.addr_changed
    FROM visits v
    JOIN nodes n ON n.ref = v.node
    JOIN visit_outcomes o ON o.outcome = v.outcome
    LEFT JOIN visit_skips s ON s.skipped = v.skipped
    LEFT JOIN versions ver ON ver.ref = v.version;

-- The crawls that recorded visits (kind 'crawl'), each with the one
-- before it (NULL for the first).
CREATE VIEW crawl_sequence AS
    SELECT id AS crawl,
           (SELECT max(p.id) FROM crawl_runs p WHERE p.kind = 'crawl' AND p.visits = 1 AND p.id < c.id) AS prev
    FROM crawl_runs c
    WHERE c.kind = 'crawl' AND c.visits = 1;

-- The nodes that answered in each crawl.
CREATE VIEW crawl_answering AS
    SELECT DISTINCT crawl, node FROM visits WHERE outcome IN (1, 2) AND crawl IS NOT NULL;

-- Each node's class in each crawl, against the crawl before it: stayed
-- (answered in both), entered (answered in this one only), left
-- (answered in the one before only), never_answered (visited in this
-- crawl and never answered in any crawl). seen_once: the node answered
-- in this crawl and in no other. Computed in one pass over the crawls'
-- visits, grouped by crawl and node, so its cost grows with the visits,
-- not with their square.
CREATE VIEW crawl_node_classes AS
    WITH seq AS MATERIALIZED (SELECT crawl, prev FROM crawl_sequence),
         a AS MATERIALIZED (
            SELECT crawl, node, max(outcome IN (1, 2)) AS ans
            FROM visits WHERE crawl IN (SELECT crawl FROM seq)
            GROUP BY crawl, node),
         ever AS MATERIALIZED (
            SELECT node, sum(ans) AS crawls FROM a GROUP BY node),
         -- Each crawl's row of a node counts as "now" for its crawl and
         -- as "before" for the crawl after it.
         pair AS (
            SELECT crawl, node, max(now) AS now, max(before) AS before FROM (
                SELECT crawl, node, ans AS now, NULL AS before FROM a
                UNION ALL
                SELECT s.crawl, a.node, NULL, a.ans FROM a JOIN seq s ON s.prev = a.crawl)
            GROUP BY crawl, node)
    SELECT p.crawl, p.node,
           CASE WHEN p.now = 1 AND p.before = 1 THEN 'stayed'
                WHEN p.now = 1 THEN 'entered'
                WHEN p.before = 1 THEN 'left'
                ELSE 'never_answered' END AS class,
           p.now = 1 AND e.crawls = 1 AS seen_once
    FROM pair p JOIN ever e ON e.node = p.node
    WHERE p.now = 1 OR p.before = 1 OR (p.now = 0 AND e.crawls = 0);

-- Per crawl: how many nodes of each class.
CREATE VIEW crawl_churn AS
    SELECT q.crawl, r.started,
           count(CASE WHEN c.class IN ('stayed', 'entered') THEN 1 END) AS answering,
           count(CASE WHEN c.class = 'stayed' THEN 1 END)               AS stayed,
           count(CASE WHEN c.class = 'entered' THEN 1 END)              AS entered,
           count(CASE WHEN c.class = 'left' THEN 1 END)                 AS left,
           count(CASE WHEN c.seen_once THEN 1 END)                      AS seen_once,
           count(CASE WHEN c.class = 'never_answered' THEN 1 END)       AS never_answered
    FROM crawl_sequence q
    JOIN crawl_runs r ON r.id = q.crawl
    LEFT JOIN crawl_node_classes c ON c.crawl = q.crawl
    GROUP BY q.crawl;

-- Per run: when, how big, and its visits by outcome.
CREATE VIEW crawl_totals AS
    SELECT id AS crawl, kind, started, ended, (ended - started) / 1000.0 AS seconds,
           nodes_found, nodes_replied, queries_sent, size_estimate,
           visits_replied, visits_error, visits_timeout, visits_not_queried
    FROM crawl_runs;

-- Per crawl and client version: the answering nodes that sent it.
CREATE VIEW crawl_clients AS
    SELECT v.crawl, ver.version, count(DISTINCT v.node) AS nodes
    FROM visits v JOIN versions ver ON ver.ref = v.version
    WHERE v.outcome IN (1, 2) AND v.crawl IS NOT NULL
    GROUP BY v.crawl, ver.version;

-- Sessions with their length: from the visit that opened one to its
-- latest answered visit (a lower bound; the node went away before
-- failed_since, or is still up if the session is open).
CREATE VIEW session_lengths AS
    SELECT s.id AS session, s.node, n.id, n.ip, n.port, s.started, s.last_answered,
           (s.last_answered - s.started) / 1000.0 AS seconds,
           s.visits, s.failed, s.state, s.close_reason
    FROM sessions s JOIN nodes n ON n.ref = s.node;
