-- How a step with `targets` went on each target (JSON: name, status, attempts, exit
-- code, times, error, rollback), NULL for a step without targets. (SQLite's v16.)
ALTER TABLE execution_steps ADD COLUMN targets TEXT;
