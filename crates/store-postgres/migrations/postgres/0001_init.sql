-- opsbook schema on PostgreSQL, v1: the tables and columns of the SQLite schema as of
-- its migration 12, so that `opsbook admin copy` moves rows one to one. Times are epoch
-- milliseconds; JSON is TEXT (read and written by opsbook only); every integer BIGINT.
-- Ids and names compare byte by byte (COLLATE "C"), as in SQLite: the same order in
-- lists and cursors, and id prefixes found through the primary key.

CREATE TABLE runbook_versions (
    sha256      TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    version     TEXT NOT NULL,
    content     TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX runbook_versions_name ON runbook_versions (name, created_at);

CREATE TABLE executions (
    id               TEXT COLLATE "C" PRIMARY KEY,
    runbook_name     TEXT COLLATE "C" NOT NULL,
    runbook_version  TEXT NOT NULL,
    runbook_sha256   TEXT NOT NULL REFERENCES runbook_versions (sha256),
    source_path      TEXT,
    base_dir         TEXT NOT NULL,
    status           TEXT NOT NULL,
    actor            TEXT NOT NULL,
    params           TEXT NOT NULL,
    secret_digests   TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    started_at       BIGINT,
    finished_at      BIGINT,
    error            TEXT,
    current_step     BIGINT,
    rollback_status  TEXT,
    owner            TEXT,
    lease_expires_at BIGINT,
    heartbeat_at     BIGINT,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX executions_created_id ON executions (created_at, id);
CREATE INDEX executions_runbook ON executions (runbook_name, created_at, id);
CREATE INDEX executions_runbook_status ON executions (runbook_name, status, created_at, id);
CREATE INDEX executions_status ON executions (status, created_at, id);
CREATE INDEX executions_actor ON executions (actor, created_at);
-- The queue: claimed oldest-waiting first (since it was created, or last ran).
CREATE INDEX executions_queue ON executions (status, (COALESCE(heartbeat_at, created_at)), id);

CREATE TABLE execution_steps (
    execution_id       TEXT NOT NULL REFERENCES executions (id),
    idx                BIGINT NOT NULL,
    step_id            TEXT NOT NULL,
    name               TEXT NOT NULL,
    kind               TEXT NOT NULL,
    status             TEXT NOT NULL,
    attempts           BIGINT NOT NULL DEFAULT 0,
    exit_code          BIGINT,
    started_at         BIGINT,
    finished_at        BIGINT,
    error              TEXT,
    outputs            TEXT NOT NULL DEFAULT '{}',
    rendered           TEXT,
    wait_deadline      BIGINT,
    rollback_status    TEXT,
    rollback_exit_code BIGINT,
    rollback_error     TEXT,
    process            TEXT,
    wait_kind          TEXT,
    overridden_by      TEXT,
    PRIMARY KEY (execution_id, idx)
);

CREATE TABLE step_attempts (
    id           BIGSERIAL PRIMARY KEY,
    execution_id TEXT NOT NULL REFERENCES executions (id),
    step_id      TEXT NOT NULL,
    phase        TEXT NOT NULL,
    attempt      BIGINT NOT NULL,
    status       TEXT NOT NULL,
    exit_code    BIGINT,
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
    attempt      BIGINT NOT NULL,
    stream       TEXT NOT NULL,
    ts           BIGINT NOT NULL,
    line         TEXT NOT NULL,
    PRIMARY KEY (execution_id, seq)
);

CREATE TABLE approvals (
    execution_id TEXT NOT NULL REFERENCES executions (id),
    step_id      TEXT NOT NULL,
    approver     TEXT NOT NULL,
    decision     TEXT NOT NULL,
    comment      TEXT,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (execution_id, step_id, approver)
);

CREATE TABLE runbooks (
    name            TEXT COLLATE "C" PRIMARY KEY,
    status          TEXT NOT NULL,
    latest_version  TEXT NOT NULL,
    latest_sha256   TEXT NOT NULL,
    title           TEXT NOT NULL,
    description     TEXT,
    runbook_type    TEXT NOT NULL,
    owner           TEXT,
    tags            TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

CREATE TABLE bundles (
    sha256     TEXT PRIMARY KEY,
    content    BYTEA NOT NULL,
    size       BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE registry_versions (
    seq           BIGSERIAL UNIQUE,
    name          TEXT NOT NULL,
    version       TEXT NOT NULL,
    sha256        TEXT NOT NULL REFERENCES runbook_versions (sha256),
    published_by  TEXT NOT NULL,
    published_at  BIGINT NOT NULL,
    bundle_sha256 TEXT REFERENCES bundles (sha256),
    PRIMARY KEY (name, version)
);

CREATE TABLE lifecycle_events (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT NOT NULL,
    from_status TEXT,
    to_status   TEXT NOT NULL,
    actor       TEXT NOT NULL,
    reason      TEXT,
    at          BIGINT NOT NULL
);
CREATE INDEX lifecycle_events_name ON lifecycle_events (name, at);

-- What the catalog search reads: name, title, description, tags and step names, in
-- lower case, matched word by word as prefixes (as SQLite's FTS5 prefix phrases are).
CREATE TABLE runbook_search (
    name TEXT PRIMARY KEY,
    text TEXT NOT NULL
);

CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY,
    hash         TEXT NOT NULL UNIQUE,
    user_name    TEXT NOT NULL,
    roles        TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    revoked_at   BIGINT,
    last_used_at BIGINT
);

CREATE TABLE idempotency_keys (
    actor        TEXT NOT NULL,
    key          TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (actor, key)
);

CREATE TABLE audit_log (
    seq        BIGINT PRIMARY KEY,
    at         BIGINT NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    target     TEXT NOT NULL,
    request_id TEXT NOT NULL,
    details    TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);
CREATE INDEX audit_log_actor ON audit_log (actor, seq);

CREATE TABLE notification_attempts (
    id           BIGSERIAL PRIMARY KEY,
    delivery_id  TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    event        TEXT NOT NULL,
    rule         TEXT NOT NULL,
    attempt      BIGINT NOT NULL,
    status_code  BIGINT,
    error        TEXT,
    at           BIGINT NOT NULL
);
CREATE INDEX notification_attempts_execution ON notification_attempts (execution_id, id);

CREATE TABLE schedules (
    id           TEXT COLLATE "C" PRIMARY KEY,
    runbook      TEXT COLLATE "C" NOT NULL,
    source       TEXT NOT NULL,
    cron         TEXT NOT NULL,
    timezone     TEXT NOT NULL,
    params       TEXT NOT NULL,
    overlap      TEXT NOT NULL,
    missed       TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    next_run_at  BIGINT,
    last_run_at  BIGINT,
    last_result  TEXT
);
CREATE INDEX schedules_due ON schedules (next_run_at);
CREATE INDEX schedules_runbook ON schedules (runbook);

CREATE TABLE web_sessions (
    hash       TEXT PRIMARY KEY,
    token_id   TEXT NOT NULL REFERENCES api_tokens (id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    ended_at   BIGINT
);
CREATE INDEX web_sessions_expiry ON web_sessions (expires_at);

CREATE TABLE execution_secrets (
    execution_id TEXT PRIMARY KEY,
    key_id       TEXT NOT NULL,
    nonce        BYTEA NOT NULL,
    ciphertext   BYTEA NOT NULL,
    created_at   BIGINT NOT NULL
);
