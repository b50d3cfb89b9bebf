-- Version 7 (0021_grant_debit_speed): a posted transfer that reverses nothing draws each debit
-- from its account's grants before its entries are written (the allocations name the entries
-- by the ids the caller gave them), so that ledger_write_postings (version 3) writes each
-- EntryPosted with its allocations once, instead of the events being written and then
-- updated with them (ledger_entry_events_allocations). Holds and reversals apply their grants
-- after their rows are written, as in version 6. Otherwise as version 6.
CREATE OR REPLACE FUNCTION ledger_post_transfer(
    p_key text, p_fingerprint text, p_single boolean,
    p_from uuid[], p_to uuid[], p_amount bigint[], p_currency text[],
    p_metadata jsonb, p_description text,
    p_transfer_id uuid, p_entry_ids uuid[], p_event_ids uuid[], p_headers jsonb,
    p_pending boolean, p_expires_at timestamptz, p_reversal_of uuid DEFAULT NULL
) RETURNS json LANGUAGE plpgsql AS $$
DECLARE
    rec idempotency_record%ROWTYPE;
    refusal jsonb;
    n_postings integer := cardinality(p_from);
    locked uuid[];
    posted_at timestamptz;
    debit record;
BEGIN
    IF p_pending AND p_reversal_of IS NOT NULL THEN
        RAISE EXCEPTION 'a reversal (of %) is never pending', p_reversal_of USING ERRCODE = 'check_violation';
    END IF;
    SELECT ledger_error('unknown_currency',
               format('Unknown currency ''%s''. GET /currencies lists the registered ones.', p.code),
               ledger_posting_field(p_single, p.i, 'currency'))
      INTO refusal
      FROM unnest(p_currency) WITH ORDINALITY AS p(code, i)
     WHERE NOT EXISTS (SELECT 1 FROM currency c WHERE c.code = p.code)
     ORDER BY p.i LIMIT 1;
    IF refusal IS NOT NULL THEN
        RETURN json_build_object('outcome', 'invalid', 'error', refusal);
    END IF;
    -- Claim the key; a concurrent owner makes this wait until it commits or rolls back.
    INSERT INTO idempotency_record (key, request_fingerprint, created_at) VALUES (p_key, p_fingerprint, now())
    ON CONFLICT (key) DO NOTHING;
    IF NOT FOUND THEN
        SELECT * INTO rec FROM idempotency_record WHERE key = p_key;
        IF rec.request_fingerprint <> p_fingerprint THEN
            RETURN json_build_object('outcome', 'conflict');
        ELSIF rec.transfer_id IS NOT NULL THEN
            RETURN json_build_object('outcome', 'replayed', 'transfer', ledger_transfer_document(rec.transfer_id));
        END IF;
        RETURN json_build_object('outcome', 'replayed', 'error', rec.error);
    END IF;

    -- Lock every account involved once, in id order, so that transfers touching the same
    -- accounts in any order queue instead of deadlocking, and book what is due on them. The
    -- checks below read the locked rows. Taken under the locks, the transfer's time keeps one
    -- account's entries in time order as in sequence order.
    locked := ledger_lock_accounts(p_from || p_to, ledger_now(), p_reversal_of);
    posted_at := ledger_now();
    PERFORM ledger_book_due(locked, posted_at, p_headers);

    -- Per posting, in order: distinct accounts, both exist, each in the posting's currency and active.
    SELECT r.refusal INTO refusal
      FROM unnest(p_from, p_to, p_currency) WITH ORDINALITY AS p(from_id, to_id, code, i)
      LEFT JOIN account src ON src.id = p.from_id
      LEFT JOIN account dst ON dst.id = p.to_id
     CROSS JOIN LATERAL (SELECT COALESCE(
            CASE WHEN p.from_id = p.to_id THEN
                ledger_error('same_account', 'A transfer needs two different accounts.',
                             ledger_posting_field(p_single, p.i, 'to')) END,
            CASE WHEN src.id IS NULL THEN
                ledger_error('account_not_found', format('No account %s.', p.from_id),
                             ledger_posting_field(p_single, p.i, 'from')) END,
            CASE WHEN dst.id IS NULL THEN
                ledger_error('account_not_found', format('No account %s.', p.to_id),
                             ledger_posting_field(p_single, p.i, 'to')) END,
            ledger_account_refusal(src, ledger_posting_field(p_single, p.i, 'from'), p.code),
            ledger_account_refusal(dst, ledger_posting_field(p_single, p.i, 'to'), p.code)) AS refusal) r
     WHERE r.refusal IS NOT NULL
     ORDER BY p.i LIMIT 1;

    -- Per account, the net effect of all its postings (the overdraft rule is on the final
    -- balance, ADR 0016) and its highest balance on the way (its credits come first). The
    -- refusal names the failing posting: for insufficient funds, the account's debit with which
    -- its debits, in posting order, pass what it has (its credits in the transfer included);
    -- for a balance out of range, the account's largest posting.
    IF refusal IS NULL THEN
        SELECT CASE
                 WHEN a.overdraft_limit IS NOT NULL AND n.change < 0
                      AND a.balance - a.held + n.change < -a.overdraft_limit THEN
                     ledger_error('insufficient_funds',
                         format('Account %s has %s available; the transfer needs %s.', a.id,
                                a.balance::numeric - a.held + a.overdraft_limit, -n.change),
                         ledger_posting_field(p_single, f.failing, 'amount'),
                         jsonb_build_object('available', a.balance::numeric - a.held + a.overdraft_limit,
                                            'requested', -n.change))
                 ELSE
                     ledger_error('balance_out_of_range',
                         'The transfer would take a balance beyond the 64-bit range.',
                         ledger_posting_field(p_single, f.largest, 'amount'))
               END
          INTO refusal
          FROM (SELECT l.account_id,
                       coalesce(sum(l.amount) FILTER (WHERE NOT p_pending OR l.amount < 0), 0) AS change,
                       coalesce(sum(l.amount) FILTER (WHERE l.amount > 0), 0) AS credits,
                       coalesce(-sum(l.amount) FILTER (WHERE l.amount < 0), 0) AS debits
                  FROM unnest(p_from, p_to, p_amount) WITH ORDINALITY AS p(from_id, to_id, amount, i)
                 CROSS JOIN LATERAL (VALUES (p.from_id, -p.amount::numeric, p.i), (p.to_id, p.amount::numeric, p.i))
                       AS l(account_id, amount, i)
                 GROUP BY l.account_id) n
          JOIN (SELECT acc.*,
                       ledger_pending_debits(acc.id, posted_at)::numeric
                       + (SELECT coalesce(sum(g.amount - g.consumed - g.reserved - g.expired - g.voided), 0)
                            FROM credit_grant g
                           WHERE g.account_id = acc.id AND g.status = 'active' AND g.expires_at <= posted_at) AS held
                  FROM account acc WHERE acc.id = ANY (p_from || p_to)) a ON a.id = n.account_id
         CROSS JOIN LATERAL (
               SELECT (SELECT d.i FROM (SELECT q.i, sum(q.amount) OVER (ORDER BY q.i) AS spent
                                          FROM unnest(p_from, p_amount) WITH ORDINALITY AS q(from_id, amount, i)
                                         WHERE q.from_id = a.id) d
                        WHERE d.spent > a.balance - a.held + coalesce(a.overdraft_limit, 0) + n.change + n.debits
                        ORDER BY d.i LIMIT 1) AS failing,
                      (SELECT q.i FROM unnest(p_from, p_to, p_amount) WITH ORDINALITY AS q(from_id, to_id, amount, i)
                        WHERE a.id IN (q.from_id, q.to_id) ORDER BY q.amount DESC, q.i LIMIT 1) AS largest) f
         WHERE (a.overdraft_limit IS NOT NULL AND n.change < 0 AND a.balance - a.held + n.change < -a.overdraft_limit)
            OR a.balance + n.credits > 9223372036854775807
            OR a.balance + n.change < -9223372036854775808
            OR (p_pending AND (a.pending_debits + n.debits > 9223372036854775807
                               OR a.pending_credits + n.credits > 9223372036854775807))
         ORDER BY (a.overdraft_limit IS NOT NULL AND n.change < 0 AND a.balance - a.held + n.change < -a.overdraft_limit) DESC,
                  coalesce(f.failing, f.largest)
         LIMIT 1;
    END IF;
    IF refusal IS NOT NULL THEN
        UPDATE idempotency_record SET error = refusal WHERE key = p_key;
        RETURN json_build_object('outcome', 'refused', 'error', refusal);
    END IF;

    INSERT INTO transfer (id, idempotency_key, request_fingerprint, from_account_id, to_account_id, amount, currency,
                          posting_count, status, metadata, description, expires_at, reversal_of, created_at, updated_at)
    VALUES (p_transfer_id, p_key, p_fingerprint,
            CASE WHEN n_postings = 1 THEN p_from[1] END, CASE WHEN n_postings = 1 THEN p_to[1] END,
            CASE WHEN n_postings = 1 THEN p_amount[1] END, CASE WHEN n_postings = 1 THEN p_currency[1] END,
            n_postings, CASE WHEN p_pending THEN 'pending' ELSE 'posted' END, p_metadata, p_description,
            p_expires_at, p_reversal_of, posted_at, posted_at);

    IF p_pending THEN
        INSERT INTO transfer_hold (transfer_id, posting_index, from_account_id, to_account_id, currency, amount,
                                   expires_at, open)
        SELECT p_transfer_id, p.i - 1, p.from_id, p.to_id, p.code, p.amount, p_expires_at, true
          FROM unnest(p_from, p_to, p_amount, p_currency) WITH ORDINALITY AS p(from_id, to_id, amount, code, i);
        UPDATE account AS a SET pending_debits = a.pending_debits + h.debits,
                                pending_credits = a.pending_credits + h.credits
          FROM (SELECT l.account_id, sum(l.debit) AS debits, sum(l.credit) AS credits
                  FROM unnest(p_from, p_to, p_amount) AS p(from_id, to_id, amount)
                 CROSS JOIN LATERAL (VALUES (p.from_id, p.amount, 0::bigint), (p.to_id, 0::bigint, p.amount))
                       AS l(account_id, debit, credit)
                 GROUP BY l.account_id) AS h
         WHERE a.id = h.account_id;
        INSERT INTO outbox_event (event_id, topic, key, event_type, payload, headers, created_at, published_at)
        SELECT r.event_id, r.topic, r.key, r.event_type, r.payload, r.headers, r.created_at, r.published_at
          FROM outbox_event_row(p_event_ids[1], 'TransferPending', p_transfer_id::text, posted_at,
                           ledger_hold_event_data(p_transfer_id, posted_at), p_headers) AS r;
        PERFORM ledger_grants_apply(p_transfer_id, posted_at, p_headers);
    ELSIF p_reversal_of IS NOT NULL THEN
        PERFORM ledger_write_postings(p_transfer_id, p_from, p_to, p_amount, p_currency, p_entry_ids, p_event_ids,
                                      p_headers, posted_at);
        PERFORM ledger_grants_apply(p_transfer_id, posted_at, p_headers);
        PERFORM ledger_entry_events_allocations(p_transfer_id, p_event_ids);
    ELSE
        -- Each debit draws from its account's grants in the order ledger_grants_apply takes
        -- them (by account, then by posting: an account's debits follow its credits in
        -- sequence, in posting order), with the id its entry is written under just after.
        -- Only an account that has ever had a grant (one probe of credit_grant_account_id)
        -- draws, so that an account without grants pays no call. Not ledger_has_active_grants:
        -- its walk of the burn order would come before the draw's own, and a walk costs most
        -- where exhausted grants' index entries wait for a vacuum at the front of that order.
        FOR debit IN
            SELECT d.from_id, d.amount, p_entry_ids[2 * d.i - 1] AS entry_id
              FROM unnest(p_from, p_amount) WITH ORDINALITY AS d(from_id, amount, i)
             WHERE EXISTS (SELECT 1 FROM credit_grant g WHERE g.account_id = d.from_id)
             ORDER BY d.from_id, d.i
        LOOP
            PERFORM ledger_grants_draw(debit.from_id, debit.amount, 'draw', p_transfer_id, debit.entry_id, posted_at);
        END LOOP;
        PERFORM ledger_write_postings(p_transfer_id, p_from, p_to, p_amount, p_currency, p_entry_ids, p_event_ids,
                                      p_headers, posted_at);
    END IF;
    UPDATE idempotency_record SET transfer_id = p_transfer_id WHERE key = p_key;
    RETURN json_build_object('outcome', 'posted', 'transfer', ledger_transfer_document(p_transfer_id));
END;
$$;
