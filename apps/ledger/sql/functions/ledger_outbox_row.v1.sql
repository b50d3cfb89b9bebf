-- Version 1 (0004_post_transfer): the ledger's own envelope builder; dropped by 0006.
CREATE OR REPLACE FUNCTION ledger_outbox_row(
    p_event_id uuid, p_topic text, p_key text, p_type text, p_aggregate_type text, p_occurred timestamptz,
    p_data jsonb, p_headers jsonb
) RETURNS outbox_event LANGUAGE sql STABLE AS $$
    SELECT NULL::bigint, p_event_id, p_topic, p_key, p_type,
           jsonb_build_object('eventId', p_event_id, 'type', p_type, 'version', 1, 'occurredAt', ledger_iso(p_occurred),
                              'aggregateType', p_aggregate_type, 'aggregateId', p_key, 'data', p_data),
           p_headers || jsonb_build_object('event_id', p_event_id::text, 'event_type', p_type),
           p_occurred, NULL::timestamptz
$$;
