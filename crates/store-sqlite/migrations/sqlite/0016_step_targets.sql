-- opsbook schema v16: how a step with `targets` went on each target (JSON: name, status,
-- attempts, exit code, times, error, rollback), NULL for a step without targets.
ALTER TABLE execution_steps ADD COLUMN targets TEXT;
