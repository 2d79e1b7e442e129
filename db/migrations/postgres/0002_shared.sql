-- Shared crawls (package shard): one census crawled by several crawler
-- processes, on one machine or many, through this database.
--
-- shared_crawls: one row per shared crawl, found by its name so that
-- every process started with the same command joins the same crawl.
--   name      the name given with --shared; unique
--   crawl     the crawl_runs row (kind 'crawl') that every process's
--             visits belong to
--   bits      the zones are the 2^bits prefixes of bits bits
--   created   when the first process created it (Unix ms)
--   finished  when the last zone was marked done (Unix ms); NULL while
--             zones remain
--   finisher  the holder that marked the last zone done and so recorded
--             the end of the crawl_runs row, once
--
-- crawl_zones: one row per zone of a shared crawl; a crawler claims a
-- todo zone (or a claimed one whose lease ran out) with SELECT ... FOR
-- UPDATE SKIP LOCKED, renews lease_until while it crawls, and marks it
-- done with its figures.
--   crawl, zone    the shared crawl's crawl_runs id and the zone's number,
--                  0 to 2^bits - 1: its prefix read as a number
--   prefix         the zone's prefix, 40 hex digits, bits past the prefix
--                  zero
--   bits           the prefix length
--   state          'todo', 'claimed' or 'done'
--   holder         who holds (or last held, or crawled) it: host, pid,
--                  local address and a random tag
--   host, vantage  the holder's host name and socket address, as in
--                  vantages
--   lease_until    when the holder's lease runs out (Unix ms, database
--                  server clock unless a test injects one); NULL unless
--                  claimed
--   claims         how many times the zone was claimed: 1 for a zone
--                  crawled once, more for one whose crawler died
--   started        when the last claim was made (Unix ms)
--   finished       when it was marked done (Unix ms)
--   nodes_found    nodes found inside the zone
--   nodes_replied  nodes inside the zone that answered
--   queries_sent   queries the zone's crawl sent, the approach to the zone
--                  and resends included
--   infohashes     distinct infohashes the zone's crawl sampled
--   size_estimate  the zone's estimated number of nodes (the whole
--                  network's estimate is the sum over zones)
CREATE TABLE shared_crawls (
    name     text   NOT NULL PRIMARY KEY,
    crawl    bigint NOT NULL UNIQUE REFERENCES crawl_runs (id),
    bits     bigint NOT NULL,
    created  bigint NOT NULL,
    finished bigint,
    finisher text
);

CREATE TABLE crawl_zones (
    crawl         bigint NOT NULL REFERENCES shared_crawls (crawl),
    zone          bigint NOT NULL,
    prefix        text   NOT NULL,
    bits          bigint NOT NULL,
    state         text   NOT NULL DEFAULT 'todo' CHECK (state IN ('todo', 'claimed', 'done')),
    holder        text,
    host          text,
    vantage       text,
    lease_until   bigint,
    claims        bigint NOT NULL DEFAULT 0,
    started       bigint,
    finished      bigint,
    nodes_found   bigint,
    nodes_replied bigint,
    queries_sent  bigint,
    infohashes    bigint,
    size_estimate double precision,
    PRIMARY KEY (crawl, zone)
);
