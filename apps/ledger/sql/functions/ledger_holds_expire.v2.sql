-- Version 2 (0015_grants): the ledger's clock; each hold's accounts are those of
-- ledger_lock_set (with the counterparts of the grants it reserved from and of what is due on
-- its accounts), all locked or skipped; the hold expires with its grant reservations
-- (ledger_hold_expire), and what else is due on those accounts is booked too. Otherwise as
-- version 1.
CREATE FUNCTION ledger_holds_expire(p_limit integer, p_event_ids uuid[], p_headers jsonb)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    candidate uuid;
    wanted uuid[];
    locked integer;
    expired integer := 0;
    acted_at timestamptz;
BEGIN
    FOR candidate IN
        SELECT id FROM transfer WHERE status = 'pending' AND expires_at <= ledger_now()
         ORDER BY expires_at LIMIT p_limit
    LOOP
        wanted := ledger_lock_set('{}', ledger_now(), candidate);
        SELECT count(*) INTO locked FROM (
            SELECT 1 FROM account WHERE id = ANY (wanted) ORDER BY id FOR UPDATE SKIP LOCKED) x;
        CONTINUE WHEN locked < cardinality(wanted);
        PERFORM 1 FROM transfer WHERE id = candidate AND status = 'pending' FOR UPDATE;
        CONTINUE WHEN NOT FOUND;
        acted_at := ledger_now();
        expired := expired + 1;
        PERFORM ledger_hold_expire(candidate, p_event_ids[expired], acted_at, p_headers);
        PERFORM ledger_book_due(wanted, acted_at, p_headers);
    END LOOP;
    RETURN expired;
END;
$$;
