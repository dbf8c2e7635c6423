-- opsbook schema v3: every notification delivery attempt.
CREATE TABLE notification_attempts (
    id           INTEGER PRIMARY KEY,
    delivery_id  TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    event        TEXT NOT NULL,
    rule         TEXT NOT NULL,            -- the rule's name
    attempt      INTEGER NOT NULL,
    status_code  INTEGER,
    error        TEXT,
    at           BIGINT NOT NULL
);
CREATE INDEX notification_attempts_execution ON notification_attempts (execution_id, id);
