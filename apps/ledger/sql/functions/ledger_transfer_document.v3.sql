-- Version 3 (0011_reversals): reversalOf (the transfer this one reverses, or null) and
-- reversedAmount (how much of it reversals have moved back, 0 if none). Otherwise as version
-- 2: from, to, amount and currency are those of a transfer with one posting, null for
-- several; the entries come posting by posting, each debit first.
CREATE OR REPLACE FUNCTION ledger_transfer_document(p_transfer_id uuid) RETURNS json LANGUAGE sql STABLE AS $$
    SELECT json_build_object(
        'transferId', t.id, 'from', t.from_account_id, 'to', t.to_account_id, 'amount', t.amount,
        'currency', t.currency, 'status', t.status, 'idempotencyKey', t.idempotency_key, 'metadata', t.metadata,
        'description', t.description, 'reversalOf', t.reversal_of, 'reversedAmount', t.reversed_amount,
        'createdAt', ledger_iso(t.created_at),
        'postings', (SELECT json_agg(json_build_object('from', e.account_id, 'to', e.counterparty_id,
                                                       'amount', -e.amount, 'currency', e.currency)
                                     ORDER BY e.posting_index)
                       FROM entry e WHERE e.transfer_id = t.id AND e.amount < 0),
        'entries', (SELECT json_agg(json_build_object('entryId', e.id, 'accountId', e.account_id, 'amount', e.amount,
                                                      'sequence', e.sequence, 'balanceAfter', e.balance_after)
                                    ORDER BY e.posting_index, e.amount)
                      FROM entry e WHERE e.transfer_id = t.id))
      FROM transfer t WHERE t.id = p_transfer_id
$$;
