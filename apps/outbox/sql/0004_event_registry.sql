-- The event registry (apps/outbox/registry.py) as SQL sees it, and the one builder of the
-- envelope. Not a Django model, so a test's flush leaves it alone; apps.py fills it from the
-- registry after every migrate. Code that emits events names only the type: the topic, the
-- version and the aggregate type come from here.
CREATE TABLE outbox_event_type (
    name text PRIMARY KEY,
    topic text NOT NULL,
    version integer NOT NULL,
    aggregate_type text NOT NULL
);

-- The outbox row of one event, envelope included (docs/events.md). Returns outbox_event's row
-- type (id NULL) so that callers write all their events in one INSERT.
CREATE FUNCTION outbox_event_row(
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

-- reverse:
DROP FUNCTION IF EXISTS outbox_event_row(uuid, text, text, timestamptz, jsonb, jsonb);
DROP TABLE IF EXISTS outbox_event_type;
