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

-- POST /transfers/{id}/post and /void, exactly once per key (ADR 0003) and in one round trip,
-- returning the outcome as ledger_post_transfer does: "settled" with the transfer document,
-- "replayed", "refused" (stored against the key), "conflict" or "invalid" (not stored: no such
-- transfer, or an amount for a transfer of several postings). p_command is 'post' or 'void';
-- p_amount (post only, NULL: all) posts less than held and releases the rest. A hold past its
-- expiry is expired here and refused. Ids: as ledger_write_postings; p_event_ids[1] is also the
-- TransferVoided or TransferExpired event.
CREATE FUNCTION ledger_hold_command(
    p_key text, p_fingerprint text, p_command text, p_transfer_id uuid, p_amount bigint,
    p_entry_ids uuid[], p_event_ids uuid[], p_headers jsonb
) RETURNS json LANGUAGE plpgsql AS $$
DECLARE
    rec idempotency_record%ROWTYPE;
    t transfer%ROWTYPE;
    refusal jsonb;
    acted_at timestamptz;
    postings record;
BEGIN
    SELECT * INTO t FROM transfer WHERE id = p_transfer_id;
    IF NOT FOUND THEN
        RETURN json_build_object('outcome', 'invalid',
            'error', ledger_error('transfer_not_found', format('No transfer %s.', p_transfer_id), NULL));
    END IF;
    IF p_amount IS NOT NULL AND t.posting_count > 1 THEN
        RETURN json_build_object('outcome', 'invalid',
            'error', ledger_error('invalid_request',
                'amount posts part of a hold of one posting only; a hold of several postings posts whole.', 'amount'));
    END IF;
    INSERT INTO idempotency_record (key, request_fingerprint, command, created_at)
    VALUES (p_key, p_fingerprint, p_command, now())
    ON CONFLICT (key) DO NOTHING;
    IF NOT FOUND THEN
        SELECT * INTO rec FROM idempotency_record WHERE key = p_key;
        IF rec.request_fingerprint <> p_fingerprint THEN
            RETURN json_build_object('outcome', 'conflict');
        ELSIF rec.transfer_id IS NOT NULL THEN
            RETURN json_build_object('outcome', 'replayed', 'transfer', ledger_transfer_document(rec.transfer_id));
        END IF;
        RETURN json_build_object('outcome', 'replayed', 'error', rec.error);
    END IF;

    -- The hold's accounts, then the transfer: the order every writer of a hold takes.
    PERFORM 1 FROM account
      WHERE id IN (SELECT from_account_id FROM transfer_hold WHERE transfer_id = p_transfer_id
                   UNION SELECT to_account_id FROM transfer_hold WHERE transfer_id = p_transfer_id)
      ORDER BY id FOR UPDATE;
    SELECT * INTO t FROM transfer WHERE id = p_transfer_id FOR UPDATE;
    acted_at := clock_timestamp();
    IF t.status = 'pending' AND t.expires_at <= acted_at THEN
        PERFORM ledger_hold_release(p_transfer_id, 'expired', p_event_ids[1], p_headers, acted_at);
        t.status := 'expired';
    END IF;
    IF t.status <> 'pending' THEN
        refusal := ledger_error('transfer_not_pending',
            format('Transfer %s is %s, not pending: it can no longer be posted or voided.', t.id, t.status),
            NULL, jsonb_build_object('transferStatus', t.status));
    ELSIF p_command = 'post' AND p_amount > t.amount THEN
        refusal := ledger_error('amount_exceeds_hold',
            format('Transfer %s holds %s; %s cannot be posted.', t.id, t.amount, p_amount),
            'amount', jsonb_build_object('heldAmount', t.amount, 'requested', p_amount));
    ELSIF p_command = 'post' THEN
        SELECT r.refusal INTO refusal
          FROM transfer_hold h
          JOIN account src ON src.id = h.from_account_id
          JOIN account dst ON dst.id = h.to_account_id
         CROSS JOIN LATERAL (SELECT coalesce(ledger_account_refusal(src, 'from', h.currency),
                                             ledger_account_refusal(dst, 'to', h.currency)) AS refusal) r
         WHERE h.transfer_id = p_transfer_id AND r.refusal IS NOT NULL
         ORDER BY h.posting_index LIMIT 1;
    END IF;
    IF refusal IS NOT NULL THEN
        UPDATE idempotency_record SET error = refusal WHERE key = p_key;
        RETURN json_build_object('outcome', 'refused', 'error', refusal);
    END IF;

    IF p_command = 'void' THEN
        PERFORM ledger_hold_release(p_transfer_id, 'voided', p_event_ids[1], p_headers, acted_at);
    ELSE
        SELECT array_agg(h.from_account_id ORDER BY h.posting_index) AS from_ids,
               array_agg(h.to_account_id ORDER BY h.posting_index) AS to_ids,
               array_agg(coalesce(p_amount, h.amount) ORDER BY h.posting_index) AS amounts,
               array_agg(h.currency ORDER BY h.posting_index) AS codes
          INTO postings
          FROM transfer_hold h WHERE h.transfer_id = p_transfer_id;
        PERFORM ledger_hold_release(p_transfer_id, 'posted', NULL, p_headers, acted_at);
        PERFORM ledger_write_postings(p_transfer_id, postings.from_ids, postings.to_ids, postings.amounts,
                                      postings.codes, p_entry_ids, p_event_ids, p_headers, acted_at);
    END IF;
    UPDATE idempotency_record SET transfer_id = p_transfer_id WHERE key = p_key;
    RETURN json_build_object('outcome', 'settled', 'transfer', ledger_transfer_document(p_transfer_id));
END;
$$;

-- The expiry task: release up to p_limit holds past their expiry, oldest expiry first, each as
-- 'expired' with the event id p_event_ids[i]. A hold whose accounts another transaction has
-- locked (it may be posting or voiding it) is skipped (SKIP LOCKED), for the next run.
-- Returns how many it expired.
CREATE FUNCTION ledger_holds_expire(p_limit integer, p_event_ids uuid[], p_headers jsonb)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    candidate uuid;
    wanted integer;
    locked integer;
    expired integer := 0;
    acted_at timestamptz;
BEGIN
    FOR candidate IN
        SELECT id FROM transfer WHERE status = 'pending' AND expires_at <= clock_timestamp()
         ORDER BY expires_at LIMIT p_limit
    LOOP
        SELECT count(*) INTO wanted FROM (SELECT from_account_id FROM transfer_hold WHERE transfer_id = candidate
                                          UNION SELECT to_account_id FROM transfer_hold WHERE transfer_id = candidate) x;
        SELECT count(*) INTO locked FROM (
            SELECT 1 FROM account
             WHERE id IN (SELECT from_account_id FROM transfer_hold WHERE transfer_id = candidate
                          UNION SELECT to_account_id FROM transfer_hold WHERE transfer_id = candidate)
             ORDER BY id FOR UPDATE SKIP LOCKED) x;
        CONTINUE WHEN locked < wanted;
        PERFORM 1 FROM transfer WHERE id = candidate AND status = 'pending' FOR UPDATE;
        CONTINUE WHEN NOT FOUND;
        acted_at := clock_timestamp();
        expired := expired + 1;
        PERFORM ledger_hold_release(candidate, 'expired', p_event_ids[expired], p_headers, acted_at);
    END LOOP;
    RETURN expired;
END;
$$;

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
