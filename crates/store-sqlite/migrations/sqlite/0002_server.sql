-- opsbook schema v2: the server's registry, queue, tokens and audit trail.

-- One row per runbook name: its lifecycle and newest published version.
CREATE TABLE runbooks (
    name            TEXT PRIMARY KEY,
    status          TEXT NOT NULL,          -- draft | active | deprecated | archived
    latest_version  TEXT NOT NULL,
    latest_sha256   TEXT NOT NULL,
    title           TEXT NOT NULL,
    description     TEXT,
    runbook_type    TEXT NOT NULL,
    owner           TEXT,
    tags            TEXT NOT NULL,          -- JSON array
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

-- Published versions are immutable.
CREATE TABLE registry_versions (
    name          TEXT NOT NULL,
    version       TEXT NOT NULL,
    sha256        TEXT NOT NULL REFERENCES runbook_versions (sha256),
    published_by  TEXT NOT NULL,
    published_at  BIGINT NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE TABLE lifecycle_events (
    name        TEXT NOT NULL,
    from_status TEXT,
    to_status   TEXT NOT NULL,
    actor       TEXT NOT NULL,
    reason      TEXT,
    at          BIGINT NOT NULL
);
CREATE INDEX lifecycle_events_name ON lifecycle_events (name, at);

CREATE VIRTUAL TABLE runbook_search USING fts5 (name, title, description, tags, steps);

CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY,
    hash         TEXT NOT NULL UNIQUE,     -- SHA-256 of the secret, hex
    user_name    TEXT NOT NULL,
    roles        TEXT NOT NULL,            -- JSON array
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

-- Append only; each record's hash covers the previous record's hash.
CREATE TABLE audit_log (
    seq        INTEGER PRIMARY KEY,
    at         BIGINT NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    target     TEXT NOT NULL,
    request_id TEXT NOT NULL,
    details    TEXT NOT NULL,              -- JSON, secrets masked
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);
CREATE INDEX audit_log_actor ON audit_log (actor, seq);

CREATE INDEX executions_actor ON executions (actor, created_at);
CREATE INDEX executions_queue ON executions (status, created_at, id);
