-- opsbook schema v5: keyset pagination over (created_at, id) uses an index.
CREATE INDEX executions_created_id ON executions (created_at, id);
