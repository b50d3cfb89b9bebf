-- Version 4 (0021_grant_debit_speed): the same checks in two statements instead of five: the
-- transfer, its entries' count and first unbalanced currency, and its holds' counts are read
-- in one. It runs at commit once for the transfer and once for each of its entries, so a
-- posted transfer of one posting ran fifteen statements to check itself.
CREATE OR REPLACE FUNCTION ledger_check_transfer(p_transfer_id uuid) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t record;
    paired integer;
    single_matches boolean;
BEGIN
    SELECT tr.status, tr.posting_count, tr.from_account_id, tr.to_account_id, tr.amount, tr.currency,
           e.entry_count, e.unbalanced_currency, e.unbalanced_total, h.hold_count, h.open_count
      INTO t
      FROM transfer tr
     CROSS JOIN LATERAL (
           SELECT coalesce(sum(c.n), 0)::integer AS entry_count,
                  (array_agg(c.currency ORDER BY c.currency) FILTER (WHERE c.total <> 0))[1] AS unbalanced_currency,
                  (array_agg(c.total ORDER BY c.currency) FILTER (WHERE c.total <> 0))[1] AS unbalanced_total
             FROM (SELECT currency, count(*) AS n, sum(amount) AS total FROM entry
                    WHERE transfer_id = tr.id GROUP BY currency) c) e
     CROSS JOIN LATERAL (
           SELECT count(*)::integer AS hold_count, (count(*) FILTER (WHERE open))::integer AS open_count
             FROM transfer_hold WHERE transfer_id = tr.id) h
     WHERE tr.id = p_transfer_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'entries reference missing transfer %', p_transfer_id USING ERRCODE = 'check_violation';
    END IF;
    IF t.unbalanced_currency IS NOT NULL THEN
        RAISE EXCEPTION 'transfer % does not balance: % sums to %', p_transfer_id, t.unbalanced_currency,
            t.unbalanced_total USING ERRCODE = 'check_violation';
    END IF;
    IF t.status = 'pending' AND (t.hold_count <> t.posting_count OR t.open_count <> t.hold_count) THEN
        RAISE EXCEPTION 'pending transfer % must hold each of its % postings (% holds, % open)',
            p_transfer_id, t.posting_count, t.hold_count, t.open_count USING ERRCODE = 'check_violation';
    ELSIF t.status <> 'pending' AND t.open_count > 0 THEN
        RAISE EXCEPTION '% transfer % still has % open holds', t.status, p_transfer_id, t.open_count
            USING ERRCODE = 'check_violation';
    ELSIF t.hold_count NOT IN (0, t.posting_count) THEN
        RAISE EXCEPTION 'transfer % has % holds for % postings', p_transfer_id, t.hold_count, t.posting_count
            USING ERRCODE = 'check_violation';
    END IF;
    IF t.status <> 'posted' AND t.entry_count > 0 THEN
        RAISE EXCEPTION '% transfer % must have no entries (it has %)', t.status, p_transfer_id, t.entry_count
            USING ERRCODE = 'check_violation';
    END IF;
    IF t.status = 'posted' THEN
        -- With 2 * posting_count entries, posting_count debits of distinct postings that each
        -- have their credit leave no room for anything else.
        SELECT count(DISTINCT d.posting_index),
               coalesce(bool_or(d.posting_index = 0 AND d.account_id = t.from_account_id
                                AND d.counterparty_id = t.to_account_id
                                AND (d.amount = -t.amount OR (t.hold_count > 0 AND -d.amount <= t.amount))
                                AND d.currency = t.currency), false)
          INTO paired, single_matches
          FROM entry d
         WHERE d.transfer_id = p_transfer_id AND d.amount < 0 AND d.account_id <> d.counterparty_id
           AND d.posting_index >= 0 AND d.posting_index < t.posting_count
           AND EXISTS (SELECT 1 FROM entry c
                        WHERE c.transfer_id = p_transfer_id AND c.posting_index = d.posting_index
                          AND c.account_id = d.counterparty_id AND c.counterparty_id = d.account_id
                          AND c.amount = -d.amount AND c.currency = d.currency)
           AND (t.hold_count = 0 OR EXISTS (SELECT 1 FROM transfer_hold h
                        WHERE h.transfer_id = p_transfer_id AND h.posting_index = d.posting_index
                          AND h.from_account_id = d.account_id AND h.to_account_id = d.counterparty_id
                          AND h.currency = d.currency AND -d.amount <= h.amount));
        IF t.from_account_id IS NOT NULL AND (t.entry_count <> 2 OR paired <> 1 OR NOT single_matches) THEN
            RAISE EXCEPTION 'posted transfer % must have one debit of % on % and one credit on % in % (at most that for a hold)',
                p_transfer_id, t.amount, t.from_account_id, t.to_account_id, t.currency
                USING ERRCODE = 'check_violation';
        ELSIF t.entry_count <> 2 * t.posting_count OR paired <> t.posting_count THEN
            RAISE EXCEPTION 'posted transfer % must have, for each of its % postings, one debit and its matching credit, within its hold if any (it has % entries, % postings that pair up)',
                p_transfer_id, t.posting_count, t.entry_count, paired
                USING ERRCODE = 'check_violation';
        END IF;
    END IF;
END;
$$;
