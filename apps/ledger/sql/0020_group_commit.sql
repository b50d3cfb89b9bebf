-- Group commit (issue 11, docs/adr/0021-group-commit.md): concurrent POST /transfers of one
-- web process, and the items of POST /transfers/batch, are posted in one transaction by one
-- call of ledger_post_transfers. It is a write entry point: it plans its statements once per
-- session, as the others do.
\ir functions/ledger_post_transfers.v1.sql
\ir functions/ledger_write_entry_points.v2.sql
SELECT ledger_write_entry_points_plan(true);

-- reverse:
\ir functions/ledger_write_entry_points.v1.sql
DROP FUNCTION ledger_post_transfers(jsonb);
