-- The claim's order (`claim_next`: oldest by last heartbeat, else creation): without it,
-- every claim sorted the whole queue, so a deep queue slowed every worker.
CREATE INDEX executions_claim ON executions (status, COALESCE(heartbeat_at, created_at), id);
-- Covered by `executions_queue (status, created_at, id)` and `executions_created_id
-- (created_at, id)`: every write of an execution paid for them, no query needed them.
DROP INDEX executions_status;
DROP INDEX executions_created;
