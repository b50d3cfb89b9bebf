-- Version 1 (0004_event_registry).
CREATE OR REPLACE FUNCTION outbox_event_row(
    p_event_id uuid, p_type text, p_key text, p_occurred timestamptz, p_data jsonb, p_headers jsonb
) RETURNS outbox_event LANGUAGE plpgsql STABLE AS $$
DECLARE
    registered outbox_event_type%ROWTYPE;
BEGIN
    SELECT * INTO registered FROM outbox_event_type WHERE name = p_type;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'event type % is not in the event registry (apps/outbox/registry.py)', p_type;
    END IF;
    RETURN ROW(
        NULL::bigint, p_event_id, registered.topic, p_key, p_type,
        jsonb_build_object(
            'eventId', p_event_id, 'type', p_type, 'version', registered.version,
            'occurredAt', to_char(p_occurred AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
            'aggregateType', registered.aggregate_type, 'aggregateId', p_key, 'data', p_data),
        p_headers || jsonb_build_object('event_id', p_event_id::text, 'event_type', p_type),
        p_occurred, NULL::timestamptz)::outbox_event;
END;
$$;
