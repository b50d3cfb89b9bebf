-- Version 1 (0015_grants): a grant checked at commit by a deferred trigger of its own row
-- (and an allocation's grant by the allocation's, unless the grant's own fires).
-- At commit: a grant's counters are the sums of its allocations, a scheduled grant's
-- transfer is its pending hold and any other's is posted (or voided, for a grant voided
-- before it took effect), and every allocation that changed the balance is part of an entry
-- of the grant's account on the allocation's transfer, in the right direction, and an entry
-- gives its grants no more than its amount.
CREATE FUNCTION ledger_check_grant(p_grant_id uuid) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    c record;
BEGIN
    -- One statement: the grant, its funding transfer's status, and in one pass over its
    -- allocations (with their entries) the recomputed counters and the first stray one; then
    -- the first of its entries that gives its grants more than its amount.
    SELECT g.id, g.status, g.amount, g.consumed, g.reserved, g.expired, g.voided, g.transfer_id,
           t.status AS funding_status, s.*, o.id AS over_id, o.amount AS over_amount, o.given AS over_given
      INTO c
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
      LEFT JOIN LATERAL (
           SELECT e.id, abs(e.amount) AS amount, sum(a.amount) AS given
             FROM (SELECT DISTINCT entry_id FROM grant_allocation WHERE grant_id = g.id AND entry_id IS NOT NULL) mine
             JOIN entry e ON e.id = mine.entry_id
             JOIN grant_allocation a ON a.entry_id = e.id
            GROUP BY e.id HAVING sum(a.amount) > abs(e.amount) LIMIT 1) o ON true
     WHERE g.id = p_grant_id;
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
    IF c.over_id IS NOT NULL THEN
        RAISE EXCEPTION 'entry % of % gives its grants %', c.over_id, c.over_amount, c.over_given
            USING ERRCODE = 'check_violation';
    END IF;
END;
$$;
CREATE FUNCTION ledger_grant_deferred_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ledger_check_grant(NEW.id);
    RETURN NULL;
END;
$$;
CREATE CONSTRAINT TRIGGER credit_grant_checked AFTER INSERT OR UPDATE ON credit_grant
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_grant_deferred_check();
-- An allocation's grant is checked by the grant's own trigger when this transaction also
-- wrote the grant (every ledger function does: each allocation moves a counter), so each
-- grant is checked once per transaction; an allocation written alone is checked here. (A row
-- written in a subtransaction carries the subtransaction's xid: it is then checked twice.)
CREATE FUNCTION ledger_grant_allocation_deferred_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM credit_grant g
                    WHERE g.id = NEW.grant_id
                      AND g.xmin::text = (pg_current_xact_id()::text::numeric % 4294967296)::text) THEN
        PERFORM ledger_check_grant(NEW.grant_id);
    END IF;
    RETURN NULL;
END;
$$;
CREATE CONSTRAINT TRIGGER grant_allocation_checked AFTER INSERT ON grant_allocation
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_grant_allocation_deferred_check();
