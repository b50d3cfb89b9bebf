-- Version 3 (0011_holds): as version 2, and for holds (transfers with transfer_hold rows): one
-- hold row per posting, open exactly while the transfer is pending; a transfer that is not
-- posted has no entries; a posted hold posts each posting between its accounts, in its
-- currency, at most the amount held (a single posting may post less: the rest is released).
CREATE OR REPLACE FUNCTION ledger_check_transfer(p_transfer_id uuid) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t transfer%ROWTYPE;
    entry_count integer;
    hold_count integer;
    open_count integer;
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
    SELECT count(*) INTO entry_count FROM entry WHERE transfer_id = p_transfer_id;
    SELECT count(*), count(*) FILTER (WHERE open) INTO hold_count, open_count
      FROM transfer_hold WHERE transfer_id = p_transfer_id;
    IF t.status = 'pending' AND (hold_count <> t.posting_count OR open_count <> hold_count) THEN
        RAISE EXCEPTION 'pending transfer % must hold each of its % postings (% holds, % open)',
            p_transfer_id, t.posting_count, hold_count, open_count USING ERRCODE = 'check_violation';
    ELSIF t.status <> 'pending' AND open_count > 0 THEN
        RAISE EXCEPTION '% transfer % still has % open holds', t.status, p_transfer_id, open_count
            USING ERRCODE = 'check_violation';
    ELSIF hold_count NOT IN (0, t.posting_count) THEN
        RAISE EXCEPTION 'transfer % has % holds for % postings', p_transfer_id, hold_count, t.posting_count
            USING ERRCODE = 'check_violation';
    END IF;
    IF t.status <> 'posted' AND entry_count > 0 THEN
        RAISE EXCEPTION '% transfer % must have no entries (it has %)', t.status, p_transfer_id, entry_count
            USING ERRCODE = 'check_violation';
    END IF;
    IF t.status = 'posted' THEN
        -- With 2 * posting_count entries, posting_count debits of distinct postings that each
        -- have their credit leave no room for anything else.
        SELECT count(DISTINCT d.posting_index),
               coalesce(bool_or(d.posting_index = 0 AND d.account_id = t.from_account_id
                                AND d.counterparty_id = t.to_account_id
                                AND (d.amount = -t.amount OR (hold_count > 0 AND -d.amount <= t.amount))
                                AND d.currency = t.currency), false)
          INTO paired, single_matches
          FROM entry d
         WHERE d.transfer_id = p_transfer_id AND d.amount < 0 AND d.account_id <> d.counterparty_id
           AND d.posting_index >= 0 AND d.posting_index < t.posting_count
           AND EXISTS (SELECT 1 FROM entry c
                        WHERE c.transfer_id = p_transfer_id AND c.posting_index = d.posting_index
                          AND c.account_id = d.counterparty_id AND c.counterparty_id = d.account_id
                          AND c.amount = -d.amount AND c.currency = d.currency)
           AND (hold_count = 0 OR EXISTS (SELECT 1 FROM transfer_hold h
                        WHERE h.transfer_id = p_transfer_id AND h.posting_index = d.posting_index
                          AND h.from_account_id = d.account_id AND h.to_account_id = d.counterparty_id
                          AND h.currency = d.currency AND -d.amount <= h.amount));
        IF t.from_account_id IS NOT NULL AND (entry_count <> 2 OR paired <> 1 OR NOT single_matches) THEN
            RAISE EXCEPTION 'posted transfer % must have one debit of % on % and one credit on % in % (at most that for a hold)',
                p_transfer_id, t.amount, t.from_account_id, t.to_account_id, t.currency
                USING ERRCODE = 'check_violation';
        ELSIF entry_count <> 2 * t.posting_count OR paired <> t.posting_count THEN
            RAISE EXCEPTION 'posted transfer % must have, for each of its % postings, one debit and its matching credit, within its hold if any (it has % entries, % postings that pair up)',
                p_transfer_id, t.posting_count, entry_count, paired
                USING ERRCODE = 'check_violation';
        END IF;
    END IF;
END;
$$;
