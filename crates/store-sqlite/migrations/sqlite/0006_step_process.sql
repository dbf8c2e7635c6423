-- opsbook schema v6: the process group a step's attempt (or rollback) runs in, as
-- `PGID:BOOT.START`, recorded as soon as it is spawned, so that recovery after the
-- runner died can kill what it left running.
ALTER TABLE execution_steps ADD COLUMN process TEXT;
