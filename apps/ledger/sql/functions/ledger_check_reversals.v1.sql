-- Version 1 (0013_reversals): the reversals of a transfer (docs/domain.md, Reversals). Its
-- reversed_amount is what its reversals move back, the sum of their postings' amounts, and
-- at most its own total; only a posted transfer has any. Each reversal has the transfer's
-- postings inverted: as many, posting i between the same two accounts the other way round,
-- in the same currency, for the same amount, or for at most that amount when the transfer
-- has a single posting (a partial reversal).
CREATE OR REPLACE FUNCTION ledger_check_reversals(p_transfer_id uuid) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t transfer%ROWTYPE;
    moved_back numeric;
    not_inverse uuid;
BEGIN
    SELECT * INTO t FROM transfer WHERE id = p_transfer_id;
    SELECT coalesce(sum(-e.amount), 0) INTO moved_back
      FROM transfer r JOIN entry e ON e.transfer_id = r.id AND e.amount < 0
     WHERE r.reversal_of = p_transfer_id;
    IF moved_back <> t.reversed_amount THEN
        RAISE EXCEPTION 'transfer % has reversed_amount % but its reversals move back %',
            p_transfer_id, t.reversed_amount, moved_back
            USING ERRCODE = 'check_violation';
    END IF;
    IF t.reversed_amount > 0 AND t.status <> 'posted' THEN
        RAISE EXCEPTION 'transfer % is %: only a posted transfer is reversed', p_transfer_id, t.status
            USING ERRCODE = 'check_violation';
    END IF;
    IF t.reversed_amount > ledger_transfer_total(p_transfer_id) THEN
        RAISE EXCEPTION 'transfer % moved %: its reversals cannot move back %',
            p_transfer_id, ledger_transfer_total(p_transfer_id), t.reversed_amount
            USING ERRCODE = 'check_violation';
    END IF;
    SELECT r.id INTO not_inverse
      FROM transfer r
     WHERE r.reversal_of = p_transfer_id
       AND (r.posting_count <> t.posting_count
            OR EXISTS (SELECT 1 FROM entry d
                        WHERE d.transfer_id = r.id AND d.amount < 0
                          AND NOT EXISTS (SELECT 1 FROM entry o
                                           WHERE o.transfer_id = p_transfer_id AND o.amount < 0
                                             AND o.posting_index = d.posting_index
                                             AND o.account_id = d.counterparty_id
                                             AND o.counterparty_id = d.account_id
                                             AND o.currency = d.currency
                                             AND (d.amount = o.amount
                                                  OR (t.posting_count = 1 AND d.amount >= o.amount)))))
     LIMIT 1;
    IF not_inverse IS NOT NULL THEN
        RAISE EXCEPTION 'transfer % claims to reverse % but does not invert its postings', not_inverse, p_transfer_id
            USING ERRCODE = 'check_violation';
    END IF;
END;
$$;
