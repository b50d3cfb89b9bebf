-- Who did it (issue 12): each currency and account records who created it (write_actor(),
-- outbox 0006). Rows from before are `unrecorded`: nobody knows any more.
ALTER TABLE currency ADD COLUMN actor varchar(160) NOT NULL DEFAULT 'unrecorded';
ALTER TABLE currency ALTER COLUMN actor SET DEFAULT write_actor();
ALTER TABLE account ADD COLUMN actor varchar(160) NOT NULL DEFAULT 'unrecorded';
ALTER TABLE account ALTER COLUMN actor SET DEFAULT write_actor();
ALTER TABLE account_change ADD COLUMN actor varchar(160) NOT NULL DEFAULT 'unrecorded';
ALTER TABLE account_change ALTER COLUMN actor SET DEFAULT write_actor();

-- reverse:
ALTER TABLE account_change DROP COLUMN actor;
ALTER TABLE account DROP COLUMN actor;
ALTER TABLE currency DROP COLUMN actor;
