-- Version 1 (0017_checks_and_plans): the functions a write enters by, each keeping generic plans
-- (ledger_write_entry_points_plan).
CREATE OR REPLACE FUNCTION ledger_write_entry_points() RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['ledger_post_transfer', 'ledger_hold_command', 'ledger_reverse_transfer', 'ledger_holds_expire',
                 'ledger_grant_create', 'ledger_grant_void', 'ledger_grants_book_due',
                 'ledger_entry_deferred_check', 'ledger_transfer_deferred_check', 'ledger_account_deferred_check',
                 'ledger_account_pending_deferred_check', 'ledger_hold_deferred_check',
                 'ledger_reversal_deferred_check', 'ledger_grant_queue_deferred_check']
$$;
