-- The database cache of the rate limits' counters (CACHES["throttle"] without Redis), as
-- Django's createcachetable makes it for DatabaseCache, so that `migrate` is all a deployment runs.
CREATE TABLE IF NOT EXISTS ledger_throttle_cache (
    cache_key varchar(255) NOT NULL PRIMARY KEY,
    value text NOT NULL,
    expires timestamp with time zone NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_throttle_cache_expires ON ledger_throttle_cache (expires);
-- reverse:
DROP TABLE IF EXISTS ledger_throttle_cache;
