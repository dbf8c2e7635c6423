-- One runbook's executions in one status, newest first (the web UI's and the API's
-- filters together): without it, a rare status of a busy runbook scans all its rows.
CREATE INDEX executions_runbook_status ON executions (runbook_name, status, created_at, id);
