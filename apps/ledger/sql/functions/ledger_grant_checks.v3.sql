-- Version 3 (0021_grant_debit_speed): ledger_check_grants makes version 2's checks in one
-- statement that returns only the first grant failing one of them (version 2 read every grant
-- into a PL/pgSQL loop and tested each in turn), and the checks that the foreign keys of
-- grant_allocation made row by row at commit (three per allocation: thirty for a debit that
-- draws from 10 grants): every allocation's grant exists, and its transfer too (through its
-- entry, which must be on that transfer, or directly for a reservation or release, which has
-- none). Grants, transfers and entries are never deleted (their immutability triggers), so
-- what exists at commit stays. The queue (grant_check_queue) is version 2's.

-- At commit: a grant's counters are the sums of its allocations, a scheduled grant's
-- transfer is its pending hold and any other's is posted (or voided, for a grant voided
-- before it took effect), and every allocation that changed the balance is part of an entry
-- of the grant's account on the allocation's transfer, in the right direction, and an entry
-- gives its grants no more than its amount.
CREATE OR REPLACE FUNCTION ledger_check_grants(p_grant_ids uuid[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    c record;
BEGIN
    -- The grants with their funding transfer's status, and in one pass over each one's
    -- allocations (with their entries) the recomputed counters, the first stray one and the
    -- first without its transfer: the first grant in id order that fails a check, if any.
    SELECT q.id, g.id IS NOT NULL AS found, g.status, g.amount, g.consumed, g.reserved, g.expired, g.voided,
           g.transfer_id, t.status AS funding_status, s.*
      INTO c
      FROM unnest(p_grant_ids) AS q(id)
      LEFT JOIN credit_grant g ON g.id = q.id
      LEFT JOIN transfer t ON t.id = g.transfer_id
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
                                           OR (a.kind = 'restore') <> (e.amount > 0))) AS stray_id,
                  min(a.id) FILTER (WHERE a.entry_id IS NULL
                                      AND NOT EXISTS (SELECT 1 FROM transfer x WHERE x.id = a.transfer_id)) AS orphan_id
             FROM grant_allocation a LEFT JOIN entry e ON e.id = a.entry_id
            WHERE a.grant_id = q.id) s
     WHERE g.id IS NULL
        OR (g.consumed, g.reserved, g.expired, g.voided)
           IS DISTINCT FROM (s.sum_consumed, s.sum_reserved, s.sum_expired, s.sum_voided)
        OR NOT (g.status = 'scheduled' AND t.status = 'pending'
                OR g.status = 'voided' AND t.status IN ('voided', 'posted')
                OR g.status NOT IN ('scheduled', 'voided') AND t.status = 'posted')
        OR t.status IS NULL
        OR g.status = 'exhausted' AND g.amount - g.consumed - g.expired - g.voided <> 0
        OR s.stray_id IS NOT NULL
        OR s.orphan_id IS NOT NULL
     ORDER BY q.id
     LIMIT 1;
    IF FOUND THEN
        IF NOT c.found THEN
            RAISE EXCEPTION 'an allocation names grant %, which does not exist', c.id
                USING ERRCODE = 'foreign_key_violation';
        END IF;
        IF (c.consumed, c.reserved, c.expired, c.voided)
           IS DISTINCT FROM (c.sum_consumed, c.sum_reserved, c.sum_expired, c.sum_voided) THEN
            RAISE EXCEPTION 'grant % counters (consumed %, reserved %, expired %, voided %) disagree with its allocations (%, %, %, %)',
                c.id, c.consumed, c.reserved, c.expired, c.voided, c.sum_consumed, c.sum_reserved, c.sum_expired,
                c.sum_voided USING ERRCODE = 'check_violation';
        END IF;
        IF c.funding_status IS NULL
           OR NOT (c.status = 'scheduled' AND c.funding_status = 'pending'
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
        RAISE EXCEPTION 'allocation % of grant % names transfer %, which does not exist', c.orphan_id, c.id,
            (SELECT a.transfer_id FROM grant_allocation a WHERE a.id = c.orphan_id)
            USING ERRCODE = 'foreign_key_violation';
    END IF;
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
