-- 0002: views for common questions. See SCHEMA.md.

-- Nodes that answered at least one of our queries.
CREATE VIEW live_nodes AS
    SELECT * FROM nodes WHERE replies > 0;

-- Client versions ("v") seen, with how many (id, ip, port) nodes carried each
-- and how many of those replied to us. Nodes that never sent a "v" are left out.
CREATE VIEW client_versions AS
    SELECT version,
           count(*)                AS nodes,
           sum(replies > 0)        AS replied
    FROM nodes
    WHERE version IS NOT NULL
    GROUP BY version;

-- IPs that used more than one node ID (Sybil suspects).
CREATE VIEW ids_per_ip AS
    SELECT ip, count(DISTINCT id) AS ids
    FROM nodes
    GROUP BY ip
    HAVING count(DISTINCT id) > 1;

-- Node IDs seen on more than one IP (Sybil suspects, or nodes that moved).
CREATE VIEW ips_per_id AS
    SELECT id, count(DISTINCT ip) AS ips
    FROM nodes
    GROUP BY id
    HAVING count(DISTINCT ip) > 1;

-- Nodes whose ID does not satisfy BEP 42 for their IP, leaving out the
-- addresses BEP 42 exempts (private, loopback, link-local), like
-- bep42.Exempt.
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
