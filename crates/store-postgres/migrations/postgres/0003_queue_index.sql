-- The queue index holds queued executions only: a claim or an execution's end (a row
-- that leaves `queued`) adds no entry to it, and a claim scans only what waits.
DROP INDEX executions_queue;
CREATE INDEX executions_queue ON executions ((COALESCE(heartbeat_at, created_at)), id) WHERE status = 'queued';
