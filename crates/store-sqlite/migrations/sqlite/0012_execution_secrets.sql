-- The secret parameters of unfinished executions, sealed by the server (AES-256-GCM,
-- the execution id as associated data): a worker in another process, or the server after
-- a restart, can open them; the database alone cannot. Deleted when the execution ends.
CREATE TABLE execution_secrets (
    execution_id TEXT PRIMARY KEY,
    key_id       TEXT NOT NULL,
    nonce        BLOB NOT NULL,
    ciphertext   BLOB NOT NULL,
    created_at   BIGINT NOT NULL
);
