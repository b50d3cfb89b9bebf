-- Version 2 (0006_post_transfer_event_registry): events through outbox_event_row and the registry.
CREATE OR REPLACE FUNCTION ledger_post_transfer(
    p_key text, p_fingerprint text, p_from uuid, p_to uuid, p_amount bigint, p_currency text, p_metadata jsonb,
    p_transfer_id uuid, p_entry_ids uuid[], p_event_ids uuid[], p_headers jsonb
) RETURNS json LANGUAGE plpgsql AS $$
DECLARE
    rec idempotency_record%ROWTYPE;
    locked account%ROWTYPE;
    src account%ROWTYPE;
    dst account%ROWTYPE;
    refusal jsonb;
    posted_at timestamptz;
    debit entry%ROWTYPE;
    credit entry%ROWTYPE;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM currency WHERE code = p_currency) THEN
        RETURN json_build_object('outcome', 'invalid', 'error', ledger_error('unknown_currency',
            format('Unknown currency ''%s''. GET /currencies lists the registered ones.', p_currency), 'currency'));
    END IF;
    -- Claim the key; a concurrent owner makes this wait until it commits or rolls back.
    INSERT INTO idempotency_record (key, request_fingerprint, created_at) VALUES (p_key, p_fingerprint, now())
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

    IF p_from = p_to THEN
        refusal := ledger_error('same_account', 'A transfer needs two different accounts.', 'to');
    ELSE
        -- Lock both accounts in id order, so opposite transfers cannot deadlock.
        FOR locked IN SELECT * FROM account WHERE id IN (p_from, p_to) ORDER BY id FOR UPDATE LOOP
            IF locked.id = p_from THEN src := locked; ELSE dst := locked; END IF;
        END LOOP;
        IF src.id IS NULL THEN
            refusal := ledger_error('account_not_found', format('No account %s.', p_from), 'from');
        ELSIF dst.id IS NULL THEN
            refusal := ledger_error('account_not_found', format('No account %s.', p_to), 'to');
        END IF;
        refusal := COALESCE(refusal, ledger_account_refusal(src, 'from', p_currency),
                            ledger_account_refusal(dst, 'to', p_currency));
        IF refusal IS NULL AND src.overdraft_limit IS NOT NULL
           AND src.balance::numeric - p_amount < -src.overdraft_limit THEN
            refusal := ledger_error('insufficient_funds',
                format('Account %s has %s available; the transfer needs %s.', src.id,
                       src.balance::numeric + src.overdraft_limit, p_amount), 'amount',
                jsonb_build_object('available', src.balance::numeric + src.overdraft_limit, 'requested', p_amount));
        END IF;
        IF refusal IS NULL AND (src.balance::numeric - p_amount < -9223372036854775808
                                OR dst.balance::numeric + p_amount > 9223372036854775807) THEN
            refusal := ledger_error('balance_out_of_range',
                'The transfer would take a balance beyond the 64-bit range.', 'amount');
        END IF;
    END IF;
    IF refusal IS NOT NULL THEN
        UPDATE idempotency_record SET error = refusal WHERE key = p_key;
        RETURN json_build_object('outcome', 'refused', 'error', refusal);
    END IF;

    -- Taken under the locks, so one account's entries are in time order as in sequence order.
    posted_at := clock_timestamp();

    INSERT INTO transfer (id, idempotency_key, request_fingerprint, from_account_id, to_account_id, amount, currency,
                          status, metadata, created_at, updated_at)
    VALUES (p_transfer_id, p_key, p_fingerprint, p_from, p_to, p_amount, p_currency, 'posted', p_metadata,
            posted_at, posted_at);
    INSERT INTO entry (id, transfer_id, account_id, counterparty_id, currency, amount, sequence, balance_after, created_at)
    VALUES (p_entry_ids[1], p_transfer_id, p_from, p_to, p_currency, -p_amount, src.last_sequence + 1,
            src.balance - p_amount, posted_at)
    RETURNING * INTO debit;
    INSERT INTO entry (id, transfer_id, account_id, counterparty_id, currency, amount, sequence, balance_after, created_at)
    VALUES (p_entry_ids[2], p_transfer_id, p_to, p_from, p_currency, p_amount, dst.last_sequence + 1,
            dst.balance + p_amount, posted_at)
    RETURNING * INTO credit;
    UPDATE account AS a SET balance = v.balance, last_sequence = v.sequence, updated_at = posted_at
      FROM (VALUES (debit.account_id, debit.balance_after, debit.sequence),
                   (credit.account_id, credit.balance_after, credit.sequence)) AS v(id, balance, sequence)
     WHERE a.id = v.id;
    INSERT INTO outbox_event (event_id, topic, key, event_type, payload, headers, created_at, published_at)
    SELECT r.event_id, r.topic, r.key, r.event_type, r.payload, r.headers, r.created_at, r.published_at
      FROM (VALUES
        (outbox_event_row(p_event_ids[1], 'TransferPosted', p_transfer_id::text, posted_at,
            jsonb_build_object('transferId', p_transfer_id, 'idempotencyKey', p_key, 'from', p_from, 'to', p_to,
                'amount', p_amount, 'currency', p_currency, 'status', 'posted', 'metadata', p_metadata,
                'createdAt', ledger_iso(posted_at),
                'entries', jsonb_build_array(ledger_entry_event_data(debit), ledger_entry_event_data(credit))),
            p_headers)),
        (outbox_event_row(p_event_ids[2], 'EntryPosted', p_from::text, posted_at, ledger_entry_event_data(debit),
            p_headers)),
        (outbox_event_row(p_event_ids[3], 'EntryPosted', p_to::text, posted_at, ledger_entry_event_data(credit),
            p_headers))
      ) AS v(row_value), LATERAL (SELECT (v.row_value).*) AS r;
    UPDATE idempotency_record SET transfer_id = p_transfer_id WHERE key = p_key;
    RETURN json_build_object('outcome', 'posted', 'transfer', ledger_transfer_document(p_transfer_id));
END;
$$;
