-- The claim's index (migration 14) holds queued executions only, as PostgreSQL's does:
-- heartbeats and step changes of running executions no longer update it.
-- (`claim_next` names it: SQLite picks an index on `status` otherwise.)
DROP INDEX executions_claim;
CREATE INDEX executions_claim ON executions (COALESCE(heartbeat_at, created_at), id) WHERE status = 'queued';
