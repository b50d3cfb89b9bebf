-- Version 3 (0021_grant_debit_speed): each EntryPosted carries the allocations its entry has
-- when it is written (`allocations`, as ledger_entry_events_allocations adds them), so a debit
-- that drew from grants before its entries were written (ledger_post_transfer, version 7)
-- writes its events once instead of writing and then updating them. An entry without
-- allocations has no `allocations` key, as before. Otherwise as version 2.
CREATE OR REPLACE FUNCTION ledger_write_postings(
    p_transfer_id uuid, p_from uuid[], p_to uuid[], p_amount bigint[], p_currency text[],
    p_entry_ids uuid[], p_event_ids uuid[], p_headers jsonb, posted_at timestamptz
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    n_postings integer := cardinality(p_from);
    t transfer%ROWTYPE;
BEGIN
    SELECT * INTO t FROM transfer WHERE id = p_transfer_id;
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
                       jsonb_build_object('transferId', p_transfer_id, 'idempotencyKey', t.idempotency_key,
                           'from', CASE WHEN n_postings = 1 THEN p_from[1] END,
                           'to', CASE WHEN n_postings = 1 THEN p_to[1] END,
                           'amount', CASE WHEN n_postings = 1 THEN p_amount[1] END,
                           'currency', CASE WHEN n_postings = 1 THEN p_currency[1] END,
                           'status', 'posted', 'metadata', t.metadata, 'description', t.description,
                           'reversalOf', t.reversal_of,
                           'createdAt', ledger_iso(t.created_at),
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
                                         ledger_entry_event_data(v.e)
                                         || coalesce((SELECT jsonb_build_object('allocations',
                                                                 jsonb_agg(jsonb_build_object('grantId', x.grant_id,
                                                                                              'kind', x.kind,
                                                                                              'amount', x.amount)
                                                                           ORDER BY x.id))
                                                        FROM grant_allocation x
                                                       WHERE x.entry_id = (v.e).id
                                                      HAVING count(*) > 0), '{}'),
                                         p_headers)
              FROM entry_events v) AS o,
           LATERAL (SELECT (o.row_value).*) AS r
     ORDER BY o.n;
END;
$$;
