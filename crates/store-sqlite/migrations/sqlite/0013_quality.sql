-- Manual steps: a confirmation is a decision on a step like an approval (`confirmed` or
-- `declined`), and a manual rollback is decided apart from its step, so the phase is part
-- of the key.
CREATE TABLE approvals_new (
    execution_id TEXT NOT NULL REFERENCES executions (id),
    step_id      TEXT NOT NULL,
    approver     TEXT NOT NULL,
    decision     TEXT NOT NULL,            -- approved | rejected | confirmed | declined
    comment      TEXT,
    created_at   BIGINT NOT NULL,
    phase        TEXT NOT NULL DEFAULT 'step',
    PRIMARY KEY (execution_id, step_id, phase, approver)
);
INSERT INTO approvals_new (execution_id, step_id, approver, decision, comment, created_at)
    SELECT execution_id, step_id, approver, decision, comment, created_at FROM approvals;
DROP TABLE approvals;
ALTER TABLE approvals_new RENAME TO approvals;

-- Who reviewed which version of a runbook, when, and what they noted.
CREATE TABLE runbook_reviews (
    name        TEXT NOT NULL,
    version     TEXT NOT NULL,
    reviewer    TEXT NOT NULL,
    note        TEXT NOT NULL,
    at          BIGINT NOT NULL
);
CREATE INDEX runbook_reviews_name ON runbook_reviews (name, at);

-- A rating (1-5) and comment per person per finished execution; given again, replaced.
CREATE TABLE execution_feedback (
    execution_id TEXT NOT NULL REFERENCES executions (id),
    user_name    TEXT NOT NULL,
    rating       INTEGER NOT NULL,
    comment      TEXT,
    at           BIGINT NOT NULL,
    PRIMARY KEY (execution_id, user_name)
);
