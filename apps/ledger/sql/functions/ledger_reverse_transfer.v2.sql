-- Version 2 (0015_grants): the accounts locked are ledger_lock_accounts' for the original
-- (with the counterparts of the grants it drew from, for restores to a grant that has since
-- expired, and of what is due on its accounts); a transfer that funds a grant, or that a
-- grant's expiry or void booked, is not reversed (409 grant_transfer: a grant is voided
-- instead). Otherwise as version 1.
CREATE OR REPLACE FUNCTION ledger_reverse_transfer(
    p_key text, p_fingerprint text, p_original_id uuid, p_amount bigint, p_description text,
    p_transfer_id uuid, p_entry_ids uuid[], p_event_ids uuid[], p_headers jsonb
) RETURNS json LANGUAGE plpgsql AS $$
DECLARE
    original transfer%ROWTYPE;
    stored json;
    refusal jsonb;
    total numeric;
    remaining numeric;
    requested numeric;
    inverse record;
    outcome json;
    reversed numeric;
    posted_at timestamptz;
BEGIN
    -- Its accounts (as posted, or as held: the same two per posting), then the original.
    PERFORM ledger_lock_accounts('{}', ledger_now(), p_original_id);
    SELECT * INTO original FROM transfer WHERE id = p_original_id FOR UPDATE;
    stored := ledger_idempotent_outcome(p_key, p_fingerprint);
    IF stored IS NOT NULL THEN
        RETURN stored;
    END IF;
    IF original.id IS NULL THEN
        RETURN json_build_object('outcome', 'invalid', 'error',
                                 ledger_error('transfer_not_found', format('No transfer %s.', p_original_id), NULL));
    END IF;
    IF p_amount IS NOT NULL AND original.posting_count > 1 THEN
        RETURN json_build_object('outcome', 'invalid', 'error',
            ledger_error('invalid_request',
                format('Transfer %s has %s postings: it is reversed whole, without an amount.',
                       p_original_id, original.posting_count), 'amount'));
    END IF;

    total := ledger_transfer_total(p_original_id);
    remaining := total - original.reversed_amount;
    requested := coalesce(p_amount, total);
    IF EXISTS (SELECT 1 FROM credit_grant WHERE transfer_id = p_original_id)
       OR EXISTS (SELECT 1 FROM grant_allocation WHERE transfer_id = p_original_id AND kind IN ('expire', 'void')) THEN
        refusal := ledger_error('grant_transfer',
            format('Transfer %s funds a grant or books its expiry or void: it is not reversed; void the grant instead.',
                   p_original_id), NULL);
    ELSIF original.status <> 'posted' THEN
        refusal := ledger_error('transfer_not_posted',
            format('Transfer %s is %s: only a posted transfer can be reversed.', p_original_id, original.status),
            NULL, jsonb_build_object('transferStatus', original.status));
    ELSIF requested > remaining THEN
        refusal := ledger_error('reversal_exceeds_original',
            format('Transfer %s has %s left to reverse; the reversal asks for %s.', p_original_id, remaining, requested),
            'amount', jsonb_build_object('remaining', remaining, 'requested', requested));
    END IF;
    IF refusal IS NOT NULL THEN
        INSERT INTO idempotency_record (key, request_fingerprint, error, created_at)
        VALUES (p_key, p_fingerprint, refusal, now())
        ON CONFLICT (key) DO NOTHING;
        IF NOT FOUND THEN  -- a concurrent request with this key (and another original) got there first
            RETURN ledger_idempotent_outcome(p_key, p_fingerprint);
        END IF;
        RETURN json_build_object('outcome', 'refused', 'error', refusal);
    END IF;

    -- The original's postings, each the other way round, from its debit entries.
    SELECT array_agg(e.counterparty_id ORDER BY e.posting_index) AS from_ids,
           array_agg(e.account_id ORDER BY e.posting_index) AS to_ids,
           array_agg(coalesce(p_amount, -e.amount) ORDER BY e.posting_index) AS amounts,
           array_agg(e.currency ORDER BY e.posting_index) AS currencies
      INTO inverse
      FROM entry e WHERE e.transfer_id = p_original_id AND e.amount < 0;
    outcome := ledger_post_transfer(p_key, p_fingerprint, original.posting_count = 1,
                                    inverse.from_ids, inverse.to_ids, inverse.amounts, inverse.currencies,
                                    '{}'::jsonb, p_description, p_transfer_id, p_entry_ids,
                                    p_event_ids[1:1 + 2 * original.posting_count], p_headers,
                                    false, NULL, p_original_id);
    IF outcome->>'outcome' <> 'posted' THEN
        RETURN outcome;
    END IF;

    UPDATE transfer SET reversed_amount = reversed_amount + requested
     WHERE id = p_original_id RETURNING reversed_amount INTO reversed;
    SELECT created_at INTO posted_at FROM transfer WHERE id = p_transfer_id;
    INSERT INTO outbox_event (event_id, topic, key, event_type, payload, headers, created_at, published_at)
    SELECT r.event_id, r.topic, r.key, r.event_type, r.payload, r.headers, r.created_at, r.published_at
      FROM outbox_event_row(p_event_ids[2 + 2 * original.posting_count], 'TransferReversed', p_original_id::text,
                            posted_at,
                            jsonb_build_object('transferId', p_original_id, 'reversalId', p_transfer_id,
                                               'amount', requested, 'reversedAmount', reversed,
                                               'createdAt', ledger_iso(posted_at)),
                            p_headers) AS r;
    RETURN outcome;
END;
$$;
