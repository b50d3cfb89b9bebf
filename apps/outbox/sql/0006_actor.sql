-- Who did it (issue 12): the actor a write records, as its transaction set it
-- (in_durable_transaction: the setting ledger.actor, local to the transaction), else `system`,
-- the ledger's own bookings. A session that once set it reads '' after its transaction ends,
-- hence nullif. Every `actor` column defaults to it, and every event's envelope carries it.
CREATE FUNCTION write_actor() RETURNS text LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('ledger.actor', true), ''), 'system')
$$;
\ir functions/outbox_event_row.v2.sql

-- reverse:
\ir functions/outbox_event_row.v1.sql
DROP FUNCTION write_actor();
