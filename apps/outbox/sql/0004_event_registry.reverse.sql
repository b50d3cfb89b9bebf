DROP FUNCTION IF EXISTS outbox_event_row(uuid, text, text, timestamptz, jsonb, jsonb);
DROP TABLE IF EXISTS outbox_event_type;
