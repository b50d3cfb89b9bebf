-- Version 1 (0002_invariants): a posted transfer has exactly two entries, matching its columns.
CREATE OR REPLACE FUNCTION ledger_check_transfer(p_transfer_id uuid) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t transfer%ROWTYPE;
    entry_count integer;
    matching integer;
    unbalanced record;
BEGIN
    SELECT * INTO t FROM transfer WHERE id = p_transfer_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'entries reference missing transfer %', p_transfer_id USING ERRCODE = 'check_violation';
    END IF;
    FOR unbalanced IN
        SELECT currency, sum(amount) AS total FROM entry WHERE transfer_id = p_transfer_id
         GROUP BY currency HAVING sum(amount) <> 0
    LOOP
        RAISE EXCEPTION 'transfer % does not balance: % sums to %', p_transfer_id, unbalanced.currency, unbalanced.total
            USING ERRCODE = 'check_violation';
    END LOOP;
    IF t.status = 'posted' THEN
        SELECT count(*),
               count(*) FILTER (WHERE currency = t.currency AND (
                   (account_id = t.from_account_id AND counterparty_id = t.to_account_id AND amount = -t.amount) OR
                   (account_id = t.to_account_id AND counterparty_id = t.from_account_id AND amount = t.amount)))
          INTO entry_count, matching
          FROM entry WHERE transfer_id = p_transfer_id;
        IF entry_count <> 2 OR matching <> 2 THEN
            RAISE EXCEPTION 'posted transfer % must have one debit of % on % and one credit on % in %',
                p_transfer_id, t.amount, t.from_account_id, t.to_account_id, t.currency
                USING ERRCODE = 'check_violation';
        END IF;
    END IF;
END;
$$;
