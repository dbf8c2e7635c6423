-- Browser sessions of the web UI: kept in the database, not in one server's memory,
-- so any API node honours them and a sign-out or token revocation ends them everywhere.
CREATE TABLE web_sessions (
    hash       TEXT PRIMARY KEY,
    token_id   TEXT NOT NULL REFERENCES api_tokens (id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    ended_at   BIGINT
);

CREATE INDEX web_sessions_expiry ON web_sessions (expires_at);
