-- Closing is final and leaves nothing behind (PATCH /accounts/{id}, apps/accounts/services.py):
-- a closed account has a zero balance, and no UPDATE changes a closed account at all, its
-- status included. The posting function already refuses to move a non-active account.
ALTER TABLE account
    ADD CONSTRAINT account_closed_balance_zero CHECK (status <> 'closed' OR balance = 0);

CREATE FUNCTION ledger_account_closed_final() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW IS DISTINCT FROM OLD THEN
        RAISE EXCEPTION 'account % is closed: it never changes again', OLD.id
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER account_closed_final BEFORE UPDATE ON account
    FOR EACH ROW WHEN (OLD.status = 'closed') EXECUTE FUNCTION ledger_account_closed_final();

-- reverse:
DROP TRIGGER IF EXISTS account_closed_final ON account;
DROP FUNCTION IF EXISTS ledger_account_closed_final();
ALTER TABLE account DROP CONSTRAINT IF EXISTS account_closed_balance_zero;
