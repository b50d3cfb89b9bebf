-- Reversals (docs/domain.md, Reversals; docs/adr/0017-reversals.md): a transfer that moves a
-- posted transfer's postings back, linked to it by reversal_of; the original's
-- reversed_amount counts what its reversals moved back.

-- What a transfer moved: the sum of its postings' amounts (of its debit entries).
CREATE FUNCTION ledger_transfer_total(p_transfer_id uuid) RETURNS numeric LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(-amount), 0) FROM entry WHERE transfer_id = p_transfer_id AND amount < 0
$$;

-- The stored outcome of an idempotency key as ledger_post_transfer returns it (ADR 0003):
-- conflict for a different request, else the transfer or the refusal; NULL for a new key.
CREATE FUNCTION ledger_idempotent_outcome(p_key text, p_fingerprint text) RETURNS json LANGUAGE sql STABLE AS $$
    SELECT CASE
             WHEN r.request_fingerprint <> p_fingerprint THEN json_build_object('outcome', 'conflict')
             WHEN r.transfer_id IS NOT NULL THEN
                 json_build_object('outcome', 'replayed', 'transfer', ledger_transfer_document(r.transfer_id))
             ELSE json_build_object('outcome', 'replayed', 'error', r.error)
           END
      FROM idempotency_record r WHERE r.key = p_key
$$;

\ir functions/ledger_transfer_immutable.v5.sql
\ir functions/ledger_transfer_document.v4.sql
\ir functions/ledger_check_reversals.v1.sql

-- Checked at COMMIT, when the reversal, its entries and the original's counter are all written.
CREATE FUNCTION ledger_reversal_deferred_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.reversal_of IS NOT NULL THEN
        PERFORM ledger_check_reversals(NEW.reversal_of);
    END IF;
    IF TG_OP = 'UPDATE' OR NEW.reversed_amount <> 0 THEN
        PERFORM ledger_check_reversals(NEW.id);
    END IF;
    RETURN NULL;
END;
$$;
CREATE CONSTRAINT TRIGGER transfer_reversals AFTER INSERT OR UPDATE OF reversed_amount ON transfer
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (NEW.reversal_of IS NOT NULL OR NEW.reversed_amount <> 0)
    EXECUTE FUNCTION ledger_reversal_deferred_check();

\ir functions/ledger_write_postings.v2.sql
DROP FUNCTION ledger_post_transfer(text, text, boolean, uuid[], uuid[], bigint[], text[], jsonb, text, uuid, uuid[],
                                   uuid[], jsonb, boolean, timestamptz);
\ir functions/ledger_post_transfer.v5.sql
\ir functions/ledger_reverse_transfer.v1.sql

-- reverse:
DROP FUNCTION ledger_reverse_transfer(text, text, uuid, bigint, text, uuid, uuid[], uuid[], jsonb);
DROP FUNCTION ledger_post_transfer(text, text, boolean, uuid[], uuid[], bigint[], text[], jsonb, text, uuid, uuid[],
                                   uuid[], jsonb, boolean, timestamptz, uuid);
\ir functions/ledger_post_transfer.v4.sql
\ir functions/ledger_write_postings.v1.sql
DROP TRIGGER transfer_reversals ON transfer;
DROP FUNCTION ledger_reversal_deferred_check();
DROP FUNCTION ledger_check_reversals(uuid);
\ir functions/ledger_transfer_document.v3.sql
\ir functions/ledger_transfer_immutable.v4.sql
DROP FUNCTION ledger_idempotent_outcome(text, text);
DROP FUNCTION ledger_transfer_total(uuid);
