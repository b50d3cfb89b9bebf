-- Version 1 (0020_group_commit): post a group of transfer requests in the caller's
-- transaction, in one call (docs/adr/0021-group-commit.md). Every account of the group is
-- locked first, once, in id order, so two groups over the same accounts queue instead of
-- deadlocking; then each item is posted by ledger_post_transfer, in order, under its own
-- actor (`ledger.actor`, which the rows it writes and its events record). Each item answers
-- with its own outcome (posted, replayed, refused, conflict or invalid), never an exception,
-- so one refused item never aborts its neighbours; the answer is the array of outcomes, in
-- the items' order. An item is the JSON object built by apps/ledger/services.py
-- (_transfer_group_item): key, fingerprint, single, from, to, amount, currency, metadata,
-- description, transferId, entryIds, eventIds, headers, pending, expiresAt, actor.
CREATE OR REPLACE FUNCTION ledger_post_transfers(p_items jsonb) RETURNS json LANGUAGE plpgsql AS $$
DECLARE
    item jsonb;
    outcomes json[] := '{}';
BEGIN
    PERFORM 1 FROM account
      WHERE id IN (SELECT jsonb_array_elements_text((i.item->'from') || (i.item->'to'))::uuid
                     FROM jsonb_array_elements(p_items) AS i(item))
      ORDER BY id FOR UPDATE;
    FOR item IN SELECT i.item FROM jsonb_array_elements(p_items) AS i(item) LOOP
        PERFORM set_config('ledger.actor', item->>'actor', true);
        outcomes := outcomes || ledger_post_transfer(
            item->>'key', item->>'fingerprint', (item->>'single')::boolean,
            ARRAY(SELECT jsonb_array_elements_text(item->'from')::uuid),
            ARRAY(SELECT jsonb_array_elements_text(item->'to')::uuid),
            ARRAY(SELECT jsonb_array_elements_text(item->'amount')::bigint),
            ARRAY(SELECT jsonb_array_elements_text(item->'currency')),
            item->'metadata', item->>'description',
            (item->>'transferId')::uuid,
            ARRAY(SELECT jsonb_array_elements_text(item->'entryIds')::uuid),
            ARRAY(SELECT jsonb_array_elements_text(item->'eventIds')::uuid),
            item->'headers', (item->>'pending')::boolean, (item->>'expiresAt')::timestamptz);
    END LOOP;
    RETURN array_to_json(outcomes);
END;
$$;
