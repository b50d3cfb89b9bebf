-- Version 2 (0021_grant_debit_speed): the account and its latest entry in one statement
-- instead of two. It runs at commit for each entry and each account update, four times for a
-- transfer between two accounts. Otherwise as version 1.
CREATE OR REPLACE FUNCTION ledger_check_account(p_account_id uuid) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    c record;
BEGIN
    SELECT a.balance, a.last_sequence, coalesce(latest.sequence, 0) AS sequence,
           coalesce(latest.balance_after, 0) AS balance_after
      INTO c
      FROM account a
      LEFT JOIN LATERAL (SELECT e.sequence, e.balance_after FROM entry e
                          WHERE e.account_id = a.id ORDER BY e.sequence DESC LIMIT 1) latest ON true
     WHERE a.id = p_account_id;
    IF c.sequence <> c.last_sequence OR c.balance_after <> c.balance THEN
        RAISE EXCEPTION 'account % balance % at sequence % disagrees with its entries (% at %)',
            p_account_id, c.balance, c.last_sequence, c.balance_after, c.sequence
            USING ERRCODE = 'check_violation';
    END IF;
END;
$$;
