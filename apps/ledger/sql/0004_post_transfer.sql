-- Posting a transfer in one round trip. transfer_create (apps/ledger/services.py) calls
-- ledger_post_transfer inside its durable transaction; the invariants of 0002 still check
-- every row it writes. It returns the outcome as JSON:
--   {"outcome": "posted"|"replayed"|"refused"|"conflict"|"invalid", "transfer": <document>, "error": <outcome>}
-- "invalid" (an unknown currency) is a 400: nothing is stored against the key.
-- where <document> is the API's transfer representation and <outcome> the shape of
-- creditledger.errors.LedgerError.as_outcome().

-- Timestamps as the API and the events write them (UTC, microseconds, Z).
CREATE FUNCTION ledger_iso(ts timestamptz) RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

-- The data of an EntryPosted event (docs/events.md).
CREATE FUNCTION ledger_entry_event_data(e entry) RETURNS jsonb LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT jsonb_build_object(
        'entryId', e.id, 'transferId', e.transfer_id, 'accountId', e.account_id, 'counterpartyId', e.counterparty_id,
        'currency', e.currency, 'amount', e.amount, 'sequence', e.sequence, 'balanceAfter', e.balance_after,
        'createdAt', ledger_iso(e.created_at))
$$;

-- The API's representation of a transfer with its entries, debit first (json, not jsonb,
-- to keep the field order).
\ir functions/ledger_transfer_document.v1.sql

CREATE FUNCTION ledger_error(p_code text, p_detail text, p_field text, p_params jsonb DEFAULT '{}')
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('code', p_code, 'detail', p_detail, 'field', p_field, 'params', p_params)
$$;

-- Why `a` cannot take part in a transfer in `p_currency` as `p_field`, or NULL.
CREATE FUNCTION ledger_account_refusal(a account, p_field text, p_currency text) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN a.currency <> p_currency THEN
            ledger_error('currency_mismatch', format('Account %s holds %s, not %s.', a.id, a.currency, p_currency),
                         p_field, jsonb_build_object('accountCurrency', a.currency))
        WHEN a.status <> 'active' THEN
            ledger_error('account_not_active', format('Account %s is %s.', a.id, a.status), p_field,
                         jsonb_build_object('accountStatus', a.status))
    END
$$;

\ir functions/ledger_outbox_row.v1.sql

\ir functions/ledger_post_transfer.v1.sql

-- reverse:
DROP FUNCTION IF EXISTS ledger_post_transfer(text, text, uuid, uuid, bigint, text, jsonb, uuid, uuid[], uuid[], jsonb);
DROP FUNCTION IF EXISTS ledger_account_refusal(account, text, text);
DROP FUNCTION IF EXISTS ledger_outbox_row(uuid, text, text, text, text, timestamptz, jsonb, jsonb);
DROP FUNCTION IF EXISTS ledger_error(text, text, text, jsonb);
DROP FUNCTION IF EXISTS ledger_transfer_document(uuid);
DROP FUNCTION IF EXISTS ledger_entry_event_data(entry);
DROP FUNCTION IF EXISTS ledger_iso(timestamptz);
