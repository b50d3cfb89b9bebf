-- Version 2 (0009_multi_leg_transfers): a transfer's entries sum to zero in each currency; a posted
-- transfer has posting_count postings, numbered from 0, each exactly one debit and the matching
-- credit (same amount and currency, the accounts swapped as counterparties, two different
-- accounts); one with a single posting also matches its from, to, amount and currency columns.
CREATE OR REPLACE FUNCTION ledger_check_transfer(p_transfer_id uuid) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t transfer%ROWTYPE;
    entry_count integer;
    paired integer;
    single_matches boolean;
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
        -- With 2 * posting_count entries, posting_count debits of distinct postings that each
        -- have their credit leave no room for anything else.
        SELECT count(*) INTO entry_count FROM entry WHERE transfer_id = p_transfer_id;
        SELECT count(DISTINCT d.posting_index),
               coalesce(bool_or(d.posting_index = 0 AND d.account_id = t.from_account_id
                                AND d.counterparty_id = t.to_account_id AND d.amount = -t.amount
                                AND d.currency = t.currency), false)
          INTO paired, single_matches
          FROM entry d
         WHERE d.transfer_id = p_transfer_id AND d.amount < 0 AND d.account_id <> d.counterparty_id
           AND d.posting_index >= 0 AND d.posting_index < t.posting_count
           AND EXISTS (SELECT 1 FROM entry c
                        WHERE c.transfer_id = p_transfer_id AND c.posting_index = d.posting_index
                          AND c.account_id = d.counterparty_id AND c.counterparty_id = d.account_id
                          AND c.amount = -d.amount AND c.currency = d.currency);
        IF t.from_account_id IS NOT NULL AND (entry_count <> 2 OR paired <> 1 OR NOT single_matches) THEN
            RAISE EXCEPTION 'posted transfer % must have one debit of % on % and one credit on % in %',
                p_transfer_id, t.amount, t.from_account_id, t.to_account_id, t.currency
                USING ERRCODE = 'check_violation';
        ELSIF entry_count <> 2 * t.posting_count OR paired <> t.posting_count THEN
            RAISE EXCEPTION 'posted transfer % must have, for each of its % postings, one debit and its matching credit (it has % entries, % postings that pair up)',
                p_transfer_id, t.posting_count, entry_count, paired
                USING ERRCODE = 'check_violation';
        END IF;
    END IF;
END;
$$;
