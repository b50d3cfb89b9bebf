-- A point-in-time balance (GET /accounts/{id}/balance?asOf=) in functions whose plans a session
-- keeps: the holds pending at the instant, and the posted balance then.
\ir functions/ledger_pending_at.v1.sql
\ir functions/ledger_balance_at.v3.sql

-- reverse:
\ir functions/ledger_balance_at.v2.sql
DROP FUNCTION ledger_pending_at(uuid, timestamptz);
