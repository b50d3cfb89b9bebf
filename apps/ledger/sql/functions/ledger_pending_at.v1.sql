-- What an account's holds kept pending at an instant, as debits and credits: the holds placed by
-- then and not yet expired, voided or posted (a posted hold's entries carry the time it was
-- posted), nor funding a grant that had taken effect (ledger_balance_at counts that grant from
-- its time). PL/pgSQL, so that its statement's plan is kept by the session (a point-in-time
-- balance is a hot read) instead of being planned with each request's.
CREATE FUNCTION ledger_pending_at(p_account_id uuid, p_at timestamptz, OUT debits bigint, OUT credits bigint)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    SELECT coalesce(sum(h.amount) FILTER (WHERE h.from_account_id = p_account_id), 0),
           coalesce(sum(h.amount) FILTER (WHERE h.to_account_id = p_account_id), 0)
      INTO debits, credits
      FROM transfer_hold h JOIN transfer t ON t.id = h.transfer_id
     WHERE (h.from_account_id = p_account_id OR h.to_account_id = p_account_id)
       AND t.created_at <= p_at AND (h.expires_at IS NULL OR h.expires_at > p_at)
       AND NOT (t.status = 'voided' AND t.updated_at <= p_at)
       AND NOT EXISTS (SELECT 1 FROM entry e WHERE e.transfer_id = t.id AND e.created_at <= p_at)
       AND NOT EXISTS (SELECT 1 FROM credit_grant g WHERE g.transfer_id = t.id AND g.effective_at <= p_at);
END
$$;
