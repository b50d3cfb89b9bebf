-- Version 5 (0025_sql_function_plans): the same query in PL/pgSQL, which keeps its plan for the
-- session. Before PostgreSQL 18 a SQL function that is not inlined is parsed and planned at
-- every call: about 1.1 ms of the 8.7 ms of backend CPU of a posted debit drawing from 10
-- grants on PostgreSQL 15 (benchmarks/README.md, h). Otherwise as version 4.
CREATE OR REPLACE FUNCTION ledger_transfer_document(p_transfer_id uuid) RETURNS json LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT json_build_object(
        'transferId', t.id, 'from', t.from_account_id, 'to', t.to_account_id,
        'amount', CASE WHEN t.posting_count = 1
                       THEN coalesce((SELECT -e.amount FROM entry e WHERE e.transfer_id = t.id AND e.amount < 0), t.amount)
                  END,
        'currency', t.currency, 'status', t.status, 'idempotencyKey', t.idempotency_key, 'metadata', t.metadata,
        'description', t.description, 'reversalOf', t.reversal_of, 'reversedAmount', t.reversed_amount,
        'createdAt', ledger_iso(t.created_at),
        'expiresAt', ledger_iso(t.expires_at),
        'held', (SELECT json_agg(json_build_object('from', h.from_account_id, 'to', h.to_account_id,
                                                   'amount', h.amount, 'currency', h.currency)
                                 ORDER BY h.posting_index)
                   FROM transfer_hold h WHERE h.transfer_id = t.id),
        'postings', coalesce(
            (SELECT json_agg(json_build_object('from', e.account_id, 'to', e.counterparty_id,
                                               'amount', -e.amount, 'currency', e.currency)
                             ORDER BY e.posting_index)
               FROM entry e WHERE e.transfer_id = t.id AND e.amount < 0),
            (SELECT json_agg(json_build_object('from', h.from_account_id, 'to', h.to_account_id,
                                               'amount', h.amount, 'currency', h.currency)
                             ORDER BY h.posting_index)
               FROM transfer_hold h WHERE h.transfer_id = t.id)),
        'entries', coalesce((SELECT json_agg(json_build_object('entryId', e.id, 'accountId', e.account_id,
                                                               'amount', e.amount, 'sequence', e.sequence,
                                                               'balanceAfter', e.balance_after)
                                             ORDER BY e.posting_index, e.amount)
                               FROM entry e WHERE e.transfer_id = t.id), '[]'::json))
      FROM transfer t WHERE t.id = p_transfer_id);
END;
$$;
