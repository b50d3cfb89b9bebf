-- Holds (pending transfers, docs/domain.md "Holds"): a transfer created with pending reserves
-- its postings (transfer_hold rows, account.pending_debits/pending_credits) and writes no
-- entries; POST /transfers/{id}/post posts it (all, or less for a single posting), /void
-- releases it, and past its expires_at it expires. One of the three wins: each locks the
-- hold's accounts in id order and then the transfer, and acts only on a pending transfer.

-- What an account's open, unexpired holds reserve at an instant: expired holds not yet
-- released by the expiry task count for nothing, in the reads and in the overdraft rule.
CREATE FUNCTION ledger_pending_debits(p_account_id uuid, p_at timestamptz) RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(amount), 0)::bigint FROM transfer_hold
     WHERE from_account_id = p_account_id AND open AND (expires_at IS NULL OR expires_at > p_at)
$$;
CREATE FUNCTION ledger_pending_credits(p_account_id uuid, p_at timestamptz) RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(amount), 0)::bigint FROM transfer_hold
     WHERE to_account_id = p_account_id AND open AND (expires_at IS NULL OR expires_at > p_at)
$$;

-- The data of TransferPending, TransferVoided and TransferExpired (docs/events.md): the hold
-- with its status, postings as held.
CREATE FUNCTION ledger_hold_event_data(p_transfer_id uuid, p_at timestamptz) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'transferId', t.id, 'idempotencyKey', t.idempotency_key, 'from', t.from_account_id, 'to', t.to_account_id,
        'amount', t.amount, 'currency', t.currency, 'status', t.status, 'metadata', t.metadata,
        'description', t.description, 'createdAt', ledger_iso(t.created_at), 'expiresAt', ledger_iso(t.expires_at),
        'occurredAt', ledger_iso(p_at),
        'postings', (SELECT jsonb_agg(jsonb_build_object('from', h.from_account_id, 'to', h.to_account_id,
                                                         'amount', h.amount, 'currency', h.currency)
                                      ORDER BY h.posting_index)
                       FROM transfer_hold h WHERE h.transfer_id = t.id))
      FROM transfer t WHERE t.id = p_transfer_id
$$;

-- Close the open hold of transfer p_transfer_id (its accounts and the transfer locked by the
-- caller): status p_status, its amounts off the accounts' pending totals, and, unless it is
-- being posted, the TransferVoided or TransferExpired event.
CREATE FUNCTION ledger_hold_release(p_transfer_id uuid, p_status text, p_event_id uuid, p_headers jsonb,
                                    p_at timestamptz) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE transfer SET status = p_status, updated_at = p_at WHERE id = p_transfer_id;
    UPDATE account AS a SET pending_debits = a.pending_debits - r.debits, pending_credits = a.pending_credits - r.credits
      FROM (SELECT l.account_id, sum(l.debit) AS debits, sum(l.credit) AS credits
              FROM transfer_hold h
             CROSS JOIN LATERAL (VALUES (h.from_account_id, h.amount, 0::bigint), (h.to_account_id, 0::bigint, h.amount))
                   AS l(account_id, debit, credit)
             WHERE h.transfer_id = p_transfer_id AND h.open
             GROUP BY l.account_id) AS r
     WHERE a.id = r.account_id;
    UPDATE transfer_hold SET open = false WHERE transfer_id = p_transfer_id AND open;
    IF p_status = 'voided' THEN
        INSERT INTO outbox_event (event_id, topic, key, event_type, payload, headers, created_at, published_at)
        SELECT r.event_id, r.topic, r.key, r.event_type, r.payload, r.headers, r.created_at, r.published_at
          FROM outbox_event_row(p_event_id, 'TransferVoided', p_transfer_id::text, p_at,
                                ledger_hold_event_data(p_transfer_id, p_at), p_headers) AS r;
    ELSIF p_status = 'expired' THEN
        INSERT INTO outbox_event (event_id, topic, key, event_type, payload, headers, created_at, published_at)
        SELECT r.event_id, r.topic, r.key, r.event_type, r.payload, r.headers, r.created_at, r.published_at
          FROM outbox_event_row(p_event_id, 'TransferExpired', p_transfer_id::text, p_at,
                                ledger_hold_event_data(p_transfer_id, p_at), p_headers) AS r;
    END IF;
END;
$$;

\ir functions/ledger_hold_command.v1.sql

\ir functions/ledger_holds_expire.v1.sql

-- Hold rows never change but to close, and are never deleted.
CREATE FUNCTION ledger_hold_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR NOT OLD.open OR NEW.open
       OR (NEW.transfer_id, NEW.posting_index, NEW.from_account_id, NEW.to_account_id, NEW.currency, NEW.amount,
           NEW.expires_at) IS DISTINCT FROM
          (OLD.transfer_id, OLD.posting_index, OLD.from_account_id, OLD.to_account_id, OLD.currency, OLD.amount,
           OLD.expires_at) THEN
        RAISE EXCEPTION 'hold % of transfer % may only close: % refused', OLD.posting_index, OLD.transfer_id, TG_OP
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER transfer_hold_immutable BEFORE UPDATE OR DELETE ON transfer_hold
    FOR EACH ROW EXECUTE FUNCTION ledger_hold_immutable();

-- At commit: an account's pending totals are the sums of its open holds.
CREATE FUNCTION ledger_check_account_pending(p_account_id uuid) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    a account%ROWTYPE;
    debits numeric;
    credits numeric;
BEGIN
    SELECT * INTO a FROM account WHERE id = p_account_id;
    SELECT coalesce(sum(amount), 0) INTO debits FROM transfer_hold WHERE from_account_id = p_account_id AND open;
    SELECT coalesce(sum(amount), 0) INTO credits FROM transfer_hold WHERE to_account_id = p_account_id AND open;
    IF a.pending_debits <> debits OR a.pending_credits <> credits THEN
        RAISE EXCEPTION 'account % pending debits % and credits % disagree with its open holds (% and %)',
            p_account_id, a.pending_debits, a.pending_credits, debits, credits USING ERRCODE = 'check_violation';
    END IF;
END;
$$;
CREATE FUNCTION ledger_account_pending_deferred_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ledger_check_account_pending(NEW.id);
    RETURN NULL;
END;
$$;
CREATE CONSTRAINT TRIGGER account_pending_matches_holds AFTER UPDATE OF pending_debits, pending_credits ON account
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_account_pending_deferred_check();
CREATE FUNCTION ledger_hold_deferred_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ledger_check_transfer(NEW.transfer_id);
    PERFORM ledger_check_account_pending(NEW.from_account_id);
    PERFORM ledger_check_account_pending(NEW.to_account_id);
    RETURN NULL;
END;
$$;
CREATE CONSTRAINT TRIGGER transfer_hold_checked AFTER INSERT OR UPDATE ON transfer_hold
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_hold_deferred_check();

\ir functions/ledger_transfer_immutable.v4.sql
\ir functions/ledger_check_transfer.v3.sql
\ir functions/ledger_transfer_document.v3.sql
\ir functions/ledger_write_postings.v1.sql
DROP FUNCTION ledger_post_transfer(text, text, boolean, uuid[], uuid[], bigint[], text[], jsonb, text, uuid, uuid[],
                                   uuid[], jsonb);
\ir functions/ledger_post_transfer.v4.sql

-- reverse:
DROP FUNCTION ledger_post_transfer(text, text, boolean, uuid[], uuid[], bigint[], text[], jsonb, text, uuid, uuid[],
                                   uuid[], jsonb, boolean, timestamptz);
\ir functions/ledger_post_transfer.v3.sql
DROP FUNCTION ledger_write_postings(uuid, uuid[], uuid[], bigint[], text[], uuid[], uuid[], jsonb, timestamptz);
\ir functions/ledger_transfer_document.v2.sql
\ir functions/ledger_check_transfer.v2.sql
\ir functions/ledger_transfer_immutable.v3.sql
DROP TRIGGER transfer_hold_checked ON transfer_hold;
DROP FUNCTION ledger_hold_deferred_check();
DROP TRIGGER account_pending_matches_holds ON account;
DROP FUNCTION ledger_account_pending_deferred_check();
DROP FUNCTION ledger_check_account_pending(uuid);
DROP TRIGGER transfer_hold_immutable ON transfer_hold;
DROP FUNCTION ledger_hold_immutable();
DROP FUNCTION ledger_holds_expire(integer, uuid[], jsonb);
DROP FUNCTION ledger_hold_command(text, text, text, uuid, bigint, uuid[], uuid[], jsonb);
DROP FUNCTION ledger_hold_release(uuid, text, uuid, jsonb, timestamptz);
DROP FUNCTION ledger_hold_event_data(uuid, timestamptz);
DROP FUNCTION ledger_pending_credits(uuid, timestamptz);
DROP FUNCTION ledger_pending_debits(uuid, timestamptz);
