-- Credit grants (docs/credits.md, ADR 0018): lots of credits on an account that take effect,
-- burn down in a fixed order and expire, each movement a grant_allocation row and each
-- expiry or void a double-entry transfer. Scheduled effects (a grant's activation and
-- expiry, a hold's expiry) are booked under the account locks by the first command that
-- touches the account after their time (ledger_book_due), and by a beat task for idle
-- accounts; until then every read and every debit computes them from the clock.

-- A grant's counters change with every debit that draws from it: room on each page lets
-- PostgreSQL update them in place (HOT, no new index entries), since no index covers them.
ALTER TABLE credit_grant SET (fillfactor = 70);

-- The ledger's clock. Tests move it with `SET ledger.clock_offset = '40 days'`; nothing else
-- sets it. Every time the ledger stamps or compares from here on is read from it.
CREATE FUNCTION ledger_now() RETURNS timestamptz LANGUAGE sql VOLATILE AS $$
    SELECT clock_timestamp() + coalesce(nullif(current_setting('ledger.clock_offset', true), ''), '0')::interval
$$;

-- A UUIDv7 (RFC 9562) for the rows a booking writes without the caller's ids: 48 bits of
-- Unix milliseconds, then random bits, version 7 and the RFC variant.
CREATE FUNCTION ledger_uuid7() RETURNS uuid LANGUAGE sql VOLATILE AS $$
    SELECT encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid())
                                          PLACING substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                                          FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid
$$;

-- A grant's status at p_at: the booked one, or what its time makes it before the booking.
CREATE FUNCTION ledger_grant_status(g credit_grant, p_at timestamptz) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE
             WHEN g.status IN ('scheduled', 'active') AND g.expires_at <= p_at THEN 'expired'
             WHEN g.status = 'scheduled' AND g.effective_at <= p_at THEN 'active'
             ELSE g.status
           END
$$;

-- What of an account's balance and pending credits its grants' time has changed at p_at but
-- no booking yet: + the amount of grants taken effect (their pending credit posts), - the
-- remainder of grants past their expiry.
CREATE FUNCTION ledger_grants_unbooked(p_account_id uuid, p_at timestamptz,
                                       OUT balance bigint, OUT pending_credits bigint)
LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(CASE WHEN g.status = 'scheduled' AND g.effective_at <= p_at THEN g.amount ELSE 0 END)
                    - sum(CASE WHEN g.expires_at <= p_at
                               THEN g.amount - g.consumed - g.reserved - g.expired - g.voided ELSE 0 END), 0)::bigint,
           coalesce(-sum(CASE WHEN g.status = 'scheduled' AND g.effective_at <= p_at THEN g.amount ELSE 0 END), 0)::bigint
      FROM credit_grant g
     WHERE g.account_id = p_account_id AND g.status IN ('scheduled', 'active')
       AND (g.effective_at <= p_at AND g.status = 'scheduled' OR g.expires_at <= p_at)
$$;

-- The grant as the API shows it at p_at (its status, remaining and expired as its time makes
-- them, booked or not).
CREATE FUNCTION ledger_grant_document(p_grant_id uuid, p_at timestamptz) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'grantId', g.id, 'accountId', g.account_id, 'transferId', g.transfer_id,
        'from', g.funding_account_id, 'expireTo', g.expire_to_account_id, 'currency', g.currency,
        'amount', g.amount,
        'remaining', CASE WHEN lapsed OR g.status = 'voided' THEN 0
                          ELSE g.amount - g.consumed - g.reserved - g.expired - g.voided END,
        'consumed', g.consumed, 'reserved', g.reserved,
        'expired', g.expired + CASE WHEN lapsed THEN g.amount - g.consumed - g.reserved - g.expired - g.voided ELSE 0 END,
        -- A grant voided before it took effect never had its credits: all of it is voided.
        'voided', CASE WHEN g.status = 'voided' THEN g.amount - g.consumed - g.reserved - g.expired ELSE g.voided END,
        'priority', g.priority,
        'effectiveAt', ledger_iso(g.effective_at), 'expiresAt', ledger_iso(g.expires_at),
        'status', ledger_grant_status(g, p_at), 'description', g.description, 'metadata', g.metadata,
        'createdAt', ledger_iso(g.created_at), 'updatedAt', ledger_iso(g.updated_at))
      FROM credit_grant g
     CROSS JOIN LATERAL (SELECT g.status IN ('scheduled', 'active') AND g.expires_at <= p_at AS lapsed) l
     WHERE g.id = p_grant_id
$$;

-- An account's balance at p_at as its grants' times make it: the posted balance after its
-- last entry posted at or before p_at, plus the bookings posted later whose effect happened
-- by then (a scheduled grant's activation at its effectiveAt, an expiry at its expiresAt,
-- kept in the booking's metadata as `effectiveAt`; the explanation places them the same
-- way), plus what is due by then and not booked at all yet.
-- Every probe is by the account, so an account without grants pays two empty index lookups.
\ir functions/ledger_balance_at.v1.sql

-- Every account a command must lock, in id order: p_ids; the accounts of transfer
-- p_transfer_id (its holds and entries) and the funding and expire-to accounts of the grants
-- it allocated (a release or restore to a closed grant books at once); and, for the accounts
-- named directly, the counterparts of what is due at p_at (grants to activate or expire,
-- holds to expire and the grants those reserved).
CREATE FUNCTION ledger_lock_set(p_ids uuid[], p_at timestamptz, p_transfer_id uuid) RETURNS uuid[]
LANGUAGE plpgsql STABLE AS $$
BEGIN
    -- The common case, a new transfer between accounts with nothing due: three index probes.
    IF p_transfer_id IS NULL
       AND NOT EXISTS (SELECT 1 FROM credit_grant g
                        WHERE g.account_id = ANY (p_ids) AND g.status = 'scheduled' AND g.effective_at <= p_at)
       -- Each account's earliest expiry, one ordered probe each: a generic plan of the plain
       -- condition scans every grant, since it cannot know that few expire by p_at.
       AND NOT EXISTS (SELECT 1 FROM unnest(p_ids) AS x(id)
                        CROSS JOIN LATERAL (SELECT g.expires_at FROM credit_grant g
                                             WHERE g.account_id = x.id AND g.status IN ('scheduled', 'active')
                                               AND g.expires_at IS NOT NULL
                                             ORDER BY g.expires_at LIMIT 1) AS earliest
                        WHERE earliest.expires_at <= p_at)
       AND NOT EXISTS (SELECT 1 FROM transfer_hold h
                        WHERE h.open AND h.expires_at <= p_at
                          AND (h.from_account_id = ANY (p_ids) OR h.to_account_id = ANY (p_ids))) THEN
        RETURN ARRAY(SELECT DISTINCT x FROM unnest(p_ids) AS x ORDER BY x);
    END IF;
    RETURN (
    WITH direct AS (
        SELECT unnest(p_ids) AS id
        UNION SELECT h.from_account_id FROM transfer_hold h WHERE h.transfer_id = p_transfer_id
        UNION SELECT h.to_account_id FROM transfer_hold h WHERE h.transfer_id = p_transfer_id
        UNION SELECT e.account_id FROM entry e WHERE e.transfer_id = p_transfer_id
    ),
    due_holds AS (
        SELECT h.transfer_id FROM transfer_hold h
         WHERE h.open AND h.expires_at <= p_at AND h.from_account_id IN (SELECT id FROM direct)
        UNION
        SELECT h.transfer_id FROM transfer_hold h
         WHERE h.open AND h.expires_at <= p_at AND h.to_account_id IN (SELECT id FROM direct)
    ),
    allocating AS (SELECT p_transfer_id AS transfer_id UNION SELECT transfer_id FROM due_holds),
    wanted AS (
        SELECT id FROM direct
        UNION SELECT h.from_account_id FROM transfer_hold h WHERE h.transfer_id IN (SELECT transfer_id FROM due_holds)
        UNION SELECT h.to_account_id FROM transfer_hold h WHERE h.transfer_id IN (SELECT transfer_id FROM due_holds)
        UNION SELECT unnest(ARRAY[g.funding_account_id, g.expire_to_account_id])
                FROM grant_allocation a JOIN credit_grant g ON g.id = a.grant_id
               WHERE a.transfer_id IN (SELECT transfer_id FROM allocating)
        UNION SELECT g.funding_account_id FROM credit_grant g
               WHERE g.account_id IN (SELECT id FROM direct) AND g.status = 'scheduled' AND g.effective_at <= p_at
        UNION SELECT g.expire_to_account_id FROM credit_grant g
               WHERE g.account_id IN (SELECT id FROM direct) AND g.status IN ('scheduled', 'active')
                 AND g.expires_at <= p_at
    )
    SELECT coalesce(array_agg(id ORDER BY id), '{}') FROM wanted WHERE id IS NOT NULL
    );
END;
$$;

-- Lock ledger_lock_set's accounts in id order, the order every ledger writer takes; returns them.
CREATE FUNCTION ledger_lock_accounts(p_ids uuid[], p_at timestamptz, p_transfer_id uuid) RETURNS uuid[]
LANGUAGE plpgsql AS $$
DECLARE
    wanted uuid[] := ledger_lock_set(p_ids, p_at, p_transfer_id);
BEGIN
    PERFORM 1 FROM account WHERE id = ANY (wanted) ORDER BY id FOR UPDATE;
    RETURN wanted;
END;
$$;

-- Add to the EntryPosted events of transfer p_transfer_id among p_event_ids (not yet
-- published: written in this transaction) the grants each entry drew from, reserved for,
-- expired or restored (`allocations`, docs/events.md). One index probe when it has none.
\ir functions/ledger_entry_events_allocations.v1.sql

-- A posted transfer of one posting that the ledger books itself (a grant's expiry or void):
-- its own key `ledger:<id>`, claimed like any other so no request can reuse it, and its
-- entries and events as ledger_write_postings writes them, with the 3 event ids p_event_ids.
-- Returns its id.
CREATE FUNCTION ledger_system_transfer(p_from uuid, p_to uuid, p_amount bigint, p_currency text,
                                       p_description text, p_metadata jsonb, p_event_ids uuid[], p_at timestamptz,
                                       p_headers jsonb)
RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    transfer_id uuid := ledger_uuid7();
BEGIN
    INSERT INTO transfer (id, idempotency_key, request_fingerprint, from_account_id, to_account_id, amount, currency,
                          posting_count, status, metadata, description, created_at, updated_at)
    VALUES (transfer_id, 'ledger:' || transfer_id, 'ledger', p_from, p_to, p_amount, p_currency, 1, 'posted',
            p_metadata, p_description, p_at, p_at);
    INSERT INTO idempotency_record (key, request_fingerprint, transfer_id, created_at)
    VALUES ('ledger:' || transfer_id, 'ledger', transfer_id, p_at);
    PERFORM ledger_write_postings(transfer_id, ARRAY[p_from], ARRAY[p_to], ARRAY[p_amount], ARRAY[p_currency],
                                  ARRAY[ledger_uuid7(), ledger_uuid7()], p_event_ids, p_headers, p_at);
    RETURN transfer_id;
END;
$$;

-- Move p_amount of grant p_grant_id's credits out of its account: 'expire' to its expire-to
-- account, 'void' to its funding account, as a system transfer whose debit is allocated to
-- the grant. The caller sets the grant's status.
-- p_effective_at: when the booked effect happened, if before p_at (a grant's expiry, booked
-- by the first command or beat run after it); kept in the transfer's metadata as
-- `effectiveAt`, where balances at an instant and the explanation place the booking.
CREATE FUNCTION ledger_grant_book(p_grant_id uuid, p_kind text, p_amount bigint, p_description text,
                                  p_effective_at timestamptz, p_at timestamptz, p_headers jsonb)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    g credit_grant%ROWTYPE;
    booked uuid;
    events uuid[] := ARRAY[ledger_uuid7(), ledger_uuid7(), ledger_uuid7()];
BEGIN
    IF p_amount = 0 THEN
        RETURN;
    END IF;
    SELECT * INTO g FROM credit_grant WHERE id = p_grant_id;
    booked := ledger_system_transfer(
        g.account_id, CASE p_kind WHEN 'expire' THEN g.expire_to_account_id ELSE g.funding_account_id END,
        p_amount, g.currency,
        coalesce(p_description,
                 format(CASE p_kind WHEN 'expire' THEN 'Expiry of grant "%s"' ELSE 'Void of grant "%s"' END,
                        coalesce(g.description, g.id::text))),
        jsonb_strip_nulls(jsonb_build_object('grantId', g.id, 'effectiveAt', ledger_iso(p_effective_at))),
        events, p_at, p_headers);
    INSERT INTO grant_allocation (grant_id, transfer_id, entry_id, kind, amount, created_at)
    SELECT g.id, booked, e.id, p_kind, p_amount, p_at FROM entry e WHERE e.transfer_id = booked AND e.amount < 0;
    PERFORM ledger_entry_events_allocations(booked, events);
    UPDATE credit_grant
       SET expired = expired + CASE p_kind WHEN 'expire' THEN p_amount ELSE 0 END,
           voided = voided + CASE p_kind WHEN 'void' THEN p_amount ELSE 0 END,
           updated_at = p_at
     WHERE id = g.id;
END;
$$;

-- Move p_amount of expired grant p_grant_id's credits to its expire-to account (both locked)
-- and emit GrantExpired with it; p_effective_at as ledger_grant_book's.
CREATE FUNCTION ledger_grant_expire_amount(p_grant_id uuid, p_amount bigint, p_effective_at timestamptz,
                                           p_at timestamptz, p_headers jsonb) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    event_id uuid := ledger_uuid7();
BEGIN
    PERFORM ledger_grant_book(p_grant_id, 'expire', p_amount, NULL, p_effective_at, p_at, p_headers);
    UPDATE credit_grant SET status = 'expired', updated_at = p_at WHERE id = p_grant_id;
    INSERT INTO outbox_event (event_id, topic, key, event_type, payload, headers, created_at, published_at)
    SELECT r.event_id, r.topic, r.key, r.event_type, r.payload, r.headers, r.created_at, r.published_at
      FROM outbox_event_row(event_id, 'GrantExpired', p_grant_id::text, p_at,
                            ledger_grant_document(p_grant_id, p_at) || jsonb_build_object('expiredAmount', p_amount), p_headers) AS r;
END;
$$;

-- Expire grant p_grant_id (its account and expire-to account locked): its unreserved
-- remainder moves to the expire-to account, and it is expired. What its holds still reserve
-- expires when they release it (ledger_grant_settle).
CREATE FUNCTION ledger_grant_expire(p_grant_id uuid, p_at timestamptz, p_headers jsonb) RETURNS void
LANGUAGE sql AS $$
    SELECT ledger_grant_expire_amount(g.id, g.amount - g.consumed - g.reserved - g.expired - g.voided,
                                      least(g.expires_at, p_at), p_at, p_headers)
      FROM credit_grant g WHERE g.id = p_grant_id
$$;

-- Credits that came back to grant p_grant_id (a released reservation, a restored debit):
-- usable again while the grant lives; booked out at once when it has expired or was voided.
CREATE FUNCTION ledger_grant_settle(p_grant_id uuid, p_amount bigint, p_at timestamptz, p_headers jsonb)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    g credit_grant%ROWTYPE;
BEGIN
    SELECT * INTO g FROM credit_grant WHERE id = p_grant_id;
    IF g.status = 'voided' THEN
        PERFORM ledger_grant_book(g.id, 'void', p_amount, NULL, NULL, p_at, p_headers);
    ELSIF g.status = 'expired' THEN
        PERFORM ledger_grant_expire_amount(g.id, p_amount, NULL, p_at, p_headers);
    ELSIF g.expires_at <= p_at THEN
        PERFORM ledger_grant_expire(g.id, p_at, p_headers);
    ELSIF g.status = 'exhausted' THEN
        UPDATE credit_grant SET status = 'active', updated_at = p_at WHERE id = g.id;
    END IF;
END;
$$;

-- Release what transfer p_transfer_id (a hold being voided, expired or posted in part) still
-- reserves of any grant, and settle it.
CREATE FUNCTION ledger_grants_release(p_transfer_id uuid, p_at timestamptz, p_headers jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT a.grant_id, sum(CASE a.kind WHEN 'reserve' THEN a.amount ELSE -a.amount END)::bigint AS outstanding
          FROM grant_allocation a
         WHERE a.transfer_id = p_transfer_id AND a.kind IN ('reserve', 'post', 'release')
         GROUP BY a.grant_id
        HAVING sum(CASE a.kind WHEN 'reserve' THEN a.amount ELSE -a.amount END) > 0
         ORDER BY min(a.id)
    LOOP
        INSERT INTO grant_allocation (grant_id, transfer_id, kind, amount, created_at)
        VALUES (r.grant_id, p_transfer_id, 'release', r.outstanding, p_at);
        UPDATE credit_grant SET reserved = reserved - r.outstanding, updated_at = p_at WHERE id = r.grant_id;
        PERFORM ledger_grant_settle(r.grant_id, r.outstanding, p_at, p_headers);
    END LOOP;
END;
$$;

-- A hold p_transfer_id has just posted: each debit entry consumes the hold's reservations on
-- its account, in the order they were drawn, up to its amount ('post', with the entry); what
-- stays reserved (a hold posted in part) is released.
CREATE FUNCTION ledger_grants_consume(p_transfer_id uuid, p_at timestamptz, p_headers jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    e entry%ROWTYPE;
    r record;
    wanted bigint;
    taken bigint;
BEGIN
    FOR e IN SELECT * FROM entry WHERE transfer_id = p_transfer_id AND amount < 0 ORDER BY account_id, sequence LOOP
        wanted := -e.amount;
        FOR r IN
            SELECT a.grant_id, sum(CASE a.kind WHEN 'reserve' THEN a.amount ELSE -a.amount END)::bigint AS outstanding
              FROM grant_allocation a JOIN credit_grant g ON g.id = a.grant_id
             WHERE a.transfer_id = p_transfer_id AND g.account_id = e.account_id
               AND a.kind IN ('reserve', 'post', 'release')
             GROUP BY a.grant_id
            HAVING sum(CASE a.kind WHEN 'reserve' THEN a.amount ELSE -a.amount END) > 0
             ORDER BY min(a.id)
        LOOP
            EXIT WHEN wanted = 0;
            taken := least(wanted, r.outstanding);
            INSERT INTO grant_allocation (grant_id, transfer_id, entry_id, kind, amount, created_at)
            VALUES (r.grant_id, p_transfer_id, e.id, 'post', taken, p_at);
            UPDATE credit_grant
               SET reserved = reserved - taken, consumed = consumed + taken,
                   status = CASE WHEN status = 'active' AND amount - consumed - taken - expired - voided = 0
                                 THEN 'exhausted' ELSE status END,
                   updated_at = p_at
             WHERE id = r.grant_id;
            wanted := wanted - taken;
        END LOOP;
    END LOOP;
    PERFORM ledger_grants_release(p_transfer_id, p_at, p_headers);
END;
$$;

-- A reversal p_reversal_id has just posted: each credit entry gives back to the grants the
-- original's debit on that posting drew from, in reverse burn order. The debit drew its
-- grants first and the unrestricted balance last, so what is reversed goes back to the
-- unrestricted balance first, then to the grants, the last drawn first. Each restored
-- amount is settled (booked out at once if its grant has expired or was voided).
CREATE FUNCTION ledger_grants_restore(p_reversal_id uuid, p_at timestamptz, p_headers jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    original_id uuid;
    c entry%ROWTYPE;
    debit entry%ROWTYPE;
    drawn bigint;
    reversed_before bigint;
    to_grants bigint;
    r record;
    taken bigint;
BEGIN
    SELECT reversal_of INTO original_id FROM transfer WHERE id = p_reversal_id;
    FOR c IN SELECT * FROM entry WHERE transfer_id = p_reversal_id AND amount > 0 ORDER BY posting_index LOOP
        SELECT * INTO debit FROM entry
         WHERE transfer_id = original_id AND posting_index = c.posting_index AND amount < 0;
        SELECT coalesce(sum(amount), 0) INTO drawn FROM grant_allocation
         WHERE entry_id = debit.id AND kind IN ('draw', 'post');
        CONTINUE WHEN drawn = 0;
        SELECT coalesce(sum(e.amount), 0) INTO reversed_before
          FROM entry e JOIN transfer t ON t.id = e.transfer_id
         WHERE t.reversal_of = original_id AND t.id <> p_reversal_id
           AND e.posting_index = c.posting_index AND e.amount > 0;
        -- The debit's unrestricted part is -debit.amount - drawn; reversals fill it first.
        to_grants := greatest(0, reversed_before + c.amount - (-debit.amount - drawn))
                     - greatest(0, reversed_before - (-debit.amount - drawn));
        FOR r IN
            SELECT a.grant_id,
                   sum(a.amount) - coalesce((SELECT sum(x.amount) FROM grant_allocation x
                                               JOIN entry xe ON xe.id = x.entry_id
                                               JOIN transfer xt ON xt.id = x.transfer_id
                                              WHERE x.grant_id = a.grant_id AND x.kind = 'restore'
                                                AND xt.reversal_of = original_id
                                                AND xe.posting_index = c.posting_index), 0)::bigint AS restorable
              FROM grant_allocation a
             WHERE a.entry_id = debit.id AND a.kind IN ('draw', 'post')
             GROUP BY a.grant_id
             ORDER BY max(a.id) DESC
        LOOP
            EXIT WHEN to_grants = 0;
            CONTINUE WHEN r.restorable <= 0;
            taken := least(to_grants, r.restorable);
            INSERT INTO grant_allocation (grant_id, transfer_id, entry_id, kind, amount, created_at)
            VALUES (r.grant_id, p_reversal_id, c.id, 'restore', taken, p_at);
            UPDATE credit_grant SET consumed = consumed - taken, updated_at = p_at WHERE id = r.grant_id;
            PERFORM ledger_grant_settle(r.grant_id, taken, p_at, p_headers);
            to_grants := to_grants - taken;
        END LOOP;
    END LOOP;
END;
$$;

-- Whether the account has an active grant: the first in burn order, by the index that keeps
-- them (a plain EXISTS may be planned as a scan that meets every exhausted grant first).
\ir functions/ledger_has_active_grants.v1.sql

-- The grants part of a transfer just written by ledger_post_transfer: a reversal restores
-- what its original drew; each posted debit on an account with live grants draws from them;
-- a hold reserves from them what it holds on each account.
CREATE FUNCTION ledger_grants_apply(p_transfer_id uuid, p_at timestamptz, p_headers jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    t transfer%ROWTYPE;
    r record;
BEGIN
    SELECT * INTO t FROM transfer WHERE id = p_transfer_id;
    IF t.reversal_of IS NOT NULL THEN
        PERFORM ledger_grants_restore(p_transfer_id, p_at, p_headers);
    END IF;
    IF t.status = 'pending' THEN
        FOR r IN
            SELECT h.from_account_id, sum(h.amount) AS amount FROM transfer_hold h
             WHERE h.transfer_id = p_transfer_id AND ledger_has_active_grants(h.from_account_id)
             GROUP BY h.from_account_id ORDER BY h.from_account_id
        LOOP
            PERFORM ledger_grants_draw(r.from_account_id, r.amount::bigint, 'reserve', p_transfer_id, NULL, p_at);
        END LOOP;
    ELSE
        FOR r IN
            SELECT e.id, e.account_id, e.amount FROM entry e
             WHERE e.transfer_id = p_transfer_id AND e.amount < 0 AND ledger_has_active_grants(e.account_id)
             ORDER BY e.account_id, e.sequence
        LOOP
            PERFORM ledger_grants_draw(r.account_id, -r.amount, 'draw', p_transfer_id, r.id, p_at);
        END LOOP;
    END IF;
END;
$$;

-- Activate scheduled grant p_grant_id (its account and funding account locked): post the
-- hold that reserved its credits, so they land on the account, in the grant.
CREATE FUNCTION ledger_grant_activate(p_grant_id uuid, p_at timestamptz, p_headers jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    g credit_grant%ROWTYPE;
    event_id uuid := ledger_uuid7();
    events uuid[] := ARRAY[ledger_uuid7(), ledger_uuid7(), ledger_uuid7()];
BEGIN
    SELECT * INTO g FROM credit_grant WHERE id = p_grant_id;
    PERFORM 1 FROM transfer WHERE id = g.transfer_id FOR UPDATE;
    PERFORM ledger_hold_release(g.transfer_id, 'posted', NULL, p_headers, p_at);
    PERFORM ledger_write_postings(g.transfer_id, ARRAY[g.funding_account_id], ARRAY[g.account_id], ARRAY[g.amount],
                                  ARRAY[g.currency], ARRAY[ledger_uuid7(), ledger_uuid7()], events, p_headers, p_at);
    PERFORM ledger_grants_consume(g.transfer_id, p_at, p_headers);
    PERFORM ledger_entry_events_allocations(g.transfer_id, events);
    UPDATE credit_grant SET status = 'active', updated_at = p_at WHERE id = g.id;
    INSERT INTO outbox_event (event_id, topic, key, event_type, payload, headers, created_at, published_at)
    SELECT r.event_id, r.topic, r.key, r.event_type, r.payload, r.headers, r.created_at, r.published_at
      FROM outbox_event_row(event_id, 'GrantActivated', g.id::text, p_at,
                            ledger_grant_document(g.id, p_at), p_headers) AS r;
END;
$$;

-- Expire hold p_transfer_id (its accounts locked): released, and its grant reservations too.
CREATE FUNCTION ledger_hold_expire(p_transfer_id uuid, p_event_id uuid, p_at timestamptz, p_headers jsonb)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ledger_hold_release(p_transfer_id, 'expired', p_event_id, p_headers, p_at);
    PERFORM ledger_grants_release(p_transfer_id, p_at, p_headers);
END;
$$;

-- Book everything due at p_at on the locked accounts p_locked, in time order: holds past
-- their expiry, grants taken effect, grants past their expiry. Something whose other
-- accounts are not locked (it fell due between ledger_lock_set and the locks) is left to the
-- next command or the beat task; reads and debits compute it meanwhile. Returns how many
-- bookings it made.
CREATE FUNCTION ledger_book_due(p_locked uuid[], p_at timestamptz, p_headers jsonb) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    due record;
    booked integer := 0;
BEGIN
    FOR due IN
        SELECT t.id FROM transfer t
         WHERE t.status = 'pending' AND t.expires_at <= p_at
           AND t.id IN (SELECT h.transfer_id FROM transfer_hold h
                         WHERE h.open AND h.expires_at <= p_at
                           AND (h.from_account_id = ANY (p_locked) OR h.to_account_id = ANY (p_locked)))
           AND ledger_lock_set('{}', p_at, t.id) <@ p_locked
         ORDER BY t.expires_at, t.id
         FOR UPDATE OF t
    LOOP
        PERFORM ledger_hold_expire(due.id, ledger_uuid7(), p_at, p_headers);
        booked := booked + 1;
    END LOOP;
    FOR due IN
        SELECT g.id FROM credit_grant g
         WHERE g.account_id = ANY (p_locked) AND g.status = 'scheduled' AND g.effective_at <= p_at
           AND g.funding_account_id = ANY (p_locked)
         ORDER BY g.effective_at, g.id
    LOOP
        PERFORM ledger_grant_activate(due.id, p_at, p_headers);
        booked := booked + 1;
    END LOOP;
    FOR due IN
        SELECT g.id FROM credit_grant g
         WHERE g.account_id = ANY (p_locked) AND g.status = 'active' AND g.expires_at <= p_at
           AND g.expire_to_account_id = ANY (p_locked)
         ORDER BY g.expires_at, g.id
    LOOP
        PERFORM ledger_grant_expire(due.id, p_at, p_headers);
        booked := booked + 1;
    END LOOP;
    RETURN booked;
END;
$$;

-- The beat task for idle accounts: book what is due on up to p_limit accounts with a grant to
-- activate or expire, skipping those another transaction has locked (it books them itself).
-- Returns how many bookings it made.
CREATE FUNCTION ledger_grants_book_due(p_limit integer, p_headers jsonb) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    candidate uuid;
    at timestamptz;
    wanted uuid[];
    locked integer;
    booked integer := 0;
BEGIN
    FOR candidate IN
        SELECT account_id FROM (
            SELECT account_id, min(CASE WHEN status = 'scheduled' THEN effective_at ELSE expires_at END) AS due_at
              FROM credit_grant
             WHERE (status = 'scheduled' AND effective_at <= ledger_now())
                OR (status = 'active' AND expires_at <= ledger_now())
             GROUP BY account_id) d
         ORDER BY due_at LIMIT p_limit
    LOOP
        at := ledger_now();
        wanted := ledger_lock_set(ARRAY[candidate], at, NULL);
        SELECT count(*) INTO locked FROM (
            SELECT 1 FROM account WHERE id = ANY (wanted) ORDER BY id FOR UPDATE SKIP LOCKED) x;
        CONTINUE WHEN locked < cardinality(wanted);
        booked := booked + ledger_book_due(wanted, at, p_headers);
    END LOOP;
    RETURN booked;
END;
$$;

-- A stored or posting outcome ({outcome, transfer} or an error) as a grant command's: the
-- grant funded by the transfer instead of the transfer.
CREATE FUNCTION ledger_grant_outcome(p_outcome json, p_at timestamptz) RETURNS json LANGUAGE sql STABLE AS $$
    SELECT CASE
             WHEN p_outcome->'transfer' IS NULL OR json_typeof(p_outcome->'transfer') = 'null' THEN p_outcome
             ELSE json_build_object('outcome', p_outcome->>'outcome', 'grant',
                                    ledger_grant_document((SELECT g.id FROM credit_grant g
                                                            WHERE g.transfer_id = (p_outcome->'transfer'->>'transferId')::uuid),
                                                          p_at))
           END
$$;

-- POST /accounts/{id}/grants, exactly once per key (ADR 0003): the funding transfer from
-- p_from to p_account_id, through ledger_post_transfer with every rule of a transfer
-- (pending until p_effective_at when that is later than now), and the grant on it. Returns
-- {outcome, grant} as ledger_post_transfer returns {outcome, transfer}.
CREATE FUNCTION ledger_grant_create(
    p_key text, p_fingerprint text, p_grant_id uuid, p_account_id uuid, p_from uuid, p_expire_to uuid,
    p_amount bigint, p_priority smallint, p_effective_at timestamptz, p_expires_at timestamptz,
    p_description text, p_metadata jsonb, p_transfer_id uuid, p_entry_ids uuid[], p_event_ids uuid[],
    p_headers jsonb
) RETURNS json LANGUAGE plpgsql AS $$
DECLARE
    at timestamptz := ledger_now();
    account_row account%ROWTYPE;
    sink account%ROWTYPE;
    refusal jsonb;
    outcome json;
    effective timestamptz := greatest(coalesce(p_effective_at, at), at);
    grant_event_id uuid := ledger_uuid7();
BEGIN
    SELECT * INTO account_row FROM account WHERE id = p_account_id;
    IF NOT FOUND THEN
        RETURN json_build_object('outcome', 'invalid',
            'error', ledger_error('account_not_found', format('No account %s.', p_account_id), NULL));
    END IF;
    outcome := ledger_grant_outcome(ledger_idempotent_outcome(p_key, p_fingerprint), at);
    IF outcome IS NOT NULL THEN
        RETURN outcome;
    END IF;
    IF p_expires_at IS NOT NULL AND p_expires_at <= effective THEN
        RETURN json_build_object('outcome', 'invalid',
            'error', ledger_error('invalid_request',
                format('expiresAt (%s) must be later than now and than effectiveAt (%s).',
                       ledger_iso(p_expires_at), ledger_iso(effective)), 'expiresAt'));
    END IF;
    -- expireTo, unless it is the funding account, which the posting checks as `from`.
    SELECT * INTO sink FROM account WHERE id = p_expire_to;
    refusal := CASE
        WHEN p_expire_to = p_from THEN NULL
        WHEN sink.id IS NULL THEN ledger_error('account_not_found', format('No account %s.', p_expire_to), 'expireTo')
        WHEN sink.id = p_account_id THEN
            ledger_error('same_account', 'Expired credits must go to another account than the grant''s.', 'expireTo')
        ELSE ledger_account_refusal(sink, 'expireTo', account_row.currency)
    END;
    IF refusal IS NOT NULL THEN
        INSERT INTO idempotency_record (key, request_fingerprint, error, created_at)
        VALUES (p_key, p_fingerprint, refusal, now())
        ON CONFLICT (key) DO NOTHING;
        IF NOT FOUND THEN  -- a concurrent request with this key got there first
            RETURN ledger_grant_outcome(ledger_idempotent_outcome(p_key, p_fingerprint), at);
        END IF;
        RETURN json_build_object('outcome', 'refused', 'error', refusal);
    END IF;

    outcome := ledger_post_transfer(p_key, p_fingerprint, true, ARRAY[p_from], ARRAY[p_account_id], ARRAY[p_amount],
                                    ARRAY[account_row.currency], p_metadata, p_description, p_transfer_id,
                                    p_entry_ids, p_event_ids, p_headers, effective > at, NULL);
    IF outcome->>'outcome' <> 'posted' THEN
        RETURN ledger_grant_outcome(outcome, at);
    END IF;
    INSERT INTO credit_grant (id, account_id, funding_account_id, expire_to_account_id, transfer_id, currency, amount,
                              priority, effective_at, expires_at, status, consumed, reserved, expired, voided,
                              description, metadata, created_at, updated_at)
    VALUES (p_grant_id, p_account_id, p_from, p_expire_to, p_transfer_id, account_row.currency, p_amount,
            p_priority, effective, p_expires_at, CASE WHEN effective > at THEN 'scheduled' ELSE 'active' END,
            0, 0, 0, 0, p_description, p_metadata, at, at);
    INSERT INTO outbox_event (event_id, topic, key, event_type, payload, headers, created_at, published_at)
    SELECT r.event_id, r.topic, r.key, r.event_type, r.payload, r.headers, r.created_at, r.published_at
      FROM outbox_event_row(grant_event_id, 'GrantCreated', p_grant_id::text, at,
                            ledger_grant_document(p_grant_id, at), p_headers) AS r;
    RETURN json_build_object('outcome', 'posted', 'grant', ledger_grant_document(p_grant_id, at));
END;
$$;

-- POST /grants/{id}/void, exactly once per key: a scheduled grant's hold is voided; a live
-- grant's unreserved remainder moves back to its funding account. What was consumed stays
-- consumed; what its holds reserve goes back to the funding account when they release it.
CREATE FUNCTION ledger_grant_void(p_key text, p_fingerprint text, p_grant_id uuid, p_description text,
                                  p_headers jsonb) RETURNS json LANGUAGE plpgsql AS $$
DECLARE
    at timestamptz;
    g credit_grant%ROWTYPE;
    stored json;
    refusal jsonb;
    remainder bigint;
    locked uuid[];
    event_id uuid := ledger_uuid7();
BEGIN
    SELECT * INTO g FROM credit_grant WHERE id = p_grant_id;
    IF NOT FOUND THEN
        RETURN json_build_object('outcome', 'invalid',
            'error', ledger_error('grant_not_found', format('No grant %s.', p_grant_id), NULL));
    END IF;
    locked := ledger_lock_accounts(ARRAY[g.account_id, g.funding_account_id, g.expire_to_account_id], ledger_now(), NULL);
    at := ledger_now();
    stored := ledger_grant_outcome(ledger_idempotent_outcome(p_key, p_fingerprint), at);
    IF stored IS NOT NULL THEN
        RETURN stored;
    END IF;
    PERFORM ledger_book_due(locked, at, p_headers);
    SELECT * INTO g FROM credit_grant WHERE id = p_grant_id;
    IF g.status IN ('expired', 'voided') THEN
        refusal := ledger_error('grant_not_active',
            format('Grant %s is %s: there is nothing left to void.', g.id, g.status),
            NULL, jsonb_build_object('grantStatus', g.status));
        INSERT INTO idempotency_record (key, request_fingerprint, command, error, created_at)
        VALUES (p_key, p_fingerprint, 'grant_void', refusal, now());
        RETURN json_build_object('outcome', 'refused', 'error', refusal);
    END IF;
    INSERT INTO idempotency_record (key, request_fingerprint, command, transfer_id, created_at)
    VALUES (p_key, p_fingerprint, 'grant_void', g.transfer_id, now());
    IF g.status = 'scheduled' THEN
        PERFORM 1 FROM transfer WHERE id = g.transfer_id FOR UPDATE;
        PERFORM ledger_hold_release(g.transfer_id, 'voided', ledger_uuid7(), p_headers, at);
        PERFORM ledger_grants_release(g.transfer_id, at, p_headers);
        remainder := g.amount;
    ELSE
        remainder := g.amount - g.consumed - g.reserved - g.expired - g.voided;
        PERFORM ledger_grant_book(g.id, 'void', remainder, p_description, NULL, at, p_headers);
    END IF;
    UPDATE credit_grant SET status = 'voided', updated_at = at WHERE id = g.id;
    INSERT INTO outbox_event (event_id, topic, key, event_type, payload, headers, created_at, published_at)
    SELECT r.event_id, r.topic, r.key, r.event_type, r.payload, r.headers, r.created_at, r.published_at
      FROM outbox_event_row(event_id, 'GrantVoided', g.id::text, at,
                            ledger_grant_document(g.id, at) || jsonb_build_object('voidedAmount', remainder), p_headers) AS r;
    RETURN json_build_object('outcome', 'settled', 'grant', ledger_grant_document(g.id, at));
END;
$$;

\ir functions/ledger_grant_checks.v1.sql

-- Allocations are history: never changed, never deleted. A grant is never deleted, and its
-- account, lineage, amount, terms and creation never change.
CREATE FUNCTION ledger_grant_allocation_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'grant allocations are history: % refused', TG_OP USING ERRCODE = 'restrict_violation';
END;
$$;
CREATE TRIGGER grant_allocation_immutable BEFORE UPDATE OR DELETE ON grant_allocation
    FOR EACH ROW EXECUTE FUNCTION ledger_grant_allocation_immutable();
CREATE FUNCTION ledger_grant_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE'
       OR (NEW.id, NEW.account_id, NEW.funding_account_id, NEW.expire_to_account_id, NEW.transfer_id, NEW.currency,
           NEW.amount, NEW.priority, NEW.effective_at, NEW.expires_at, NEW.description, NEW.metadata, NEW.created_at)
          IS DISTINCT FROM
          (OLD.id, OLD.account_id, OLD.funding_account_id, OLD.expire_to_account_id, OLD.transfer_id, OLD.currency,
           OLD.amount, OLD.priority, OLD.effective_at, OLD.expires_at, OLD.description, OLD.metadata, OLD.created_at)
       OR OLD.status IN ('expired', 'voided') AND NEW.status <> OLD.status THEN
        RAISE EXCEPTION 'grant %: only its counters and status change, and expired or voided is final: % refused',
            OLD.id, TG_OP USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER credit_grant_immutable BEFORE UPDATE OR DELETE ON credit_grant
    FOR EACH ROW EXECUTE FUNCTION ledger_grant_immutable();

DROP FUNCTION ledger_holds_expire(integer, uuid[], jsonb);
\ir functions/ledger_holds_expire.v2.sql
DROP FUNCTION ledger_hold_command(text, text, text, uuid, bigint, uuid[], uuid[], jsonb);
\ir functions/ledger_hold_command.v2.sql
\ir functions/ledger_grants_draw.v1.sql
\ir functions/ledger_post_transfer.v6.sql
\ir functions/ledger_reverse_transfer.v2.sql

-- reverse:
\ir functions/ledger_reverse_transfer.v1.sql
\ir functions/ledger_post_transfer.v5.sql
DROP FUNCTION ledger_grants_draw(uuid, bigint, text, uuid, uuid, timestamptz);
DROP FUNCTION ledger_hold_command(text, text, text, uuid, bigint, uuid[], uuid[], jsonb);
\ir functions/ledger_hold_command.v1.sql
DROP FUNCTION ledger_holds_expire(integer, uuid[], jsonb);
\ir functions/ledger_holds_expire.v1.sql
DROP TRIGGER credit_grant_immutable ON credit_grant;
DROP FUNCTION ledger_grant_immutable();
DROP TRIGGER grant_allocation_immutable ON grant_allocation;
DROP FUNCTION ledger_grant_allocation_immutable();
DROP TRIGGER grant_allocation_checked ON grant_allocation;
DROP FUNCTION ledger_grant_allocation_deferred_check();
DROP TRIGGER credit_grant_checked ON credit_grant;
DROP FUNCTION ledger_grant_deferred_check();
DROP FUNCTION ledger_check_grant(uuid);
DROP FUNCTION ledger_grant_void(text, text, uuid, text, jsonb);
DROP FUNCTION ledger_grant_create(text, text, uuid, uuid, uuid, uuid, bigint, smallint, timestamptz, timestamptz, text,
                                  jsonb, uuid, uuid[], uuid[], jsonb);
DROP FUNCTION ledger_grant_outcome(json, timestamptz);
DROP FUNCTION ledger_grants_book_due(integer, jsonb);
DROP FUNCTION ledger_book_due(uuid[], timestamptz, jsonb);
DROP FUNCTION ledger_hold_expire(uuid, uuid, timestamptz, jsonb);
DROP FUNCTION ledger_grant_activate(uuid, timestamptz, jsonb);
DROP FUNCTION ledger_grants_apply(uuid, timestamptz, jsonb);
DROP FUNCTION ledger_has_active_grants(uuid);
DROP FUNCTION ledger_grants_restore(uuid, timestamptz, jsonb);
DROP FUNCTION ledger_grants_consume(uuid, timestamptz, jsonb);
DROP FUNCTION ledger_grants_release(uuid, timestamptz, jsonb);
DROP FUNCTION ledger_grant_settle(uuid, bigint, timestamptz, jsonb);
DROP FUNCTION ledger_grant_expire(uuid, timestamptz, jsonb);
DROP FUNCTION ledger_grant_expire_amount(uuid, bigint, timestamptz, timestamptz, jsonb);
DROP FUNCTION ledger_grant_book(uuid, text, bigint, text, timestamptz, timestamptz, jsonb);
DROP FUNCTION ledger_system_transfer(uuid, uuid, bigint, text, text, jsonb, uuid[], timestamptz, jsonb);
DROP FUNCTION ledger_entry_events_allocations(uuid, uuid[]);
DROP FUNCTION ledger_lock_accounts(uuid[], timestamptz, uuid);
DROP FUNCTION ledger_lock_set(uuid[], timestamptz, uuid);
DROP FUNCTION ledger_balance_at(uuid, timestamptz);
DROP FUNCTION ledger_grant_document(uuid, timestamptz);
DROP FUNCTION ledger_grants_unbooked(uuid, timestamptz);
DROP FUNCTION ledger_grant_status(credit_grant, timestamptz);
DROP FUNCTION ledger_uuid7();
DROP FUNCTION ledger_now();
ALTER TABLE credit_grant RESET (fillfactor);
