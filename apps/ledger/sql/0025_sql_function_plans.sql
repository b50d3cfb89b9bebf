-- Before PostgreSQL 18, a SQL-language function that the planner does not inline is parsed and
-- planned again at every call, whatever plan_cache_mode says. A posted transfer called three
-- such functions: 1.5 ms of the 8.7 ms of backend CPU of a debit drawing from 10 grants on
-- PostgreSQL 15 (benchmarks/dbtime.py grant-debits), as on the production image's PostgreSQL 16.
-- 1. ledger_transfer_document, the answer of every command, becomes PL/pgSQL, which keeps its
--    plan (functions/ledger_transfer_document.v5.sql).
-- 2. ledger_error and ledger_posting_field were IMMUTABLE around STABLE bodies (jsonb_build_object
--    and format depend on settings), which forbids inlining them; STABLE, as their bodies are,
--    they are inlined into the statements that call them, and so is ledger_account_refusal,
--    which took one of them as an argument too costly to repeat.
\ir functions/ledger_transfer_document.v5.sql
ALTER FUNCTION ledger_error(text, text, text, jsonb) STABLE;
ALTER FUNCTION ledger_posting_field(boolean, bigint, text) STABLE;

-- reverse:
ALTER FUNCTION ledger_posting_field(boolean, bigint, text) IMMUTABLE;
ALTER FUNCTION ledger_error(text, text, text, jsonb) IMMUTABLE;
\ir functions/ledger_transfer_document.v4.sql
