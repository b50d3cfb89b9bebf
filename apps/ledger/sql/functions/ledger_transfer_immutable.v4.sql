-- Version 4 (0011_reversals): a transfer that is no longer pending may change in one way only:
-- its reversed_amount grows, as a reversal of it is posted, and never beyond the sum of its
-- postings' amounts (ledger_transfer_total). Anything else is refused as in version 3; the
-- link to the original (reversal_of) and the counter of a pending transfer are immutable too.
CREATE OR REPLACE FUNCTION ledger_transfer_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.status <> 'pending' AND NEW.reversed_amount > OLD.reversed_amount
       AND to_jsonb(NEW) - 'reversed_amount' = to_jsonb(OLD) - 'reversed_amount' THEN
        IF NEW.reversed_amount > ledger_transfer_total(OLD.id) THEN
            RAISE EXCEPTION 'transfer % moved %: its reversals cannot move back %', OLD.id,
                ledger_transfer_total(OLD.id), NEW.reversed_amount
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NEW;
    END IF;
    IF TG_OP = 'DELETE' OR OLD.status <> 'pending' THEN
        RAISE EXCEPTION 'transfer % is %: % refused', OLD.id, OLD.status, TG_OP
            USING ERRCODE = 'restrict_violation';
    END IF;
    IF (NEW.id, NEW.idempotency_key, NEW.request_fingerprint, NEW.from_account_id, NEW.to_account_id,
        NEW.amount, NEW.currency, NEW.posting_count, NEW.metadata, NEW.description, NEW.reversal_of,
        NEW.reversed_amount, NEW.created_at)
       IS DISTINCT FROM
       (OLD.id, OLD.idempotency_key, OLD.request_fingerprint, OLD.from_account_id, OLD.to_account_id,
        OLD.amount, OLD.currency, OLD.posting_count, OLD.metadata, OLD.description, OLD.reversal_of,
        OLD.reversed_amount, OLD.created_at) THEN
        RAISE EXCEPTION 'only the status of pending transfer % may change', OLD.id
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END;
$$;
