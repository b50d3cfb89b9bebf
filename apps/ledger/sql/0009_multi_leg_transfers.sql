-- Multi-leg transfers (docs/adr/0016-multi-leg-transfers.md): a transfer of one or more
-- postings, each a debit and its credit with the same entry.posting_index; a description.

-- The field a refusal names: the single form's own, or postings[i].<field> (i from 0).
CREATE FUNCTION ledger_posting_field(p_single boolean, p_index bigint, p_field text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_single THEN p_field ELSE format('postings[%s].%s', p_index - 1, p_field) END
$$;

\ir functions/ledger_transfer_immutable.v3.sql
\ir functions/ledger_check_transfer.v2.sql
\ir functions/ledger_transfer_document.v2.sql
DROP FUNCTION ledger_post_transfer(text, text, uuid, uuid, bigint, text, jsonb, uuid, uuid[], uuid[], jsonb);
\ir functions/ledger_post_transfer.v3.sql

-- reverse:
DROP FUNCTION ledger_post_transfer(text, text, boolean, uuid[], uuid[], bigint[], text[], jsonb, text, uuid, uuid[],
                                   uuid[], jsonb);
\ir functions/ledger_post_transfer.v2.sql
\ir functions/ledger_transfer_document.v1.sql
\ir functions/ledger_check_transfer.v1.sql
\ir functions/ledger_transfer_immutable.v2.sql
DROP FUNCTION ledger_posting_field(boolean, bigint, text);
