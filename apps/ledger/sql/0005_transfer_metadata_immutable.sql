-- A transfer's metadata is part of what was posted: no UPDATE may change it, not even on a
-- pending transfer (only status and updated_at may change there).
\ir functions/ledger_transfer_immutable.v2.sql

-- reverse:
\ir functions/ledger_transfer_immutable.v1.sql
