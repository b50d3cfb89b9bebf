-- Version 6 (0018_actor): as version 5, and a pending transfer's actor, who created it, does
-- not change as it is posted, voided or expired (the posted branch compares every column).
CREATE OR REPLACE FUNCTION ledger_transfer_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.status = 'posted' AND NEW.reversed_amount > OLD.reversed_amount
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
    IF NEW.status NOT IN ('posted', 'voided', 'expired') THEN
        RAISE EXCEPTION 'pending transfer % may only become posted, voided or expired, not %', OLD.id, NEW.status
            USING ERRCODE = 'restrict_violation';
    END IF;
    IF (NEW.id, NEW.idempotency_key, NEW.request_fingerprint, NEW.from_account_id, NEW.to_account_id,
        NEW.amount, NEW.currency, NEW.posting_count, NEW.metadata, NEW.description, NEW.expires_at,
        NEW.reversal_of, NEW.reversed_amount, NEW.created_at, NEW.actor)
       IS DISTINCT FROM
       (OLD.id, OLD.idempotency_key, OLD.request_fingerprint, OLD.from_account_id, OLD.to_account_id,
        OLD.amount, OLD.currency, OLD.posting_count, OLD.metadata, OLD.description, OLD.expires_at,
        OLD.reversal_of, OLD.reversed_amount, OLD.created_at, OLD.actor) THEN
        RAISE EXCEPTION 'only the status of pending transfer % may change', OLD.id
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END;
$$;
