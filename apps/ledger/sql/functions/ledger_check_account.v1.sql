-- Version 1 (0002_invariants).
CREATE OR REPLACE FUNCTION ledger_check_account(p_account_id uuid) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    a account%ROWTYPE;
    latest entry%ROWTYPE;
BEGIN
    SELECT * INTO a FROM account WHERE id = p_account_id;
    SELECT * INTO latest FROM entry WHERE account_id = p_account_id ORDER BY sequence DESC LIMIT 1;
    IF COALESCE(latest.sequence, 0) <> a.last_sequence OR COALESCE(latest.balance_after, 0) <> a.balance THEN
        RAISE EXCEPTION 'account % balance % at sequence % disagrees with its entries (% at %)',
            p_account_id, a.balance, a.last_sequence, COALESCE(latest.balance_after, 0), COALESCE(latest.sequence, 0)
            USING ERRCODE = 'check_violation';
    END IF;
END;
$$;
