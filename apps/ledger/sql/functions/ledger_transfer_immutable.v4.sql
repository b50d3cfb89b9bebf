-- Version 4 (0011_holds): a pending transfer (a hold) changes once, to posted, voided or
-- expired, and then never again; nothing but its status, updated_at may change with it.
CREATE OR REPLACE FUNCTION ledger_transfer_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR OLD.status <> 'pending' THEN
        RAISE EXCEPTION 'transfer % is %: % refused', OLD.id, OLD.status, TG_OP
            USING ERRCODE = 'restrict_violation';
    END IF;
    IF NEW.status NOT IN ('posted', 'voided', 'expired') THEN
        RAISE EXCEPTION 'pending transfer % may only become posted, voided or expired, not %', OLD.id, NEW.status
            USING ERRCODE = 'restrict_violation';
    END IF;
    IF (NEW.id, NEW.idempotency_key, NEW.request_fingerprint, NEW.from_account_id, NEW.to_account_id,
        NEW.amount, NEW.currency, NEW.posting_count, NEW.metadata, NEW.description, NEW.expires_at, NEW.created_at)
       IS DISTINCT FROM
       (OLD.id, OLD.idempotency_key, OLD.request_fingerprint, OLD.from_account_id, OLD.to_account_id,
        OLD.amount, OLD.currency, OLD.posting_count, OLD.metadata, OLD.description, OLD.expires_at, OLD.created_at) THEN
        RAISE EXCEPTION 'only the status of pending transfer % may change', OLD.id
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END;
$$;
