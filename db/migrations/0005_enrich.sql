-- 0005: country and network (ASN) of the nodes' IPs, from .mmdb databases
-- the user supplies (lightdht enrich, or --geoip/--asn). See SCHEMA.md.

CREATE TABLE ip_info (
    ip        TEXT    NOT NULL PRIMARY KEY,
    country   TEXT,             -- ISO 3166-1 alpha-2; NULL: unknown
    asn       INTEGER,          -- NULL: unknown
    org       TEXT,             -- the AS's organisation; NULL: unknown
    looked_up INTEGER NOT NULL  -- when it was looked up
) WITHOUT ROWID;

-- Nodes by country: every node, and those that ever answered.
CREATE VIEW nodes_by_country AS
    SELECT i.country, count(*) AS nodes, sum(n.replies > 0) AS answering
    FROM nodes n JOIN ip_info i ON i.ip = n.ip
    WHERE i.country IS NOT NULL
    GROUP BY i.country;

-- Nodes by network (autonomous system).
CREATE VIEW nodes_by_asn AS
    SELECT i.asn, i.org, count(*) AS nodes, sum(n.replies > 0) AS answering
    FROM nodes n JOIN ip_info i ON i.ip = n.ip
    WHERE i.asn IS NOT NULL
    GROUP BY i.asn, i.org;
