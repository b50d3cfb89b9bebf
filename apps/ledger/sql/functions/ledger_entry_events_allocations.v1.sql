-- Version 1 (0015_grants).
CREATE OR REPLACE FUNCTION ledger_entry_events_allocations(p_transfer_id uuid, p_event_ids uuid[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM grant_allocation WHERE transfer_id = p_transfer_id AND entry_id IS NOT NULL) THEN
        RETURN;
    END IF;
    -- Driven by the few event ids, whatever the number of unpublished events.
    UPDATE outbox_event o
       SET payload = jsonb_set(o.payload, '{data,allocations}', a.allocations)
      FROM (SELECT e.event_id,
                   (SELECT jsonb_agg(jsonb_build_object('grantId', x.grant_id, 'kind', x.kind, 'amount', x.amount)
                                     ORDER BY x.id)
                      FROM grant_allocation x
                     WHERE x.transfer_id = p_transfer_id
                       AND x.entry_id = (e.payload->'data'->>'entryId')::uuid) AS allocations
              FROM outbox_event e
             WHERE e.event_id = ANY (p_event_ids) AND e.event_type = 'EntryPosted' AND e.published_at IS NULL) a
     WHERE o.event_id = a.event_id AND a.allocations IS NOT NULL;
END;
$$;
