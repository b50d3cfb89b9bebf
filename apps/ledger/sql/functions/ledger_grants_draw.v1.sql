-- Version 1 (0015_grants). Draw p_amount from account p_account_id's grants in burn order
-- (priority, then the soonest expiry with never-expiring grants last, then creation), as
-- allocations of p_kind ('draw' for a posted debit, with its entry; 'reserve' for a hold) by
-- transfer p_transfer_id. Only grants usable at p_at count: active, in effect, not past their
-- expiry (even if the expiry is not booked yet). Returns what the grants gave; the rest of the
-- debit is the account's unrestricted balance's. The caller holds the account's lock, which
-- every writer of a grant takes first, so the grants read here stay as read. The grants are
-- read in burn order from the index credit_grant_burn_order and only as far as needed; the
-- allocations and the counters are then written in one statement each.
CREATE OR REPLACE FUNCTION ledger_grants_draw(
    p_account_id uuid, p_amount bigint, p_kind text, p_transfer_id uuid, p_entry_id uuid, p_at timestamptz
) RETURNS bigint LANGUAGE plpgsql
-- The planner sorts all of an account's active grants when it thinks few of them qualify; the
-- loop stops after the few it needs, which only the index's order lets it read alone.
SET enable_sort = off AS $$
DECLARE
    g record;
    wanted bigint := p_amount;
    taken bigint;
    grant_ids uuid[] := '{}';
    amounts bigint[] := '{}';
BEGIN
    FOR g IN
        SELECT id, amount - consumed - reserved - expired - voided AS free FROM credit_grant
         WHERE account_id = p_account_id AND status = 'active' AND effective_at <= p_at
           AND (expires_at IS NULL OR expires_at > p_at)
           AND amount - consumed - reserved - expired - voided > 0
         ORDER BY priority, expires_at NULLS LAST, created_at, id
    LOOP
        taken := least(wanted, g.free);
        grant_ids := grant_ids || g.id;
        amounts := amounts || taken;
        wanted := wanted - taken;
        EXIT WHEN wanted = 0;
    END LOOP;
    IF cardinality(grant_ids) = 0 THEN
        RETURN 0;
    END IF;
    INSERT INTO grant_allocation (grant_id, transfer_id, entry_id, kind, amount, created_at)
    SELECT d.grant_id, p_transfer_id, p_entry_id, p_kind, d.amount, p_at
      FROM unnest(grant_ids, amounts) WITH ORDINALITY AS d(grant_id, amount, n)
     ORDER BY d.n;
    UPDATE credit_grant AS c
       SET consumed = c.consumed + CASE WHEN p_kind = 'draw' THEN d.amount ELSE 0 END,
           reserved = c.reserved + CASE WHEN p_kind = 'reserve' THEN d.amount ELSE 0 END,
           status = CASE WHEN p_kind = 'draw' AND c.amount - c.consumed - d.amount - c.expired - c.voided = 0
                         THEN 'exhausted' ELSE c.status END,
           updated_at = p_at
      FROM unnest(grant_ids, amounts) AS d(grant_id, amount)
     WHERE c.id = d.grant_id;
    RETURN p_amount - wanted;
END;
$$;
