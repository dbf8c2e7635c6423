-- Manual steps: a confirmation is a decision on a step like an approval (`confirmed` or
-- `declined`), and a manual rollback is decided apart from its step, so the phase is part
-- of the key.
ALTER TABLE approvals ADD COLUMN phase TEXT NOT NULL DEFAULT 'step';
ALTER TABLE approvals DROP CONSTRAINT approvals_pkey;
ALTER TABLE approvals ADD PRIMARY KEY (execution_id, step_id, phase, approver);

-- Who reviewed which version of a runbook, when, and what they noted.
CREATE TABLE runbook_reviews (
    name        TEXT COLLATE "C" NOT NULL,
    version     TEXT NOT NULL,
    reviewer    TEXT NOT NULL,
    note        TEXT NOT NULL,
    at          BIGINT NOT NULL
);
CREATE INDEX runbook_reviews_name ON runbook_reviews (name, at);

-- A rating (1-5) and comment per person per finished execution; given again, replaced.
CREATE TABLE execution_feedback (
    execution_id TEXT COLLATE "C" NOT NULL REFERENCES executions (id),
    user_name    TEXT NOT NULL,
    rating       INTEGER NOT NULL,
    comment      TEXT,
    at           BIGINT NOT NULL,
    PRIMARY KEY (execution_id, user_name)
);
