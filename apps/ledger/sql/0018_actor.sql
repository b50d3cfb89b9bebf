-- Who did it (issue 12): each transfer (reversals included), credit grant and idempotency
-- record (the key that created a transfer or grant, or ran a hold's post or void, or a grant's
-- void) records who wrote it: write_actor() (outbox 0006). Rows from before are `unrecorded`.
ALTER TABLE transfer ADD COLUMN actor varchar(160) NOT NULL DEFAULT 'unrecorded';
ALTER TABLE transfer ALTER COLUMN actor SET DEFAULT write_actor();
ALTER TABLE credit_grant ADD COLUMN actor varchar(160) NOT NULL DEFAULT 'unrecorded';
ALTER TABLE credit_grant ALTER COLUMN actor SET DEFAULT write_actor();
ALTER TABLE idempotency_record ADD COLUMN actor varchar(160) NOT NULL DEFAULT 'unrecorded';
ALTER TABLE idempotency_record ALTER COLUMN actor SET DEFAULT write_actor();
\ir functions/ledger_transfer_immutable.v6.sql

-- reverse:
\ir functions/ledger_transfer_immutable.v5.sql
ALTER TABLE idempotency_record DROP COLUMN actor;
ALTER TABLE credit_grant DROP COLUMN actor;
ALTER TABLE transfer DROP COLUMN actor;
