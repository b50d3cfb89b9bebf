-- Version 2 (0017_checks_and_plans): the same checks, made once per transaction for every grant
-- it wrote, in one statement, instead of once per grant row (a debit drawing from 10 grants
-- ran 10 checks and 20 deferred triggers). Each statement that writes grants or allocations
-- queues the grants it touched (grant_check_queue, one row per statement, kept only until
-- commit); the queue's deferred trigger checks everything queued in the transaction the
-- first time it fires and empties the queue, so the others find nothing left to do. Rolled
-- back with a subtransaction, a queued row goes with the writes it stood for.

-- At commit: a grant's counters are the sums of its allocations, a scheduled grant's
-- transfer is its pending hold and any other's is posted (or voided, for a grant voided
-- before it took effect), and every allocation that changed the balance is part of an entry
-- of the grant's account on the allocation's transfer, in the right direction, and an entry
-- gives its grants no more than its amount.
CREATE FUNCTION ledger_check_grants(p_grant_ids uuid[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    c record;
BEGIN
    -- The grants with their funding transfer's status, and in one pass over each one's
    -- allocations (with their entries) the recomputed counters and the first stray one.
    FOR c IN
        SELECT g.id, g.status, g.amount, g.consumed, g.reserved, g.expired, g.voided, g.transfer_id,
               t.status AS funding_status, s.*
          FROM credit_grant g
          JOIN transfer t ON t.id = g.transfer_id
         CROSS JOIN LATERAL (
               SELECT coalesce(sum(a.amount) FILTER (WHERE a.kind IN ('draw', 'post')), 0)
                        - coalesce(sum(a.amount) FILTER (WHERE a.kind = 'restore'), 0) AS sum_consumed,
                      coalesce(sum(a.amount) FILTER (WHERE a.kind = 'reserve'), 0)
                        - coalesce(sum(a.amount) FILTER (WHERE a.kind IN ('post', 'release')), 0) AS sum_reserved,
                      coalesce(sum(a.amount) FILTER (WHERE a.kind = 'expire'), 0) AS sum_expired,
                      coalesce(sum(a.amount) FILTER (WHERE a.kind = 'void'), 0) AS sum_voided,
                      min(a.id) FILTER (WHERE a.entry_id IS NOT NULL
                                          AND (e.account_id IS DISTINCT FROM g.account_id
                                               OR e.transfer_id IS DISTINCT FROM a.transfer_id
                                               OR (a.kind = 'restore') <> (e.amount > 0))) AS stray_id
                 FROM grant_allocation a LEFT JOIN entry e ON e.id = a.entry_id
                WHERE a.grant_id = g.id) s
         WHERE g.id = ANY (p_grant_ids)
         ORDER BY g.id
    LOOP
        IF (c.consumed, c.reserved, c.expired, c.voided)
           IS DISTINCT FROM (c.sum_consumed, c.sum_reserved, c.sum_expired, c.sum_voided) THEN
            RAISE EXCEPTION 'grant % counters (consumed %, reserved %, expired %, voided %) disagree with its allocations (%, %, %, %)',
                c.id, c.consumed, c.reserved, c.expired, c.voided, c.sum_consumed, c.sum_reserved, c.sum_expired,
                c.sum_voided USING ERRCODE = 'check_violation';
        END IF;
        IF NOT (c.status = 'scheduled' AND c.funding_status = 'pending'
                OR c.status = 'voided' AND c.funding_status IN ('voided', 'posted')
                OR c.status NOT IN ('scheduled', 'voided') AND c.funding_status = 'posted') THEN
            RAISE EXCEPTION 'grant % is % but its transfer % is %', c.id, c.status, c.transfer_id, c.funding_status
                USING ERRCODE = 'check_violation';
        END IF;
        IF c.status = 'exhausted' AND c.amount - c.consumed - c.expired - c.voided <> 0 THEN
            RAISE EXCEPTION 'grant % is exhausted with % left', c.id, c.amount - c.consumed - c.expired - c.voided
                USING ERRCODE = 'check_violation';
        END IF;
        IF c.stray_id IS NOT NULL THEN
            RAISE EXCEPTION 'allocation % of grant % is not an entry of its account on its transfer, in its direction',
                c.stray_id, c.id USING ERRCODE = 'check_violation';
        END IF;
    END LOOP;
    -- Each entry these grants drew from (or were restored by) once, however many of them it
    -- touched: the first that gives its grants more than its amount.
    SELECT e.id, abs(e.amount) AS amount, sum(a.amount) AS given INTO c
      FROM (SELECT DISTINCT entry_id FROM grant_allocation
             WHERE grant_id = ANY (p_grant_ids) AND entry_id IS NOT NULL) mine
      JOIN entry e ON e.id = mine.entry_id
      JOIN grant_allocation a ON a.entry_id = e.id
     GROUP BY e.id HAVING sum(a.amount) > abs(e.amount)
     ORDER BY e.id LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'entry % of % gives its grants %', c.id, c.amount, c.given USING ERRCODE = 'check_violation';
    END IF;
END;
$$;

-- Unlogged: a row lives only inside the transaction that wrote it.
CREATE UNLOGGED TABLE grant_check_queue (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transaction_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
    grant_ids uuid[] NOT NULL
);
CREATE INDEX grant_check_queue_transaction ON grant_check_queue (transaction_id);

CREATE FUNCTION ledger_grants_written() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO grant_check_queue (grant_ids) SELECT array_agg(DISTINCT w.id) FROM written w HAVING count(*) > 0;
    RETURN NULL;
END;
$$;
CREATE FUNCTION ledger_grant_allocations_written() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO grant_check_queue (grant_ids) SELECT array_agg(DISTINCT w.grant_id) FROM written w HAVING count(*) > 0;
    RETURN NULL;
END;
$$;
-- A trigger with a transition table takes one event: inserts and updates of grants each have theirs.
CREATE TRIGGER credit_grant_inserted AFTER INSERT ON credit_grant
    REFERENCING NEW TABLE AS written FOR EACH STATEMENT EXECUTE FUNCTION ledger_grants_written();
CREATE TRIGGER credit_grant_updated AFTER UPDATE ON credit_grant
    REFERENCING NEW TABLE AS written FOR EACH STATEMENT EXECUTE FUNCTION ledger_grants_written();
CREATE TRIGGER grant_allocation_inserted AFTER INSERT ON grant_allocation
    REFERENCING NEW TABLE AS written FOR EACH STATEMENT EXECUTE FUNCTION ledger_grant_allocations_written();

CREATE FUNCTION ledger_grant_queue_deferred_check() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    queued uuid[];
BEGIN
    WITH taken AS (DELETE FROM grant_check_queue WHERE transaction_id = pg_current_xact_id() RETURNING grant_ids)
    SELECT array_agg(DISTINCT g) INTO queued FROM taken, unnest(taken.grant_ids) AS g;
    IF queued IS NOT NULL THEN
        PERFORM ledger_check_grants(queued);
    END IF;
    RETURN NULL;
END;
$$;
CREATE CONSTRAINT TRIGGER grant_check_queue_checked AFTER INSERT ON grant_check_queue
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_grant_queue_deferred_check();
