-- opsbook schema v8: who waived a gate step (break glass), as a column the runner reads,
-- not an entry among the step's outputs.
ALTER TABLE execution_steps ADD COLUMN overridden_by TEXT;
UPDATE execution_steps SET overridden_by = json_extract(outputs, '$.overridden_by')
    WHERE json_extract(outputs, '$.overridden_by') IS NOT NULL;
