-- opsbook schema v7: what a waiting step waits for (`approval` or `gate`), stored when
-- it starts waiting rather than inferred from its kind.
ALTER TABLE execution_steps ADD COLUMN wait_kind TEXT;
UPDATE execution_steps SET wait_kind = CASE kind WHEN 'approval' THEN 'approval' ELSE 'gate' END
    WHERE status = 'waiting';
