-- Version 2 (0015_grants): the ledger's clock (ledger_now); the accounts locked are
-- ledger_lock_accounts' for the hold (with the counterparts of the grants it reserved from,
-- and of what is due on its accounts, which is booked first, this hold's expiry included);
-- a void releases the hold's grant reservations, a post consumes them (ledger_grants_consume)
-- and its EntryPosted events carry them (`allocations`);
-- the transfer that funds a scheduled grant is refused (409 grant_transfer: the grant's
-- schedule and void move it). Otherwise as version 1.
CREATE OR REPLACE FUNCTION ledger_hold_command(
    p_key text, p_fingerprint text, p_command text, p_transfer_id uuid, p_amount bigint,
    p_entry_ids uuid[], p_event_ids uuid[], p_headers jsonb
) RETURNS json LANGUAGE plpgsql AS $$
DECLARE
    rec idempotency_record%ROWTYPE;
    t transfer%ROWTYPE;
    refusal jsonb;
    acted_at timestamptz;
    postings record;
    locked uuid[];
BEGIN
    SELECT * INTO t FROM transfer WHERE id = p_transfer_id;
    IF NOT FOUND THEN
        RETURN json_build_object('outcome', 'invalid',
            'error', ledger_error('transfer_not_found', format('No transfer %s.', p_transfer_id), NULL));
    END IF;
    IF p_amount IS NOT NULL AND t.posting_count > 1 THEN
        RETURN json_build_object('outcome', 'invalid',
            'error', ledger_error('invalid_request',
                'amount posts part of a hold of one posting only; a hold of several postings posts whole.', 'amount'));
    END IF;
    INSERT INTO idempotency_record (key, request_fingerprint, command, created_at)
    VALUES (p_key, p_fingerprint, p_command, now())
    ON CONFLICT (key) DO NOTHING;
    IF NOT FOUND THEN
        SELECT * INTO rec FROM idempotency_record WHERE key = p_key;
        IF rec.request_fingerprint <> p_fingerprint THEN
            RETURN json_build_object('outcome', 'conflict');
        ELSIF rec.transfer_id IS NOT NULL THEN
            RETURN json_build_object('outcome', 'replayed', 'transfer', ledger_transfer_document(rec.transfer_id));
        END IF;
        RETURN json_build_object('outcome', 'replayed', 'error', rec.error);
    END IF;

    -- The hold's accounts, then the transfer: the order every writer of a hold takes.
    locked := ledger_lock_accounts('{}', ledger_now(), p_transfer_id);
    acted_at := ledger_now();
    SELECT * INTO t FROM transfer WHERE id = p_transfer_id FOR UPDATE;
    IF t.status = 'pending' AND t.expires_at <= acted_at THEN
        PERFORM ledger_hold_expire(p_transfer_id, p_event_ids[1], acted_at, p_headers);
        t.status := 'expired';
    END IF;
    PERFORM ledger_book_due(locked, acted_at, p_headers);
    IF EXISTS (SELECT 1 FROM credit_grant WHERE transfer_id = p_transfer_id) THEN
        refusal := ledger_error('grant_transfer',
            format('Transfer %s funds grant %s: the grant''s schedule posts it, and POST /grants/%s/void voids it.',
                   t.id, (SELECT id FROM credit_grant WHERE transfer_id = p_transfer_id),
                   (SELECT id FROM credit_grant WHERE transfer_id = p_transfer_id)), NULL);
    ELSIF t.status <> 'pending' THEN
        refusal := ledger_error('transfer_not_pending',
            format('Transfer %s is %s, not pending: it can no longer be posted or voided.', t.id, t.status),
            NULL, jsonb_build_object('transferStatus', t.status));
    ELSIF p_command = 'post' AND p_amount > t.amount THEN
        refusal := ledger_error('amount_exceeds_hold',
            format('Transfer %s holds %s; %s cannot be posted.', t.id, t.amount, p_amount),
            'amount', jsonb_build_object('heldAmount', t.amount, 'requested', p_amount));
    ELSIF p_command = 'post' THEN
        SELECT r.refusal INTO refusal
          FROM transfer_hold h
          JOIN account src ON src.id = h.from_account_id
          JOIN account dst ON dst.id = h.to_account_id
         CROSS JOIN LATERAL (SELECT coalesce(ledger_account_refusal(src, 'from', h.currency),
                                             ledger_account_refusal(dst, 'to', h.currency)) AS refusal) r
         WHERE h.transfer_id = p_transfer_id AND r.refusal IS NOT NULL
         ORDER BY h.posting_index LIMIT 1;
    END IF;
    IF refusal IS NOT NULL THEN
        UPDATE idempotency_record SET error = refusal WHERE key = p_key;
        RETURN json_build_object('outcome', 'refused', 'error', refusal);
    END IF;

    IF p_command = 'void' THEN
        PERFORM ledger_hold_release(p_transfer_id, 'voided', p_event_ids[1], p_headers, acted_at);
        PERFORM ledger_grants_release(p_transfer_id, acted_at, p_headers);
    ELSE
        SELECT array_agg(h.from_account_id ORDER BY h.posting_index) AS from_ids,
               array_agg(h.to_account_id ORDER BY h.posting_index) AS to_ids,
               array_agg(coalesce(p_amount, h.amount) ORDER BY h.posting_index) AS amounts,
               array_agg(h.currency ORDER BY h.posting_index) AS codes
          INTO postings
          FROM transfer_hold h WHERE h.transfer_id = p_transfer_id;
        PERFORM ledger_hold_release(p_transfer_id, 'posted', NULL, p_headers, acted_at);
        PERFORM ledger_write_postings(p_transfer_id, postings.from_ids, postings.to_ids, postings.amounts,
                                      postings.codes, p_entry_ids, p_event_ids, p_headers, acted_at);
        PERFORM ledger_grants_consume(p_transfer_id, acted_at, p_headers);
        PERFORM ledger_entry_events_allocations(p_transfer_id, p_event_ids);
    END IF;
    UPDATE idempotency_record SET transfer_id = p_transfer_id WHERE key = p_key;
    RETURN json_build_object('outcome', 'settled', 'transfer', ledger_transfer_document(p_transfer_id));
END;
$$;
