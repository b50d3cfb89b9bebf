-- Version 1 (0004_post_transfer): one posting, its columns on the transfer.
CREATE OR REPLACE FUNCTION ledger_transfer_document(p_transfer_id uuid) RETURNS json LANGUAGE sql STABLE AS $$
    SELECT json_build_object(
        'transferId', t.id, 'from', t.from_account_id, 'to', t.to_account_id, 'amount', t.amount,
        'currency', t.currency, 'status', t.status, 'idempotencyKey', t.idempotency_key, 'metadata', t.metadata,
        'createdAt', ledger_iso(t.created_at),
        'entries', (SELECT json_agg(json_build_object('entryId', e.id, 'accountId', e.account_id, 'amount', e.amount,
                                                      'sequence', e.sequence, 'balanceAfter', e.balance_after)
                                    ORDER BY e.amount)
                      FROM entry e WHERE e.transfer_id = t.id))
      FROM transfer t WHERE t.id = p_transfer_id
$$;
