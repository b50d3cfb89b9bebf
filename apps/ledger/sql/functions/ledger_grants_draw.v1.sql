-- Version 1 (0015_grants). Draw p_amount from account p_account_id's grants in burn order
-- (priority, then the soonest expiry with never-expiring grants last, then creation), as
-- allocations of p_kind ('draw' for a posted debit, with its entry; 'reserve' for a hold) by
-- transfer p_transfer_id. Only grants usable at p_at count: active, in effect, not past their
-- expiry (even if the expiry is not booked yet). Returns what the grants gave; the rest of the
-- debit is the account's unrestricted balance's. The caller holds the account's lock, which
-- every writer of a grant takes first, so the grants read here stay as read.
CREATE OR REPLACE FUNCTION ledger_grants_draw(
    p_account_id uuid, p_amount bigint, p_kind text, p_transfer_id uuid, p_entry_id uuid, p_at timestamptz
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    g credit_grant%ROWTYPE;
    wanted bigint := p_amount;
    taken bigint;
BEGIN
    FOR g IN
        SELECT * FROM credit_grant
         WHERE account_id = p_account_id AND status = 'active' AND effective_at <= p_at
           AND (expires_at IS NULL OR expires_at > p_at)
           AND amount - consumed - reserved - expired - voided > 0
         ORDER BY priority, expires_at NULLS LAST, created_at, id
    LOOP
        EXIT WHEN wanted = 0;
        taken := least(wanted, g.amount - g.consumed - g.reserved - g.expired - g.voided);
        INSERT INTO grant_allocation (grant_id, transfer_id, entry_id, kind, amount, created_at)
        VALUES (g.id, p_transfer_id, p_entry_id, p_kind, taken, p_at);
        UPDATE credit_grant
           SET consumed = consumed + CASE WHEN p_kind = 'draw' THEN taken ELSE 0 END,
               reserved = reserved + CASE WHEN p_kind = 'reserve' THEN taken ELSE 0 END,
               status = CASE WHEN p_kind = 'draw' AND amount - consumed - taken - expired - voided = 0
                             THEN 'exhausted' ELSE status END,
               updated_at = p_at
         WHERE id = g.id;
        wanted := wanted - taken;
    END LOOP;
    RETURN p_amount - wanted;
END;
$$;
