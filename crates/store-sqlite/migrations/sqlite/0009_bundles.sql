-- Runbook bundles: the files a runbook uses, content-addressed (SHA-256 of the
-- canonical encoding), published with a version and part of it.
CREATE TABLE bundles (
    sha256     TEXT PRIMARY KEY,
    content    BLOB NOT NULL,
    size       BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

ALTER TABLE registry_versions ADD COLUMN bundle_sha256 TEXT REFERENCES bundles (sha256);
