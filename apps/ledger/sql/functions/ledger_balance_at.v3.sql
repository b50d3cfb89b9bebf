-- The posted balance of an account at an instant, as version 2, in PL/pgSQL: a session keeps the
-- plans of its statements, where PostgreSQL before 18 planned a SQL function's body at each
-- query that called it (a point-in-time balance is a hot read).
CREATE OR REPLACE FUNCTION ledger_balance_at(p_account_id uuid, p_at timestamptz) RETURNS bigint LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN coalesce((SELECT e.balance_after FROM entry e WHERE e.account_id = p_account_id AND e.created_at <= p_at
                      ORDER BY e.created_at DESC, e.sequence DESC LIMIT 1), 0)
         + coalesce((SELECT sum(e.amount) FROM credit_grant g
                       JOIN entry e ON e.transfer_id = g.transfer_id AND e.account_id = g.account_id
                      WHERE g.account_id = p_account_id AND g.effective_at <= p_at AND e.created_at > p_at
                        AND EXISTS (SELECT 1 FROM transfer_hold h WHERE h.transfer_id = g.transfer_id)), 0)
         + coalesce((SELECT sum(e.amount) FROM credit_grant g
                       JOIN grant_allocation a ON a.grant_id = g.id AND a.kind = 'expire'
                       JOIN entry e ON e.id = a.entry_id
                       JOIN transfer t ON t.id = a.transfer_id
                      WHERE g.account_id = p_account_id AND e.created_at > p_at
                        AND (t.metadata->>'effectiveAt')::timestamptz <= p_at), 0)
         + (ledger_grants_unbooked(p_account_id, p_at)).balance;
END
$$;
