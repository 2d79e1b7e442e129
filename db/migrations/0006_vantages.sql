-- 0006: each visit names its vantage, the crawler that made it, so that
-- one crawl can be made by several crawlers (a shared crawl) and nodes
-- seen from one vantage and not another can be found. See SCHEMA.md.

-- A vantage: a crawler's machine (host) and its socket's local address.
-- '' where unknown.
CREATE TABLE vantages (
    ref     INTEGER PRIMARY KEY,
    host    TEXT NOT NULL,
    address TEXT NOT NULL,
    UNIQUE (host, address)
);

-- vantages.ref; NULL for visits recorded before this migration and
-- outside a run.
ALTER TABLE visits ADD COLUMN vantage INTEGER;

-- Per vantage and node: the visits that queried the node from there and
-- how many of them it answered.
CREATE VIEW vantage_nodes AS
    SELECT vantage, node, count(*) AS visits,
           count(CASE WHEN outcome IN (1, 2) THEN 1 END) AS answered
    FROM visits
    WHERE vantage IS NOT NULL AND outcome != 4
    GROUP BY vantage, node;

-- Nodes that answered from one vantage and were queried but never
-- answered from another: firewalled, filtering or rate-limiting nodes,
-- or loss on one vantage's path.
CREATE VIEW vantage_gaps AS
    SELECT a.node, a.vantage AS answered_from, b.vantage AS silent_from,
           a.answered, b.visits AS silent_visits
    FROM vantage_nodes a
    JOIN vantage_nodes b ON b.node = a.node AND b.vantage != a.vantage
    WHERE a.answered > 0 AND b.answered = 0;

-- Per pair of vantages: the nodes both queried, and of those how many
-- answered both, only the first, only the second, neither.
CREATE VIEW vantage_comparison AS
    SELECT a.vantage AS vantage_a, b.vantage AS vantage_b, count(*) AS queried_by_both,
           count(CASE WHEN a.answered > 0 AND b.answered > 0 THEN 1 END) AS answered_both,
           count(CASE WHEN a.answered > 0 AND b.answered = 0 THEN 1 END) AS answered_a_only,
           count(CASE WHEN a.answered = 0 AND b.answered > 0 THEN 1 END) AS answered_b_only,
           count(CASE WHEN a.answered = 0 AND b.answered = 0 THEN 1 END) AS answered_neither
    FROM vantage_nodes a
    JOIN vantage_nodes b ON b.node = a.node AND a.vantage < b.vantage
    GROUP BY a.vantage, b.vantage;
