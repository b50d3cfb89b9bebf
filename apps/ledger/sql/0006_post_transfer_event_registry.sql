-- ledger_post_transfer writes its events through outbox_event_row (apps/outbox/sql/0004), which
-- builds the envelope from the event registry; it names only the event types. Otherwise the
-- function of 0004, unchanged.
\ir functions/ledger_post_transfer.v2.sql

DROP FUNCTION ledger_outbox_row(uuid, text, text, text, text, timestamptz, jsonb, jsonb);

-- reverse:
\ir functions/ledger_outbox_row.v1.sql
\ir functions/ledger_post_transfer.v1.sql
