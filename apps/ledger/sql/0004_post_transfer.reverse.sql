DROP FUNCTION IF EXISTS ledger_post_transfer(text, text, uuid, uuid, bigint, text, jsonb, uuid, uuid[], uuid[], jsonb);
DROP FUNCTION IF EXISTS ledger_account_refusal(account, text, text);
DROP FUNCTION IF EXISTS ledger_outbox_row(uuid, text, text, text, text, timestamptz, jsonb, jsonb);
DROP FUNCTION IF EXISTS ledger_error(text, text, text, jsonb);
DROP FUNCTION IF EXISTS ledger_transfer_document(uuid);
DROP FUNCTION IF EXISTS ledger_entry_event_data(entry);
DROP FUNCTION IF EXISTS ledger_iso(timestamptz);
