-- Appending to the audit chain in one statement. The append must read the last record
-- and write the next under a lock; done from the client, the lock was held across four
-- round trips, and concurrent submissions queued behind it (tens of ms each under load).
-- Here the lock is held for the function's run and released by the statement's commit.
-- The hash is opsbook_store::audit_hash, byte for byte: SHA-256 over the previous hash,
-- the sequence number, the time, actor, action, target and request id, each followed by
-- a NUL, then the details' JSON text. The caller checks it against its own computation.
CREATE FUNCTION opsbook_append_audit(
    p_lock BIGINT, p_at BIGINT, p_actor TEXT, p_action TEXT, p_target TEXT, p_request_id TEXT, p_details TEXT
) RETURNS TABLE (o_seq BIGINT, o_prev TEXT, o_hash TEXT) LANGUAGE plpgsql AS $$
DECLARE
    nul CONSTANT BYTEA := '\x00'::BYTEA;
    v_seq BIGINT;
    v_prev TEXT;
    v_hash TEXT;
BEGIN
    PERFORM pg_advisory_xact_lock(p_lock);
    -- A new snapshot for this statement (READ COMMITTED): the last record as of now.
    SELECT a.seq + 1, a.hash INTO v_seq, v_prev FROM audit_log a ORDER BY a.seq DESC LIMIT 1;
    IF NOT FOUND THEN
        v_seq := 1;
        v_prev := '';
    END IF;
    v_hash := encode(sha256(
        convert_to(v_prev, 'UTF8') || nul || convert_to(v_seq::TEXT, 'UTF8') || nul
        || convert_to(p_at::TEXT, 'UTF8') || nul || convert_to(p_actor, 'UTF8') || nul
        || convert_to(p_action, 'UTF8') || nul || convert_to(p_target, 'UTF8') || nul
        || convert_to(p_request_id, 'UTF8') || nul || convert_to(p_details, 'UTF8')
    ), 'hex');
    INSERT INTO audit_log (seq, at, actor, action, target, request_id, details, prev_hash, hash)
        VALUES (v_seq, p_at, p_actor, p_action, p_target, p_request_id, p_details, v_prev, v_hash);
    RETURN QUERY SELECT v_seq, v_prev, v_hash;
END
$$;

-- Aborts the statement it is called in, with `message` (SQLSTATE P0002, no_data_found):
-- a one-statement write whose parts did not all apply writes nothing.
CREATE FUNCTION opsbook_fail(message TEXT) RETURNS BIGINT LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'P0002', MESSAGE = message;
END
$$;
