-- opsbook schema v17: an execution started by another's `runbook` step (a child) names
-- its parent and the step; NULL for the rest.
ALTER TABLE executions ADD COLUMN parent_id TEXT;
ALTER TABLE executions ADD COLUMN parent_step TEXT;
CREATE INDEX executions_parent ON executions (parent_id) WHERE parent_id IS NOT NULL;
