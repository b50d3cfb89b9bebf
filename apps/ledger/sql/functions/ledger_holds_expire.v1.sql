-- Version 1 (0011_holds).
-- The expiry task: release up to p_limit holds past their expiry, oldest expiry first, each as
-- 'expired' with the event id p_event_ids[i]. A hold whose accounts another transaction has
-- locked (it may be posting or voiding it) is skipped (SKIP LOCKED), for the next run.
-- Returns how many it expired.
CREATE FUNCTION ledger_holds_expire(p_limit integer, p_event_ids uuid[], p_headers jsonb)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    candidate uuid;
    wanted integer;
    locked integer;
    expired integer := 0;
    acted_at timestamptz;
BEGIN
    FOR candidate IN
        SELECT id FROM transfer WHERE status = 'pending' AND expires_at <= clock_timestamp()
         ORDER BY expires_at LIMIT p_limit
    LOOP
        SELECT count(*) INTO wanted FROM (SELECT from_account_id FROM transfer_hold WHERE transfer_id = candidate
                                          UNION SELECT to_account_id FROM transfer_hold WHERE transfer_id = candidate) x;
        SELECT count(*) INTO locked FROM (
            SELECT 1 FROM account
             WHERE id IN (SELECT from_account_id FROM transfer_hold WHERE transfer_id = candidate
                          UNION SELECT to_account_id FROM transfer_hold WHERE transfer_id = candidate)
             ORDER BY id FOR UPDATE SKIP LOCKED) x;
        CONTINUE WHEN locked < wanted;
        PERFORM 1 FROM transfer WHERE id = candidate AND status = 'pending' FOR UPDATE;
        CONTINUE WHEN NOT FOUND;
        acted_at := clock_timestamp();
        expired := expired + 1;
        PERFORM ledger_hold_release(candidate, 'expired', p_event_ids[expired], p_headers, acted_at);
    END LOOP;
    RETURN expired;
END;
$$;
