-- Version 4 (0011_reversals): p_reversal_of, the transfer a reversal reverses (called by
-- ledger_reverse_transfer), stored on the transfer and carried by TransferPosted as
-- `reversalOf`; NULL for every other transfer. Otherwise as version 3: one or more postings,
-- in any mix of currencies, posted together or not at all. Posting i moves p_amount[i] of
-- p_currency[i] from p_from[i] to p_to[i]. p_single says the request had the seed's single
-- form, whose refusals name `from`, `to`, `amount` or `currency` rather than
-- `postings[i].<field>`. Entry ids: 2i-1 and 2i are posting i's debit and credit; event ids:
-- 1 is TransferPosted, then one per entry.
CREATE OR REPLACE FUNCTION ledger_post_transfer(
    p_key text, p_fingerprint text, p_single boolean,
    p_from uuid[], p_to uuid[], p_amount bigint[], p_currency text[],
    p_metadata jsonb, p_description text,
    p_transfer_id uuid, p_entry_ids uuid[], p_event_ids uuid[], p_headers jsonb,
    p_reversal_of uuid DEFAULT NULL
) RETURNS json LANGUAGE plpgsql AS $$
DECLARE
    rec idempotency_record%ROWTYPE;
    refusal jsonb;
    n_postings integer := cardinality(p_from);
    posted_at timestamptz;
BEGIN
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
    -- accounts in any order queue instead of deadlocking. The checks below read the locked rows.
    PERFORM 1 FROM account WHERE id = ANY (p_from || p_to) ORDER BY id FOR UPDATE;

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
    -- balance, ADR 0016) and its highest balance on the way (its credits come first): the
    -- refusal names the account's first posting that debits it, or that touches it.
    IF refusal IS NULL THEN
        SELECT CASE
                 WHEN a.overdraft_limit IS NOT NULL AND n.change < 0 AND a.balance + n.change < -a.overdraft_limit THEN
                     ledger_error('insufficient_funds',
                         format('Account %s has %s available; the transfer needs %s.', a.id,
                                a.balance::numeric + a.overdraft_limit, -n.change),
                         ledger_posting_field(p_single, n.first_debit, 'amount'),
                         jsonb_build_object('available', a.balance::numeric + a.overdraft_limit,
                                            'requested', -n.change))
                 ELSE
                     ledger_error('balance_out_of_range',
                         'The transfer would take a balance beyond the 64-bit range.',
                         ledger_posting_field(p_single, n.first_posting, 'amount'))
               END
          INTO refusal
          FROM (SELECT l.account_id, sum(l.amount) AS change, coalesce(sum(l.amount) FILTER (WHERE l.amount > 0), 0) AS credits,
                       min(l.i) FILTER (WHERE l.amount < 0) AS first_debit, min(l.i) AS first_posting
                  FROM unnest(p_from, p_to, p_amount) WITH ORDINALITY AS p(from_id, to_id, amount, i)
                 CROSS JOIN LATERAL (VALUES (p.from_id, -p.amount::numeric, p.i), (p.to_id, p.amount::numeric, p.i))
                       AS l(account_id, amount, i)
                 GROUP BY l.account_id) n
          JOIN account a ON a.id = n.account_id
         WHERE (a.overdraft_limit IS NOT NULL AND n.change < 0 AND a.balance + n.change < -a.overdraft_limit)
            OR a.balance + n.credits > 9223372036854775807
            OR a.balance + n.change < -9223372036854775808
         ORDER BY (a.overdraft_limit IS NOT NULL AND n.change < 0 AND a.balance + n.change < -a.overdraft_limit) DESC,
                  coalesce(n.first_debit, n.first_posting)
         LIMIT 1;
    END IF;
    IF refusal IS NOT NULL THEN
        UPDATE idempotency_record SET error = refusal WHERE key = p_key;
        RETURN json_build_object('outcome', 'refused', 'error', refusal);
    END IF;

    -- Taken under the locks, so one account's entries are in time order as in sequence order.
    posted_at := clock_timestamp();

    INSERT INTO transfer (id, idempotency_key, request_fingerprint, from_account_id, to_account_id, amount, currency,
                          posting_count, status, metadata, description, reversal_of, created_at, updated_at)
    VALUES (p_transfer_id, p_key, p_fingerprint,
            CASE WHEN n_postings = 1 THEN p_from[1] END, CASE WHEN n_postings = 1 THEN p_to[1] END,
            CASE WHEN n_postings = 1 THEN p_amount[1] END, CASE WHEN n_postings = 1 THEN p_currency[1] END,
            n_postings, 'posted', p_metadata, p_description, p_reversal_of, posted_at, posted_at);

    -- An account in several postings gets consecutive sequences, its credits first, so that no
    -- balance on its way to the final one is lower than both its start and its end. Inserted
    -- in sequence order: the entry_chain trigger reads each entry's predecessor.
    WITH legs AS (
        SELECT 2 * p.i - 1 AS k, p.from_id AS account_id, p.to_id AS counterparty_id, p.code, -p.amount AS amount, p.i
          FROM unnest(p_from, p_to, p_amount, p_currency) WITH ORDINALITY AS p(from_id, to_id, amount, code, i)
        UNION ALL
        SELECT 2 * p.i, p.to_id, p.from_id, p.code, p.amount, p.i
          FROM unnest(p_from, p_to, p_amount, p_currency) WITH ORDINALITY AS p(from_id, to_id, amount, code, i)
    ),
    entries AS (
        INSERT INTO entry AS e (id, transfer_id, account_id, counterparty_id, currency, amount, sequence, balance_after,
                                posting_index, created_at)
        SELECT p_entry_ids[l.k], p_transfer_id, l.account_id, l.counterparty_id, l.code, l.amount,
               a.last_sequence + row_number() OVER w, a.balance + sum(l.amount) OVER w, l.i - 1, posted_at
          FROM legs l JOIN account a ON a.id = l.account_id
        WINDOW w AS (PARTITION BY l.account_id ORDER BY l.amount > 0 DESC, l.i ROWS UNBOUNDED PRECEDING)
         ORDER BY l.account_id, 7
        RETURNING e
    ),
    moved AS (
        UPDATE account AS a SET balance = (latest.e).balance_after, last_sequence = (latest.e).sequence,
                                updated_at = posted_at
          FROM (SELECT DISTINCT ON ((x.e).account_id) x.e FROM entries x
                 ORDER BY (x.e).account_id, (x.e).sequence DESC) AS latest
         WHERE a.id = (latest.e).account_id
    ),
    -- EntryPosted events in each account's sequence order (the relay publishes in id order).
    entry_events AS (
        SELECT ranked.e, row_number() OVER (ORDER BY ranked.step, (ranked.e).posting_index, (ranked.e).amount) AS n
          FROM (SELECT x.e, (x.e).sequence - min((x.e).sequence) OVER (PARTITION BY (x.e).account_id) AS step
                  FROM entries x) AS ranked
    )
    INSERT INTO outbox_event (event_id, topic, key, event_type, payload, headers, created_at, published_at)
    SELECT r.event_id, r.topic, r.key, r.event_type, r.payload, r.headers, r.created_at, r.published_at
      FROM (SELECT 0 AS n,
                   outbox_event_row(p_event_ids[1], 'TransferPosted', p_transfer_id::text, posted_at,
                       jsonb_build_object('transferId', p_transfer_id, 'idempotencyKey', p_key,
                           'from', CASE WHEN n_postings = 1 THEN p_from[1] END,
                           'to', CASE WHEN n_postings = 1 THEN p_to[1] END,
                           'amount', CASE WHEN n_postings = 1 THEN p_amount[1] END,
                           'currency', CASE WHEN n_postings = 1 THEN p_currency[1] END,
                           'status', 'posted', 'metadata', p_metadata, 'description', p_description,
                           'reversalOf', p_reversal_of,
                           'createdAt', ledger_iso(posted_at),
                           'postings', (SELECT jsonb_agg(jsonb_build_object('from', p.from_id, 'to', p.to_id,
                                                                             'amount', p.amount, 'currency', p.code)
                                                         ORDER BY p.i)
                                          FROM unnest(p_from, p_to, p_amount, p_currency) WITH ORDINALITY
                                               AS p(from_id, to_id, amount, code, i)),
                           'entries', (SELECT jsonb_agg(ledger_entry_event_data(x.e)
                                                        ORDER BY (x.e).posting_index, (x.e).amount)
                                         FROM entries x)),
                       p_headers) AS row_value
            UNION ALL
            SELECT v.n, outbox_event_row(p_event_ids[1 + v.n], 'EntryPosted', (v.e).account_id::text, posted_at,
                                         ledger_entry_event_data(v.e), p_headers)
              FROM entry_events v) AS o,
           LATERAL (SELECT (o.row_value).*) AS r
     ORDER BY o.n;
    UPDATE idempotency_record SET transfer_id = p_transfer_id WHERE key = p_key;
    RETURN json_build_object('outcome', 'posted', 'transfer', ledger_transfer_document(p_transfer_id));
END;
$$;
