-- 0004 (PostgreSQL only): a zone's record says what its crawl learned
-- (crawler.Result.Learned), which the crawls of the zones claimed after
-- it start from (crawler.Config.Learned), so that each small zone does
-- not learn again what the network is like. See docs/shared-crawls.md.
--   resends_sent, resends_answered      queries resent after a timeout,
--                                       and those answered
--   followups_sent, followups_answered  find_node sent for a timed-out
--                                       sample_infohashes, and answered
--   resamples_sent, resamples_answered  sample_infohashes sent again to
--                                       nodes that answered the follow-up
--   checks_sent, checks_found           nodes the second pass asked for
--                                       their nearest neighbours, and the
--                                       new nodes that answered meanwhile
-- NULL for a zone not done, and for zones done before this migration.
ALTER TABLE crawl_zones
    ADD COLUMN resends_sent bigint,
    ADD COLUMN resends_answered bigint,
    ADD COLUMN followups_sent bigint,
    ADD COLUMN followups_answered bigint,
    ADD COLUMN resamples_sent bigint,
    ADD COLUMN resamples_answered bigint,
    ADD COLUMN checks_sent bigint,
    ADD COLUMN checks_found bigint;
