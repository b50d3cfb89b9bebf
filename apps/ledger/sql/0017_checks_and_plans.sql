-- Grants are checked once per transaction, in one statement, whatever the number of grants
-- it wrote (functions/ledger_grant_checks.v2.sql); has_active_grants and the allocations of
-- EntryPosted events take plans that stay fast while exhausted grants and published events
-- pile up; and the functions a write enters by plan each statement once per session.
DROP TRIGGER grant_allocation_checked ON grant_allocation;
DROP FUNCTION ledger_grant_allocation_deferred_check();
DROP TRIGGER credit_grant_checked ON credit_grant;
DROP FUNCTION ledger_grant_deferred_check();
DROP FUNCTION ledger_check_grant(uuid);
\ir functions/ledger_grant_checks.v2.sql
\ir functions/ledger_has_active_grants.v2.sql
\ir functions/ledger_entry_events_allocations.v2.sql

\ir functions/ledger_write_entry_points.v1.sql

-- The functions a write enters by (the ones the application calls, and the deferred checks
-- COMMIT runs) keep one generic plan per statement for the session, for everything they run.
-- With custom plans, the default for most of these statements, every call planned each one
-- again, reading hundreds of buffers a statement where exhausted grants and updated rows pile
-- up: about a third of a 10-grant debit's backend CPU (benchmarks/README.md, h). CREATE OR
-- REPLACE FUNCTION drops the setting: a migration that brings a new version of one of these
-- functions calls ledger_write_entry_points_plan(true) again (apps/ledger/tests/test_plans.py
-- checks).
CREATE FUNCTION ledger_write_entry_points_plan(p_generic boolean) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid::regprocedure FROM pg_proc p
              WHERE p.pronamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
                AND p.proname = ANY (ledger_write_entry_points())
    LOOP
        EXECUTE format(CASE WHEN p_generic THEN 'ALTER FUNCTION %s SET plan_cache_mode = force_generic_plan'
                            ELSE 'ALTER FUNCTION %s RESET plan_cache_mode' END, f);
    END LOOP;
END;
$$;
SELECT ledger_write_entry_points_plan(true);

-- reverse:
SELECT ledger_write_entry_points_plan(false);
DROP FUNCTION ledger_write_entry_points_plan(boolean);
DROP FUNCTION ledger_write_entry_points();
\ir functions/ledger_entry_events_allocations.v1.sql
\ir functions/ledger_has_active_grants.v1.sql
DROP TRIGGER grant_check_queue_checked ON grant_check_queue;
DROP FUNCTION ledger_grant_queue_deferred_check();
DROP TRIGGER grant_allocation_inserted ON grant_allocation;
DROP TRIGGER credit_grant_updated ON credit_grant;
DROP TRIGGER credit_grant_inserted ON credit_grant;
DROP FUNCTION ledger_grant_allocations_written();
DROP FUNCTION ledger_grants_written();
DROP TABLE grant_check_queue;
DROP FUNCTION ledger_check_grants(uuid[]);
\ir functions/ledger_grant_checks.v1.sql
