-- 0003 (SQLite's 0007): a visit records whether the crawl discounted the
-- node's contacts (observe.Discount), and a node not queried because
-- only discounted nodes listed it has its own skip reason. See SCHEMA.md.

INSERT INTO visit_skips VALUES (4, 'discounted');

CREATE TABLE visit_discounts (
    discounted bigint PRIMARY KEY,
    name       text COLLATE "C" NOT NULL
);
INSERT INTO visit_discounts VALUES (1, 'implausible'), (2, 'dead_contacts');

-- visit_discounts.discounted; NULL when the node's contacts were trusted,
-- and for visits recorded before this migration. Without a default, the
-- column is added without rewriting the table.
ALTER TABLE visits ADD COLUMN discounted bigint;

-- The new column goes last: CREATE OR REPLACE VIEW can only append.
CREATE OR REPLACE VIEW visit_details AS
    SELECT v.crawl, v.node, n.id, n.ip, n.port, v.time, o.name AS outcome, v.error_code,
           s.name AS skipped, v.queries, v.rtt_us / 1000.0::float8 AS rtt_ms, ver.version,
           v.read_only, CASE v.bep51 WHEN 1 THEN 'yes' WHEN 2 THEN 'no' WHEN 3 THEN 'silent' END AS bep51,
           v.num, v.interval_s, v.id_changed, v.addr_changed, d.name AS discounted
    FROM visits v
    JOIN nodes n ON n.ref = v.node
    JOIN visit_outcomes o ON o.outcome = v.outcome
    LEFT JOIN visit_skips s ON s.skipped = v.skipped
    LEFT JOIN versions ver ON ver.ref = v.version
    LEFT JOIN visit_discounts d ON d.discounted = v.discounted;
