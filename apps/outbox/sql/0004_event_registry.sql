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
\ir functions/outbox_event_row.v1.sql

-- reverse:
DROP FUNCTION IF EXISTS outbox_event_row(uuid, text, text, timestamptz, jsonb, jsonb);
DROP TABLE IF EXISTS outbox_event_type;
