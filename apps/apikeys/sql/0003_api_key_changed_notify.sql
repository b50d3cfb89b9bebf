-- Every web process keeps the verdicts of the keys it has checked (apps/apikeys/verdicts.py)
-- and drops a key's at this notification, which PostgreSQL delivers when the change commits:
-- a revocation, or a change of scopes, name or secret, holds at the key's next request in every
-- process. The payload is the key's id; a TRUNCATE sends an empty one (forget every key). The
-- channel is verdicts.CHANGED_CHANNEL. The last use, written once a minute, changes no verdict
-- and notifies nobody.
CREATE FUNCTION api_key_changed_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('api_key_changed', CASE WHEN TG_LEVEL = 'ROW' THEN OLD.id::text ELSE '' END);
    RETURN NULL;
END
$$;

CREATE TRIGGER api_key_changed_update AFTER UPDATE ON api_key FOR EACH ROW
    WHEN ((to_jsonb(OLD) - 'last_used_at') IS DISTINCT FROM (to_jsonb(NEW) - 'last_used_at'))
    EXECUTE FUNCTION api_key_changed_notify();
CREATE TRIGGER api_key_changed_delete AFTER DELETE ON api_key FOR EACH ROW
    EXECUTE FUNCTION api_key_changed_notify();
CREATE TRIGGER api_key_changed_truncate AFTER TRUNCATE ON api_key FOR EACH STATEMENT
    EXECUTE FUNCTION api_key_changed_notify();

-- reverse:
DROP TRIGGER api_key_changed_truncate ON api_key;
DROP TRIGGER api_key_changed_delete ON api_key;
DROP TRIGGER api_key_changed_update ON api_key;
DROP FUNCTION api_key_changed_notify();
