-- The claim's order (`claim_next`: oldest by last heartbeat, else creation): without it,
-- every claim sorted the whole queue, so a deep queue slowed every worker.
CREATE INDEX executions_claim ON executions (status, COALESCE(heartbeat_at, created_at), id);
