-- opsbook schema v1. Times are epoch milliseconds; JSON is TEXT.
-- Kept portable: the PostgreSQL backend uses the same tables and columns.

CREATE TABLE runbook_versions (
    sha256      TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    version     TEXT NOT NULL,
    content     TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX runbook_versions_name ON runbook_versions (name, created_at);

CREATE TABLE executions (
    id               TEXT PRIMARY KEY,
    runbook_name     TEXT NOT NULL,
    runbook_version  TEXT NOT NULL,
    runbook_sha256   TEXT NOT NULL REFERENCES runbook_versions (sha256),
    source_path      TEXT,
    base_dir         TEXT NOT NULL,
    status           TEXT NOT NULL,
    actor            TEXT NOT NULL,
    params           TEXT NOT NULL,      -- JSON, secrets masked
    secret_digests   TEXT NOT NULL,      -- JSON {name: sha256(id:value)} to check re-supplied secrets
    created_at       BIGINT NOT NULL,
    started_at       BIGINT,
    finished_at      BIGINT,
    error            TEXT,
    current_step     INTEGER,
    rollback_status  TEXT,               -- NULL: not performed
    -- Claiming: who runs it, until when the claim holds, last sign of life.
    owner            TEXT,
    lease_expires_at BIGINT,
    heartbeat_at     BIGINT,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX executions_created ON executions (created_at);
CREATE INDEX executions_runbook ON executions (runbook_name, created_at);
CREATE INDEX executions_status ON executions (status, created_at);

CREATE TABLE execution_steps (
    execution_id       TEXT NOT NULL REFERENCES executions (id),
    idx                INTEGER NOT NULL,
    step_id            TEXT NOT NULL,
    name               TEXT NOT NULL,
    kind               TEXT NOT NULL,
    status             TEXT NOT NULL,
    attempts           INTEGER NOT NULL DEFAULT 0,
    exit_code          INTEGER,
    started_at         BIGINT,
    finished_at        BIGINT,
    error              TEXT,
    outputs            TEXT NOT NULL DEFAULT '{}',
    rendered           TEXT,               -- what ran, secrets masked
    wait_deadline      BIGINT,
    rollback_status    TEXT,
    rollback_exit_code INTEGER,
    rollback_error     TEXT,
    PRIMARY KEY (execution_id, idx)
);

CREATE TABLE step_attempts (
    execution_id TEXT NOT NULL REFERENCES executions (id),
    step_id      TEXT NOT NULL,
    phase        TEXT NOT NULL,            -- check | step | rollback
    attempt      INTEGER NOT NULL,
    status       TEXT NOT NULL,
    exit_code    INTEGER,
    started_at   BIGINT NOT NULL,
    finished_at  BIGINT NOT NULL,
    error        TEXT
);
CREATE INDEX step_attempts_execution ON step_attempts (execution_id, step_id);

CREATE TABLE execution_logs (
    execution_id TEXT NOT NULL REFERENCES executions (id),
    seq          BIGINT NOT NULL,
    step_id      TEXT,
    phase        TEXT NOT NULL,
    attempt      INTEGER NOT NULL,
    stream       TEXT NOT NULL,            -- stdout | stderr | system
    ts           BIGINT NOT NULL,
    line         TEXT NOT NULL,
    PRIMARY KEY (execution_id, seq)
);

CREATE TABLE approvals (
    execution_id TEXT NOT NULL REFERENCES executions (id),
    step_id      TEXT NOT NULL,
    approver     TEXT NOT NULL,
    decision     TEXT NOT NULL,            -- approved | rejected
    comment      TEXT,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (execution_id, step_id, approver)
);
