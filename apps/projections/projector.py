"""Applying events to the read model. Plain functions: the Kafka consumer, the replay
command and the tests call them with decoded messages, no broker needed.

A batch is applied in one transaction on the `read` alias, together with how far it got on
each partition (offset and relay position), so a crash between the database commit and the
Kafka offset commit only causes redelivery, and redelivery is a no-op:
  * an entry is applied only if its sequence is the account's next one (older: duplicate);
  * statement lines are unique per (account, sequence), transfers per id.
A sequence gap (an entry event lost upstream) is healed from the ledger, the source of truth:
the missing entries, and the transfers they belong to.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import orjson
from django.db import connections, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from psycopg import sql
from psycopg.types.json import Jsonb

from apps.outbox.registry import (
    ACCOUNT_CREATED,
    ACCOUNT_UPDATED,
    ENTRY_POSTED,
    GRANT_ACTIVATED,
    GRANT_CREATED,
    GRANT_EXPIRED,
    GRANT_VOIDED,
    TRANSFER_EXPIRED,
    TRANSFER_PENDING,
    TRANSFER_POSTED,
    TRANSFER_REVERSED,
    TRANSFER_VOIDED,
    EventType,
)
from apps.outbox.schemas import InvalidEvent, event_validate
from apps.outbox.topics import RELAY_POSITION_HEADER
from apps.projections.ledger_rows import TRANSFER_COLUMNS, column_list, transfer_rows_sql
from apps.projections.routers import READ_ALIAS
from creditledger.actor import UNRECORDED

logger = logging.getLogger(__name__)

# Held shared by every batch and exclusively by the replay swap (see replay/swap.py), so a swap
# never interleaves with a batch.
SWAP_LOCK_KEY = 0x4C454447  # "LEDG"

#: The events whose data is a transfer's row (_transfer_rows_upsert), and the field they get
#: from their envelope: who made the change.
_TRANSFER_ROW_EVENTS = frozenset(
    event.name for event in (TRANSFER_PENDING, TRANSFER_POSTED, TRANSFER_VOIDED, TRANSFER_EXPIRED)
)
_ACTOR = "actor"

#: The SQL types of TRANSFER_COLUMNS.
_TRANSFER_TYPES = (
    "uuid",
    "uuid",
    "uuid",
    "bigint",
    "text",
    "text",
    "text",
    "jsonb",
    "text",
    "uuid",
    "numeric",
    "jsonb",
    "jsonb",
    "text",
    "timestamptz",
    "timestamptz",
)


@dataclass(frozen=True)
class ConsumedMessage:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class DeadLetter:
    message: ConsumedMessage
    reason: str


@dataclass
class BatchResult:
    applied: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    duplicates: int = 0
    #: Entries read from the ledger to fill a sequence gap, and the transfers inserted with them.
    healed: int = 0
    healed_transfers: int = 0
    dead_letters: list[DeadLetter] = field(default_factory=list)
    #: Seconds from each applied entry's posting to its projection.
    latencies: list[float] = field(default_factory=list)


class Tables:
    """Projection table names, quoted, optionally in another schema (the replay builds beside the live ones)."""

    def __init__(self, schema: str | None = None) -> None:
        def table(name: str) -> sql.Identifier:
            return sql.Identifier(schema, name) if schema else sql.Identifier(name)

        self.balance = table("projection_balance")
        self.line = table("projection_statement_line")
        self.transfer = table("projection_transfer")
        self.grant = table("projection_grant")
        self.offset = table("projection_consumer_offset")


def decode(message: ConsumedMessage) -> dict[str, Any]:
    """The validated event in `message`, or InvalidEvent."""
    if message.value is None:
        raise InvalidEvent("empty message")
    try:
        envelope = orjson.loads(message.value)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"not JSON: {exc}") from None
    return event_validate(envelope)


def projection_batch_apply(
    messages: list[ConsumedMessage], *, consumer_group: str, schema: str | None = None
) -> BatchResult:
    """Apply a batch of Kafka messages; invalid ones come back as dead letters."""
    result = BatchResult()
    events: list[dict[str, Any]] = []
    for message in messages:
        try:
            events.append(decode(message))
        except InvalidEvent as exc:
            result.dead_letters.append(DeadLetter(message, str(exc)))

    tables = Tables(schema)
    with transaction.atomic(using=READ_ALIAS, durable=True), connections[READ_ALIAS].cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock_shared(%s)", [SWAP_LOCK_KEY])
        events_apply(cursor, tables, events, result)
        _offsets_record(cursor, tables, consumer_group, messages)
    return result


def events_apply(cursor, tables: Tables, events: list[dict[str, Any]], result: BatchResult) -> None:
    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        if event["type"] in _TRANSFER_ROW_EVENTS:
            by_type[event["type"]].append({**event["data"], _ACTOR: event.get("actor", UNRECORDED)})
        else:
            by_type[event["type"]].append(event["data"])
    now = timezone.now()
    healed_entries: list[dict[str, Any]] = []
    for event_type, apply in EVENT_APPLIERS.items():
        if by_type[event_type.name]:
            healed_entries += apply(cursor, tables, by_type[event_type.name], now, result) or []
    if healed_entries:
        _transfers_heal(cursor, tables, sorted({entry["transferId"] for entry in healed_entries}), now, result)


def _zero_balances_insert(cursor, tables: Tables, account_ids: list[str], currencies: list[str], now: datetime) -> int:
    """Give each account a zero balance row unless it has one; returns how many were new."""
    cursor.execute(
        sql.SQL("""INSERT INTO {balance} (account_id, currency, balance, last_sequence, updated_at, applied_at)
            SELECT id, currency, 0, 0, %s, %s FROM unnest(%s::uuid[], %s::text[]) AS a(id, currency)
            ON CONFLICT (account_id) DO NOTHING""").format(balance=tables.balance),
        [now, now, account_ids, currencies],
    )
    return cursor.rowcount


def _accounts_apply(cursor, tables: Tables, accounts: list[dict[str, Any]], now: datetime, result: BatchResult) -> None:
    created = _zero_balances_insert(
        cursor, tables, [a["accountId"] for a in accounts], [a["currency"] for a in accounts], now
    )
    result.applied[ACCOUNT_CREATED.name] += created
    result.duplicates += len(accounts) - created


def _account_updates_apply(
    cursor, tables: Tables, updates: list[dict[str, Any]], now: datetime, result: BatchResult
) -> None:
    """Nothing to write: the read model keeps no account attribute. The balance answer takes
    the overdraft limit from the account itself, and a status change moves no money."""
    result.applied[ACCOUNT_UPDATED.name] += len(updates)


def _entries_apply(
    cursor, tables: Tables, entries: list[dict[str, Any]], now: datetime, result: BatchResult
) -> list[dict[str, Any]]:
    """Apply each account's entries in sequence order, from the ledger where a gap is; returns
    the entries the ledger filled in."""
    by_account: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    for entry in entries:
        by_account[entry["accountId"]][entry["sequence"]] = entry
    account_ids = sorted(by_account)
    currencies = [next(iter(by_account[a].values()))["currency"] for a in account_ids]

    # Make sure every account has a balance row, then lock them in a fixed order.
    _zero_balances_insert(cursor, tables, account_ids, currencies, now)
    cursor.execute(
        sql.SQL(
            "SELECT account_id, last_sequence FROM {balance} WHERE account_id = ANY(%s::uuid[]) "
            "ORDER BY account_id FOR UPDATE"
        ).format(balance=tables.balance),
        [account_ids],
    )
    applied_up_to = {str(account_id): last for account_id, last in cursor.fetchall()}

    to_apply: list[dict[str, Any]] = []
    healed_entries: list[dict[str, Any]] = []
    for account_id in account_ids:
        last = applied_up_to[account_id]
        pending = by_account[account_id]
        result.duplicates += sum(1 for sequence in pending if sequence <= last)
        newest = max(pending)
        if newest <= last:
            continue
        missing = [sequence for sequence in range(last + 1, newest) if sequence not in pending]
        if missing:
            healed = _ledger_entries(account_id, missing[0], missing[-1])
            result.healed += len(healed)
            healed_entries += healed
            pending.update({entry["sequence"]: entry for entry in healed})
            logger.warning("healed %d missing entries of account %s from the ledger", len(healed), account_id)
        to_apply.extend(pending[sequence] for sequence in range(last + 1, newest + 1))

    if not to_apply:
        return healed_entries
    cursor.execute(
        sql.SQL("""INSERT INTO {line} (account_id, sequence, entry_id, transfer_id, counterparty_id, currency, amount,
                                        balance_after, created_at, applied_at)
            SELECT *, %s FROM unnest(%s::uuid[], %s::bigint[], %s::uuid[], %s::uuid[], %s::uuid[], %s::text[],
                                     %s::bigint[], %s::bigint[], %s::timestamptz[])
            ON CONFLICT DO NOTHING""").format(line=tables.line),
        [
            now,
            [e["accountId"] for e in to_apply],
            [e["sequence"] for e in to_apply],
            [e["entryId"] for e in to_apply],
            [e["transferId"] for e in to_apply],
            [e["counterpartyId"] for e in to_apply],
            [e["currency"] for e in to_apply],
            [e["amount"] for e in to_apply],
            [e["balanceAfter"] for e in to_apply],
            [parse_datetime(e["createdAt"]) for e in to_apply],
        ],
    )
    latest = {e["accountId"]: e for e in to_apply}  # to_apply is in sequence order per account
    cursor.execute(
        sql.SQL("""UPDATE {balance} AS b
               SET balance = v.balance, last_sequence = v.sequence, updated_at = v.created_at, applied_at = %s
              FROM unnest(%s::uuid[], %s::bigint[], %s::bigint[], %s::timestamptz[])
                   AS v(account_id, balance, sequence, created_at)
             WHERE b.account_id = v.account_id AND b.last_sequence < v.sequence""").format(balance=tables.balance),
        [
            now,
            list(latest),
            [e["balanceAfter"] for e in latest.values()],
            [e["sequence"] for e in latest.values()],
            [parse_datetime(e["createdAt"]) for e in latest.values()],
        ],
    )
    result.applied[ENTRY_POSTED.name] += len(to_apply)
    # Every createdAt parsed: the INSERT above put them all in a NOT NULL column.
    created = (cast(datetime, parse_datetime(e["createdAt"])) for e in to_apply)
    result.latencies.extend((now - created_at).total_seconds() for created_at in created)
    return healed_entries


def _ledger_entries(account_id: str, first: int, last: int) -> list[dict[str, Any]]:
    """Entries `first..last` of an account, read from the ledger, shaped like EntryPosted data."""
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT ledger_entry_event_data(e)::text FROM entry e "
            "WHERE account_id = %s AND sequence BETWEEN %s AND %s ORDER BY sequence",
            [account_id, first, last],
        )
        return [orjson.loads(data) for (data,) in cursor.fetchall()]


def _postings(transfer: dict[str, Any]) -> list[dict[str, Any]]:
    """The transfer's postings; an event from before they were carried had one, its own fields."""
    if "postings" in transfer:
        return transfer["postings"]
    return [{key: transfer[key] for key in ("from", "to", "amount", "currency")}]


def _transfers_apply(
    cursor, tables: Tables, transfers: list[dict[str, Any]], now: datetime, result: BatchResult
) -> None:
    """TransferPosted: a new transfer, or a hold the read model has as pending, now posted."""
    _transfer_rows_upsert(cursor, tables, transfers, now, result, TRANSFER_POSTED)


def _transfer_rows_upsert(
    cursor, tables: Tables, transfers: list[dict[str, Any]], now: datetime, result: BatchResult, event: EventType
) -> None:
    """Insert each transfer, or replace the row of one still pending (a hold settles once: the
    row of a posted, voided or expired transfer never changes, so redelivery is a no-op). Its
    actor is its creator's: the first of its events applied, which for a hold is its
    TransferPending, not the TransferPosted of whoever posted it."""
    cursor.execute(
        sql.SQL("""INSERT INTO {transfer} AS p (transfer_id, from_account_id, to_account_id, amount, currency, status,
                                            idempotency_key, metadata, description, reversal_of, postings, entries,
                                            actor, created_at, applied_at)
            SELECT *, %s FROM unnest(%s::uuid[], %s::uuid[], %s::uuid[], %s::bigint[], %s::text[], %s::text[],
                                     %s::text[], %s::jsonb[], %s::text[], %s::uuid[], %s::jsonb[], %s::jsonb[],
                                     %s::text[], %s::timestamptz[])
            ON CONFLICT (transfer_id) DO UPDATE
               SET amount = EXCLUDED.amount, status = EXCLUDED.status, postings = EXCLUDED.postings,
                   entries = EXCLUDED.entries, applied_at = EXCLUDED.applied_at
             WHERE p.status = 'pending' AND EXCLUDED.status <> 'pending'""").format(transfer=tables.transfer),
        [
            now,
            [t["transferId"] for t in transfers],
            [t["from"] for t in transfers],
            [t["to"] for t in transfers],
            [t["amount"] for t in transfers],
            [t["currency"] for t in transfers],
            [t["status"] for t in transfers],
            [t["idempotencyKey"] for t in transfers],
            [Jsonb(t["metadata"]) for t in transfers],
            [t.get("description") for t in transfers],
            [t.get("reversalOf") for t in transfers],
            [Jsonb(_postings(t)) for t in transfers],
            [Jsonb(t.get("entries", [])) for t in transfers],
            [t[_ACTOR] for t in transfers],
            [parse_datetime(t["createdAt"]) for t in transfers],
        ],
    )
    result.applied[event.name] += cursor.rowcount
    result.duplicates += len(transfers) - cursor.rowcount


def _holds_apply(event: EventType) -> Callable[..., None]:
    """TransferPending, TransferVoided, TransferExpired: the hold's row, with its status."""

    def apply(cursor, tables: Tables, transfers: list[dict[str, Any]], now: datetime, result: BatchResult) -> None:
        _transfer_rows_upsert(cursor, tables, transfers, now, result, event)

    return apply


def _reversals_apply(
    cursor, tables: Tables, reversals: list[dict[str, Any]], now: datetime, result: BatchResult
) -> None:
    """Raise each reversed transfer's reversed amount to the running total the event carries:
    the greatest one wins, so redelivery and any order of one transfer's reversals are no-ops.
    The event follows its transfer's TransferPosted on the same partition, and the appliers
    run in order, so the row is there (or is healed from the ledger, total included)."""
    cursor.execute(
        sql.SQL("""UPDATE {transfer} AS p SET reversed_amount = v.reversed_amount
              FROM (SELECT transfer_id, max(reversed_amount) AS reversed_amount
                      FROM unnest(%s::uuid[], %s::numeric[]) AS r(transfer_id, reversed_amount)
                     GROUP BY transfer_id) AS v
             WHERE p.transfer_id = v.transfer_id AND p.reversed_amount < v.reversed_amount""").format(
            transfer=tables.transfer
        ),
        [[r["transferId"] for r in reversals], [r["reversedAmount"] for r in reversals]],
    )
    result.applied[TRANSFER_REVERSED.name] += cursor.rowcount
    result.duplicates += len(reversals) - cursor.rowcount


def _grants_apply(event: EventType) -> Callable[..., None]:
    """Grant*: the grant's row, as the event carried it. Of one grant's events, the latest by
    its updatedAt wins, so redelivery and replays of older events change nothing; of events
    with the same updatedAt (one booking can expire a grant twice: two holds releasing into
    it), the later one in the batch, as it is across batches."""

    def apply(cursor, tables: Tables, grants: list[dict[str, Any]], now: datetime, result: BatchResult) -> None:
        cursor.execute(
            sql.SQL("""INSERT INTO {grant} AS p (grant_id, account_id, status, document, updated_at, applied_at)
                SELECT DISTINCT ON (g.grant_id) g.grant_id, g.account_id, g.document->>'status', g.document,
                       g.updated_at, %s
                  FROM unnest(%s::uuid[], %s::uuid[], %s::jsonb[], %s::timestamptz[]) WITH ORDINALITY
                       AS g(grant_id, account_id, document, updated_at, position)
                 ORDER BY g.grant_id, g.updated_at DESC, g.position DESC
                ON CONFLICT (grant_id) DO UPDATE
                   SET status = EXCLUDED.status, document = EXCLUDED.document,
                       updated_at = EXCLUDED.updated_at, applied_at = EXCLUDED.applied_at
                 WHERE p.updated_at <= EXCLUDED.updated_at""").format(grant=tables.grant),
            [
                now,
                [g["grantId"] for g in grants],
                [g["accountId"] for g in grants],
                [Jsonb(g) for g in grants],
                [parse_datetime(g["updatedAt"]) for g in grants],
            ],
        )
        result.applied[event.name] += cursor.rowcount
        result.duplicates += len(grants) - cursor.rowcount

    return apply


def _transfers_heal(cursor, tables: Tables, transfer_ids: list[str], now: datetime, result: BatchResult) -> None:
    """Insert the transfers of entries healed from the ledger, read from the ledger too: their
    TransferPosted was most likely lost with them. One that arrived is left as it is."""
    with connections["default"].cursor() as ledger:
        ledger.execute(
            transfer_rows_sql(where=sql.SQL("t.id = ANY(%(ids)s::uuid[])")), {"applied_at": now, "ids": transfer_ids}
        )
        rows = ledger.fetchall()
    if not rows:
        return
    arrays = sql.SQL(", ").join(
        sql.SQL("%s::{}[]").format(sql.SQL(kind)) for _, kind in zip(TRANSFER_COLUMNS, _TRANSFER_TYPES, strict=True)
    )
    cursor.execute(
        sql.SQL("""INSERT INTO {transfer} ({columns})
            SELECT * FROM unnest({arrays})
            ON CONFLICT (transfer_id) DO NOTHING""").format(
            transfer=tables.transfer, columns=column_list(TRANSFER_COLUMNS), arrays=arrays
        ),
        [list(column) for column in zip(*rows, strict=True)],
    )
    result.healed_transfers += cursor.rowcount
    if cursor.rowcount:
        logger.warning("healed %d transfers of healed entries from the ledger", cursor.rowcount)


#: How each event type of the registry is applied, in this order: accounts (created, updated), entries (which
#: return the entries they healed from the ledger), then transfers: holds first, so that a hold created and
#: settled in one batch ends settled; then the reversals (of posted transfers, holds posted included).
EVENT_APPLIERS: dict[EventType, Callable[..., list[dict[str, Any]] | None]] = {
    ACCOUNT_CREATED: _accounts_apply,
    ACCOUNT_UPDATED: _account_updates_apply,
    ENTRY_POSTED: _entries_apply,
    TRANSFER_PENDING: _holds_apply(TRANSFER_PENDING),
    TRANSFER_POSTED: _transfers_apply,
    TRANSFER_VOIDED: _holds_apply(TRANSFER_VOIDED),
    TRANSFER_EXPIRED: _holds_apply(TRANSFER_EXPIRED),
    TRANSFER_REVERSED: _reversals_apply,
    GRANT_CREATED: _grants_apply(GRANT_CREATED),
    GRANT_ACTIVATED: _grants_apply(GRANT_ACTIVATED),
    GRANT_EXPIRED: _grants_apply(GRANT_EXPIRED),
    GRANT_VOIDED: _grants_apply(GRANT_VOIDED),
}


def _relay_position(message: ConsumedMessage) -> int | None:
    try:
        return int(message.headers[RELAY_POSITION_HEADER])
    except (KeyError, ValueError):
        return None


def _offsets_record(cursor, tables: Tables, consumer_group: str, messages: list[ConsumedMessage]) -> None:
    """Record, per partition, the last offset and the greatest relay position of the batch.
    The position never goes back (a late batch of a previous owner after a rebalance); the
    offset goes with it, and restarts from 0 when the broker is a new one."""
    reached: dict[tuple[str, int], tuple[int, int | None]] = {}
    for message in messages:
        partition = (message.topic, message.partition)
        offset, position = reached.get(partition, (-1, None))
        positions = [p for p in (position, _relay_position(message)) if p is not None]
        reached[partition] = (max(offset, message.offset), max(positions, default=None))
    if not reached:
        return
    cursor.execute(
        sql.SQL("""INSERT INTO {offset} AS t (consumer_group, topic, partition, "offset", relay_position, updated_at)
            SELECT %s, topic, partition, "offset", relay_position, now()
              FROM unnest(%s::text[], %s::int[], %s::bigint[], %s::bigint[])
                   AS o(topic, partition, "offset", relay_position)
            ON CONFLICT (consumer_group, topic, partition)
            DO UPDATE SET "offset" = CASE WHEN t.relay_position IS NULL OR EXCLUDED.relay_position >= t.relay_position
                                          THEN EXCLUDED."offset" ELSE t."offset" END,
                          relay_position = GREATEST(t.relay_position, EXCLUDED.relay_position),
                          updated_at = now()""").format(offset=tables.offset),
        [
            consumer_group,
            [t for t, _ in reached],
            [p for _, p in reached],
            [offset for offset, _ in reached.values()],
            [position for _, position in reached.values()],
        ],
    )
