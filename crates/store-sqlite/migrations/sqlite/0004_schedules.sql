-- opsbook schema v4: schedules, from runbooks or created through the API.
CREATE TABLE schedules (
    id           TEXT PRIMARY KEY,        -- "<runbook>#<n>" for a runbook's own, else random
    runbook      TEXT NOT NULL,
    source       TEXT NOT NULL,           -- runbook | api
    cron         TEXT NOT NULL,
    timezone     TEXT NOT NULL,
    params       TEXT NOT NULL,           -- JSON
    overlap      TEXT NOT NULL,           -- skip | queue
    missed       TEXT NOT NULL,           -- skip | run_once
    created_by   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    next_run_at  BIGINT,
    last_run_at  BIGINT,
    last_result  TEXT
);
CREATE INDEX schedules_due ON schedules (next_run_at);
CREATE INDEX schedules_runbook ON schedules (runbook);
