-- A debit that draws from many grants (benchmarks/README.md, h) pays per statement, not per
-- grant, for the checks of its grants:
-- 1. The allocations' grant, transfer and entry are checked to exist by the deferred grant
--    check, once per transaction in one statement (functions/ledger_grant_checks.v3.sql),
--    instead of by three foreign keys per allocation (0021_grant_debit_speed.py drops them).
-- 2. A grant's terms are compared by the trigger's WHEN condition, so the immutability
--    function runs only for an update that it refuses, not for each counter update.
-- 3. A posted debit draws from its grants before its entries are written, so that its
--    EntryPosted event is written with its allocations once, not written and then updated
--    (functions/ledger_post_transfer.v7.sql, functions/ledger_write_postings.v3.sql).
-- And any transfer checks itself and its accounts at commit in fewer statements
-- (functions/ledger_check_transfer.v4.sql, functions/ledger_check_account.v2.sql).
\ir functions/ledger_grant_checks.v3.sql
\ir functions/ledger_check_transfer.v4.sql
\ir functions/ledger_check_account.v2.sql
\ir functions/ledger_write_postings.v3.sql
\ir functions/ledger_post_transfer.v7.sql

DROP TRIGGER credit_grant_immutable ON credit_grant;
CREATE TRIGGER credit_grant_immutable BEFORE UPDATE ON credit_grant FOR EACH ROW
    WHEN ((NEW.id, NEW.account_id, NEW.funding_account_id, NEW.expire_to_account_id, NEW.transfer_id, NEW.currency,
           NEW.amount, NEW.priority, NEW.effective_at, NEW.expires_at, NEW.description, NEW.metadata, NEW.created_at)
          IS DISTINCT FROM
          (OLD.id, OLD.account_id, OLD.funding_account_id, OLD.expire_to_account_id, OLD.transfer_id, OLD.currency,
           OLD.amount, OLD.priority, OLD.effective_at, OLD.expires_at, OLD.description, OLD.metadata, OLD.created_at)
          OR OLD.status IN ('expired', 'voided') AND NEW.status <> OLD.status)
    EXECUTE FUNCTION ledger_grant_immutable();
CREATE TRIGGER credit_grant_undeletable BEFORE DELETE ON credit_grant
    FOR EACH ROW EXECUTE FUNCTION ledger_grant_immutable();

-- ledger_post_transfer is a write entry point: CREATE OR REPLACE dropped its plan setting.
SELECT ledger_write_entry_points_plan(true);

-- reverse:
\ir functions/ledger_post_transfer.v6.sql
\ir functions/ledger_write_postings.v2.sql
\ir functions/ledger_check_account.v1.sql
\ir functions/ledger_check_transfer.v3.sql
DROP TRIGGER credit_grant_undeletable ON credit_grant;
DROP TRIGGER credit_grant_immutable ON credit_grant;
CREATE TRIGGER credit_grant_immutable BEFORE UPDATE OR DELETE ON credit_grant
    FOR EACH ROW EXECUTE FUNCTION ledger_grant_immutable();

-- Version 2 of the checks, with its queue as 0017_checks_and_plans made it (the queue is
-- empty outside a transaction).
DROP TRIGGER grant_check_queue_checked ON grant_check_queue;
DROP FUNCTION ledger_grant_queue_deferred_check();
DROP TRIGGER grant_allocation_inserted ON grant_allocation;
DROP TRIGGER credit_grant_updated ON credit_grant;
DROP TRIGGER credit_grant_inserted ON credit_grant;
DROP FUNCTION ledger_grant_allocations_written();
DROP FUNCTION ledger_grants_written();
DROP TABLE grant_check_queue;
DROP FUNCTION ledger_check_grants(uuid[]);
\ir functions/ledger_grant_checks.v2.sql
SELECT ledger_write_entry_points_plan(true);
