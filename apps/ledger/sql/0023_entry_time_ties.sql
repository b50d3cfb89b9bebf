-- An account's entries written by one transaction share its time: a point-in-time balance takes
-- the last of them by sequence (ledger_balance_at v2).
\ir functions/ledger_balance_at.v2.sql

-- reverse:
\ir functions/ledger_balance_at.v1.sql
