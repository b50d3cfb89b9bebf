"""Rebuilding the projections (the read model): from the ledger, the source of truth, or from
the beginning of the Kafka topics. Safe while the service runs: build beside, then swap.

1. Build beside. A fresh schema, `projections_rebuild`, gets the projection tables, created
   by Django's schema editor so that every table, index and constraint has the name the
   migrations gave the live one. `projection_consumer_offset` is not rebuilt: it tracks the
   live consumer.
2. Load. From the ledger, every row is read in one REPEATABLE READ snapshot, exported with
   pg_export_snapshot() so that a few worker connections load chunks of it in parallel
   (chunks are ranges of heap pages, read by TID range scans). When the read model is in
   the ledger's database, each chunk is one INSERT ... SELECT; when it has a database of its
   own, it is streamed from `COPY (SELECT ...) TO STDOUT` into `COPY ... FROM STDIN`. The
   indexes are dropped before the load and built afterwards, which is about twice as fast.
   From Kafka, the events are decoded and applied with the projector's own `events_apply`.
3. Swap, in one transaction on the read database that holds the projector's swap lock
   exclusively, so no consumer batch interleaves: what the live consumer applied beyond the
   rebuild meanwhile is merged into it (only what the ledger confirms, so drift in the live
   tables is not carried over), then the live tables move to `projections_retired`, the
   rebuilt ones into their place, and the retired ones are dropped.

Running it again gives the same tables (up to `applied_at`): it is idempotent.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition
from django.conf import settings
from django.db import DatabaseError, OperationalError, connections, transaction
from django.db.models import Model
from django.utils import timezone

from apps.outbox.schemas import InvalidEvent
from apps.outbox.topics import ALL_TOPICS
from apps.projections.consumer import consumed
from apps.projections.ledger_rows import (
    BALANCE_COLUMNS,
    LINE_COLUMNS,
    TRANSFER_COLUMNS,
    balance_rows_sql,
    line_rows_sql,
    transfer_rows_sql,
)
from apps.projections.models import ProjectedBalance, ProjectedStatementLine, ProjectedTransfer
from apps.projections.projector import SWAP_LOCK_KEY, BatchResult, Tables, decode, events_apply
from apps.projections.routers import READ_ALIAS
from creditledger import kafka

logger = logging.getLogger(__name__)

LEDGER_ALIAS = "default"
REBUILD_SCHEMA = "projections_rebuild"
RETIRED_SCHEMA = "projections_retired"
#: Held (session level) for the whole replay: one replay at a time.
REPLAY_LOCK_KEY = 0x5245504C  # "REPL"
PROJECTION_MODELS: tuple[type[Model], ...] = (ProjectedBalance, ProjectedStatementLine, ProjectedTransfer)

DEFAULT_WORKERS = 2
#: About this many rows per chunk of the load.
CHUNK_ROWS = 50_000
KAFKA_BATCH_SIZE = 2_000
#: A Kafka replay gives up when the broker sends nothing at all for this long.
KAFKA_IDLE_TIMEOUT_SECONDS = 30.0
#: Sort memory for each index build.
INDEX_BUILD_MEMORY = "256MB"
#: The swap waits this long for its locks, then retries. Short: while its ACCESS EXCLUSIVE
#: request waits behind a long read, the reads that come after it wait too.
SWAP_LOCK_TIMEOUT = "2s"
SWAP_ATTEMPTS = 10

#: progress(stage, rows just done, rows the stage will do or None): called from the calling thread.
Progress = Callable[[str, int, "int | None"], None]

T = TypeVar("T")


class ReplayError(RuntimeError):
    """The replay could not run; the live projections are untouched."""


@dataclass
class ReplayResult:
    source: str  # "ledger" or "kafka"
    balances: int = 0
    statement_lines: int = 0
    transfers: int = 0
    #: Rows the live consumer applied during the rebuild, merged in at the swap.
    merged: dict[str, int] = field(default_factory=lambda: {"balances": 0, "statement_lines": 0, "transfers": 0})
    #: Kafka only: messages read, and those that were not valid events (skipped).
    events: int = 0
    invalid_events: int = 0
    seconds: float = 0.0


# --- from the ledger -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Chunk:
    stage: str  # "balances", "statement lines" or "transfers"
    source: str  # the ledger table whose heap pages this chunk covers
    first_page: int
    end_page: int | None  # None: to the end of the table


_STAGES = {
    # stage: (ledger table, rows sql, projection table, columns)
    "balances": ("account", balance_rows_sql, ProjectedBalance, BALANCE_COLUMNS),
    "statement lines": ("entry", line_rows_sql, ProjectedStatementLine, LINE_COLUMNS),
    "transfers": ("transfer", transfer_rows_sql, ProjectedTransfer, TRANSFER_COLUMNS),
}
_ALIASES = {"account": "a", "entry": "e", "transfer": "t"}


def projections_replay(
    *,
    progress: Progress | None = None,
    workers: int = DEFAULT_WORKERS,
    ledger_copy: bool | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> ReplayResult:
    """Rebuild the projections from the ledger and swap them in.

    `workers` connections load in parallel. `ledger_copy` streams the rows with COPY from the
    ledger's connection to the read model's, as it must when the read model has a database of
    its own (the default then); otherwise each chunk is one INSERT ... SELECT.
    """
    started = time.monotonic()
    report = progress or _no_progress
    copy = (not settings.READ_DATABASE_IS_DEFAULT) if ledger_copy is None else ledger_copy
    result = ReplayResult(source="ledger")
    with _replay_lock():
        live = _live_schemas()
        indexes = _rebuild_tables_create(drop_indexes=True)
        try:
            applied_at = timezone.now()
            with _ledger_snapshot() as snapshot:
                chunks, totals = _chunks_plan(chunk_rows)
                for stage, total in totals.items():
                    report(stage, 0, total)
                loaded = defaultdict(int)

                def load(chunk: _Chunk) -> int:
                    return _chunk_load(chunk, snapshot=snapshot, applied_at=applied_at, copy=copy)

                def done(chunk: _Chunk, rows: int) -> None:
                    loaded[chunk.stage] += rows
                    report(chunk.stage, rows, totals[chunk.stage])

                _in_parallel(chunks, load, done=done, workers=workers)
            result.balances = loaded["balances"]
            result.statement_lines = loaded["statement lines"]
            result.transfers = loaded["transfers"]
            _indexes_build(indexes, workers=workers, progress=report)
            result.merged = _swap(live, progress=report)
        except BaseException:
            _rebuild_schema_drop()
            raise
    result.seconds = time.monotonic() - started
    logger.info("projections rebuilt from the ledger: %s", result)
    return result


def _chunks_plan(chunk_rows: int) -> tuple[list[_Chunk], dict[str, int]]:
    """Chunks of every ledger table, in the snapshot; and the exact row count of each stage."""
    with connections[LEDGER_ALIAS].cursor() as cursor:
        cursor.execute("SELECT count(*), coalesce(sum(last_sequence), 0) FROM account")
        accounts, entries = cursor.fetchone()
        cursor.execute("SELECT count(*) FROM transfer")
        totals = {"balances": accounts, "statement lines": int(entries), "transfers": cursor.fetchone()[0]}
        chunks = []
        for stage, (table, *_rest) in _STAGES.items():
            cursor.execute(
                "SELECT pg_relation_size(c.oid) / current_setting('block_size')::int, c.reltuples, c.relpages "
                "FROM pg_class c WHERE c.oid = %s::regclass",
                [table],
            )
            pages, tuples, counted_pages = cursor.fetchone()
            per_page = tuples / counted_pages if tuples > 0 and counted_pages > 0 else 50
            step = max(1, int(chunk_rows / per_page))
            starts = list(range(0, max(pages, 1), step))
            # The last chunk is open-ended: rows this snapshot sees cannot be beyond what a
            # scan sees, whatever the size read above.
            chunks += [_Chunk(stage, table, first, starts[i + 1] if i + 1 < len(starts) else None)
                       for i, first in enumerate(starts)]
    # Big tables first, so that the parallel workers finish together.
    order = {"transfers": 0, "statement lines": 1, "balances": 2}
    return sorted(chunks, key=lambda chunk: order[chunk.stage]), totals


def _chunk_load(chunk: _Chunk, *, snapshot: str, applied_at: datetime, copy: bool) -> int:
    """Load one chunk in this thread's own connections; the rows it wrote."""
    _table, rows_sql, model, columns = _STAGES[chunk.stage]
    alias = _ALIASES[chunk.source]
    where = f"{alias}.ctid >= %(first)s::tid"
    params = {"applied_at": applied_at, "first": f"({chunk.first_page},0)"}
    if chunk.end_page is not None:
        where += f" AND {alias}.ctid < %(end)s::tid"
        params["end"] = f"({chunk.end_page},0)"
    select = rows_sql(where)
    target = f"{REBUILD_SCHEMA}.{model._meta.db_table} ({', '.join(columns)})"
    if not copy:
        with transaction.atomic(using=READ_ALIAS), connections[READ_ALIAS].cursor() as cursor:
            _snapshot_import(cursor, snapshot)
            cursor.execute("SET LOCAL jit = off")
            cursor.execute(f"INSERT INTO {target} {select}", params)
            return cursor.rowcount
    with (
        transaction.atomic(using=LEDGER_ALIAS), connections[LEDGER_ALIAS].cursor() as source,
        transaction.atomic(using=READ_ALIAS), connections[READ_ALIAS].cursor() as destination,
    ):
        _snapshot_import(source, snapshot)
        source.execute("SET LOCAL jit = off")
        with (
            source.cursor.copy(f"COPY ({select}) TO STDOUT (FORMAT BINARY)", params) as rows_out,
            destination.cursor.copy(f"COPY {target} FROM STDIN (FORMAT BINARY)") as rows_in,
        ):
            for data in rows_out:
                rows_in.write(data)
        return source.cursor.rowcount


def _snapshot_import(cursor, snapshot: str) -> None:
    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    cursor.execute("SET TRANSACTION SNAPSHOT %s", [snapshot])


@contextlib.contextmanager
def _ledger_snapshot() -> Iterator[str]:
    """A REPEATABLE READ, READ ONLY transaction on the ledger, kept open while its exported
    snapshot is in use; yields the snapshot id. Queries in this thread read that snapshot."""
    if connections[LEDGER_ALIAS].in_atomic_block:
        raise ReplayError("the replay needs a snapshot of its own: call it outside a transaction")
    with transaction.atomic(using=LEDGER_ALIAS), connections[LEDGER_ALIAS].cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        cursor.execute("SELECT pg_export_snapshot()")
        yield cursor.fetchone()[0]


# --- from Kafka ------------------------------------------------------------------------------


def projections_replay_from_kafka(
    *,
    progress: Progress | None = None,
    batch_size: int = KAFKA_BATCH_SIZE,
    idle_timeout: float = KAFKA_IDLE_TIMEOUT_SECONDS,
) -> ReplayResult:
    """Rebuild the projections from the beginning of the ledger topics and swap them in.

    Each partition is read until the consumer reaches its end (librdkafka's partition EOF),
    not up to the high watermark read at the start: the embedded Tansu broker reports those
    too low. Invalid messages are counted and skipped. Events published after that point
    are the live consumer's: whatever it applied is merged in at the swap.
    """
    started = time.monotonic()
    report = progress or _no_progress
    result = ReplayResult(source="kafka")
    with _replay_lock():
        live = _live_schemas()
        try:
            _rebuild_tables_create(drop_indexes=False)  # the projector's upserts need the unique indexes
            _kafka_read(result, report, batch_size=batch_size, idle_timeout=idle_timeout)
            _rebuild_analyze()
            with connections[READ_ALIAS].cursor() as cursor:
                cursor.execute(
                    f"SELECT (SELECT count(*) FROM {REBUILD_SCHEMA}.projection_balance), "
                    f"(SELECT count(*) FROM {REBUILD_SCHEMA}.projection_statement_line), "
                    f"(SELECT count(*) FROM {REBUILD_SCHEMA}.projection_transfer)"
                )
                result.balances, result.statement_lines, result.transfers = cursor.fetchone()
            result.merged = _swap(live, progress=report)
        except BaseException:
            _rebuild_schema_drop()
            raise
    result.seconds = time.monotonic() - started
    logger.info("projections rebuilt from Kafka: %s", result)
    return result


def _kafka_read(result: ReplayResult, report: Progress, *, batch_size: int, idle_timeout: float) -> None:
    """Read every partition of the ledger topics from its beginning with a throwaway consumer
    that commits nothing, and apply it to the rebuild."""
    kafka.topics_ensure(ALL_TOPICS)
    consumer = kafka.consumer_create(
        f"projections-replay-{uuid.uuid4().hex}", **{"enable.auto.commit": False, "enable.partition.eof": True}
    )
    try:
        partitions = _partitions_at_start(consumer)
        report("events", 0, sum(partitions.values()) or None)
        consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING) for topic, partition in partitions])
        _kafka_apply(consumer, set(partitions), result, report, batch_size=batch_size, idle_timeout=idle_timeout)
    finally:
        consumer.close()


def _partitions_at_start(consumer) -> dict[tuple[str, int], int]:
    """Every partition of the ledger topics, with how many messages it holds (about: see above)."""
    metadata = consumer.list_topics(timeout=10)
    partitions: dict[tuple[str, int], int] = {}
    for topic in ALL_TOPICS:
        for partition in sorted(metadata.topics[topic].partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10, cached=False)
            if low > 0:
                raise ReplayError(
                    f"{topic}[{partition}] starts at offset {low}: older events are gone (retention), "
                    "so Kafka cannot rebuild the projections; replay from the ledger instead"
                )
            partitions[(topic, partition)] = max(0, high - low)
    return partitions


def _kafka_apply(consumer, partitions: set[tuple[str, int]], result: ReplayResult, report: Progress, *,
                 batch_size: int, idle_timeout: float) -> None:
    """Apply every message to the rebuild, batch by batch, until each partition is at its end."""
    remaining = set(partitions)
    tables = Tables(REBUILD_SCHEMA)
    heard = time.monotonic()
    while remaining:
        events = []
        read = 0
        for message in consumer.consume(num_messages=batch_size, timeout=0.5):
            heard = time.monotonic()
            error = message.error()
            position = (message.topic(), message.partition())
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    remaining.discard(position)
                else:
                    logger.warning("kafka: %s", error)
                continue
            read += 1
            try:
                events.append(decode(consumed(message)))
            except InvalidEvent as exc:
                result.invalid_events += 1
                logger.warning("skipped %s[%d]@%d: %s", message.topic(), message.partition(), message.offset(), exc)
        if events:
            batch = BatchResult()
            with transaction.atomic(using=READ_ALIAS), connections[READ_ALIAS].cursor() as cursor:
                events_apply(cursor, tables, events, batch)
        result.events += read
        if read:
            report("events", read, None)
        if remaining and time.monotonic() - heard > idle_timeout:
            raise ReplayError(f"Kafka sent nothing for {idle_timeout:.0f} s; partitions not read to the end: "
                              + ", ".join(f"{topic}[{partition}]" for topic, partition in sorted(remaining)))


# --- build beside ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Index:
    table: str
    name: str
    definition: str  # CREATE [UNIQUE] INDEX ..., schema-qualified
    constraint: str | None  # "PRIMARY KEY" or "UNIQUE" when the index backs a constraint
    deferrable: str = ""


@contextlib.contextmanager
def _replay_lock() -> Iterator[None]:
    """One replay at a time, whatever the process: a session advisory lock on the read database."""
    if connections[READ_ALIAS].in_atomic_block:
        raise ReplayError("the replay commits as it goes: call it outside a transaction")
    with connections[READ_ALIAS].cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [REPLAY_LOCK_KEY])
        if not cursor.fetchone()[0]:
            raise ReplayError("another replay of the projections is running")
    try:
        yield
    finally:
        try:
            with connections[READ_ALIAS].cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [REPLAY_LOCK_KEY])
        except DatabaseError:  # the connection is gone, and the lock with it
            logger.warning("could not release the replay lock", exc_info=True)


def _live_schemas() -> dict[str, str]:
    """The schema of each live projection table."""
    tables = [model._meta.db_table for model in PROJECTION_MODELS]
    with connections[READ_ALIAS].cursor() as cursor:
        cursor.execute(
            "SELECT t.name, n.nspname FROM unnest(%s::text[]) AS t(name) "
            "LEFT JOIN pg_class c ON c.oid = to_regclass(t.name) LEFT JOIN pg_namespace n ON n.oid = c.relnamespace",
            [tables],
        )
        schemas = dict(cursor.fetchall())
    missing = sorted(table for table, schema in schemas.items() if schema is None)
    if missing:
        raise ReplayError(f"no live table {', '.join(missing)} on the read database: run migrate first")
    if REBUILD_SCHEMA in schemas.values() or RETIRED_SCHEMA in schemas.values():
        raise ReplayError(f"the search path finds the projections in {REBUILD_SCHEMA} or {RETIRED_SCHEMA}")
    return schemas


def _rebuild_tables_create(*, drop_indexes: bool) -> list[_Index]:
    """A fresh REBUILD_SCHEMA with the projection tables, as the migrations create them. With
    `drop_indexes`, their indexes are dropped and returned, to be built after the load."""
    connection = connections[READ_ALIAS]
    with transaction.atomic(using=READ_ALIAS), connection.cursor() as cursor:
        cursor.execute(f"DROP SCHEMA IF EXISTS {REBUILD_SCHEMA} CASCADE")
        cursor.execute(f"CREATE SCHEMA {REBUILD_SCHEMA}")
        cursor.execute("SELECT current_setting('search_path')")
        search_path = cursor.fetchone()[0]
        cursor.execute("SELECT set_config('search_path', %s, true)", [REBUILD_SCHEMA])
        with connection.schema_editor() as editor:
            for model in PROJECTION_MODELS:
                editor.create_model(model)
        cursor.execute("SELECT set_config('search_path', %s, true)", [search_path])
        indexes = _indexes_of(cursor, REBUILD_SCHEMA)
        if drop_indexes:
            for index in indexes:
                if index.constraint:
                    cursor.execute(f'ALTER TABLE {REBUILD_SCHEMA}.{index.table} DROP CONSTRAINT "{index.name}"')
                else:
                    cursor.execute(f'DROP INDEX {REBUILD_SCHEMA}."{index.name}"')
    return indexes


def _indexes_of(cursor, schema: str) -> list[_Index]:
    """The indexes of the tables in `schema`, except those backing an exclusion constraint."""
    cursor.execute(
        """SELECT t.relname, i.relname, pg_get_indexdef(i.oid), c.contype, c.condeferrable, c.condeferred
             FROM pg_index x
             JOIN pg_class i ON i.oid = x.indexrelid
             JOIN pg_class t ON t.oid = x.indrelid
             LEFT JOIN pg_constraint c ON c.conindid = i.oid AND c.conrelid = t.oid
            WHERE t.relnamespace = %s::regnamespace AND coalesce(c.contype, 'i') IN ('i', 'p', 'u')
            ORDER BY t.relname, i.relname""",
        [schema],
    )
    kinds = {"p": "PRIMARY KEY", "u": "UNIQUE"}
    return [
        _Index(table, name, definition, kinds.get(contype),
               ("DEFERRABLE INITIALLY DEFERRED" if deferred else "DEFERRABLE") if deferrable else "")
        for table, name, definition, contype, deferrable, deferred in cursor.fetchall()
    ]


def _indexes_build(indexes: list[_Index], *, workers: int, progress: Progress) -> None:
    """Build the dropped indexes in parallel, turn the constraint ones back into constraints,
    and give the planner statistics."""
    progress("indexes", 0, len(indexes))

    def build(index: _Index) -> int:
        with transaction.atomic(using=READ_ALIAS), connections[READ_ALIAS].cursor() as cursor:
            cursor.execute("SELECT set_config('maintenance_work_mem', %s, true)", [INDEX_BUILD_MEMORY])
            cursor.execute(index.definition)
        return 1

    # Big tables first: their indexes take longest.
    order = {"projection_transfer": 0, "projection_statement_line": 1}
    _in_parallel(sorted(indexes, key=lambda index: order.get(index.table, 2)), build,
                 done=lambda _index, count: progress("indexes", count, len(indexes)), workers=workers)
    with transaction.atomic(using=READ_ALIAS), connections[READ_ALIAS].cursor() as cursor:
        for index in indexes:
            if index.constraint:
                cursor.execute(
                    f'ALTER TABLE {REBUILD_SCHEMA}.{index.table} ADD CONSTRAINT "{index.name}" '
                    f'{index.constraint} USING INDEX "{index.name}" {index.deferrable}'
                )
    _rebuild_analyze()


def _rebuild_analyze() -> None:
    """Statistics for the planner, which new tables lack until autovacuum gets to them."""
    with connections[READ_ALIAS].cursor() as cursor:
        for model in PROJECTION_MODELS:
            cursor.execute(f"ANALYZE {REBUILD_SCHEMA}.{model._meta.db_table}")


def _rebuild_schema_drop() -> None:
    try:
        with connections[READ_ALIAS].cursor() as cursor:
            cursor.execute(f"DROP SCHEMA IF EXISTS {REBUILD_SCHEMA} CASCADE")
    except Exception:  # the error being raised matters more; the next replay drops it anyway
        logger.warning("could not drop %s", REBUILD_SCHEMA, exc_info=True)


# --- swap ------------------------------------------------------------------------------------


def _swap(live: dict[str, str], *, progress: Progress) -> dict[str, int]:
    """Merge what the live consumer applied meanwhile, then put the rebuilt tables in place."""
    progress("swap", 0, 1)
    for attempt in range(1, SWAP_ATTEMPTS + 1):
        try:
            with transaction.atomic(using=READ_ALIAS), connections[READ_ALIAS].cursor() as cursor:
                cursor.execute("SELECT set_config('lock_timeout', %s, true)", [SWAP_LOCK_TIMEOUT])
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [SWAP_LOCK_KEY])
                merged = _live_merge(cursor, live)
                cursor.execute(f"DROP SCHEMA IF EXISTS {RETIRED_SCHEMA} CASCADE")
                cursor.execute(f"CREATE SCHEMA {RETIRED_SCHEMA}")
                for model in PROJECTION_MODELS:
                    table = model._meta.db_table
                    cursor.execute(f'ALTER TABLE "{live[table]}".{table} SET SCHEMA {RETIRED_SCHEMA}')
                    cursor.execute(f'ALTER TABLE {REBUILD_SCHEMA}.{table} SET SCHEMA "{live[table]}"')
                cursor.execute(f"DROP SCHEMA {RETIRED_SCHEMA} CASCADE")
                cursor.execute(f"DROP SCHEMA {REBUILD_SCHEMA} CASCADE")
        except OperationalError as exc:
            if getattr(exc.__cause__, "sqlstate", None) not in ("55P03", "40P01") or attempt == SWAP_ATTEMPTS:
                raise
            logger.warning("swap attempt %d/%d could not take its locks (%s); retrying", attempt, SWAP_ATTEMPTS, exc)
            time.sleep(min(3.0, 0.5 * attempt))
            continue
        progress("swap", 1, 1)
        return merged
    raise AssertionError("unreachable")


def _live_merge(cursor, live: dict[str, str]) -> dict[str, int]:
    """Copy into the rebuild what the live tables have beyond it, as far as the ledger confirms
    it row for row: accounts whose live balance is at a later entry (with those statement
    lines), and transfers the rebuild lacks. Anything else in the live tables is drift that
    the rebuild replaces. Runs under the swap lock, so the live tables stand still."""
    balance, line, transfer = (f'"{live[model._meta.db_table]}".{model._meta.db_table}' for model in PROJECTION_MODELS)
    rebuilt = Tables(REBUILD_SCHEMA)

    cursor.execute(
        f"""SELECT l.account_id, l.currency, l.balance, l.last_sequence, l.updated_at, coalesce(r.last_sequence, 0)
              FROM {balance} l LEFT JOIN {rebuilt.balance} r USING (account_id)
             WHERE r.account_id IS NULL OR l.last_sequence > r.last_sequence"""
    )
    ahead = {row[0]: row for row in cursor.fetchall()}
    lines: dict[Any, list[tuple]] = defaultdict(list)
    if ahead:
        cursor.execute(
            f"""SELECT {', '.join(f'l.{column}' for column in LINE_COLUMNS)}
                  FROM {line} l JOIN unnest(%s::uuid[], %s::bigint[]) AS c(account_id, after) USING (account_id)
                 WHERE l.sequence > c.after ORDER BY l.account_id, l.sequence""",
            [list(ahead), [row[5] for row in ahead.values()]],
        )
        for row in cursor.fetchall():
            lines[row[0]].append(row)
    cursor.execute(
        f"""SELECT {', '.join(f'l.{column}' for column in TRANSFER_COLUMNS)}
              FROM {transfer} l LEFT JOIN {rebuilt.transfer} r USING (transfer_id) WHERE r.transfer_id IS NULL"""
    )
    missing_transfers = cursor.fetchall()

    confirmed_accounts = _accounts_confirmed(ahead, lines)
    confirmed_transfers = _transfers_confirmed(missing_transfers)

    merged = {"balances": 0, "statement_lines": 0, "transfers": 0}
    if confirmed_accounts:
        cursor.execute(
            f"""INSERT INTO {rebuilt.balance} ({', '.join(BALANCE_COLUMNS)})
                SELECT {', '.join(BALANCE_COLUMNS)} FROM {balance} WHERE account_id = ANY(%s::uuid[])
                ON CONFLICT (account_id) DO UPDATE SET
                    {', '.join(f'{column} = EXCLUDED.{column}' for column in BALANCE_COLUMNS[1:])}""",
            [confirmed_accounts],
        )
        merged["balances"] = cursor.rowcount
        cursor.execute(
            f"""INSERT INTO {rebuilt.line} ({', '.join(LINE_COLUMNS)})
                SELECT {', '.join(f'l.{column}' for column in LINE_COLUMNS)}
                  FROM {line} l JOIN unnest(%s::uuid[], %s::bigint[]) AS c(account_id, after) USING (account_id)
                 WHERE l.sequence > c.after""",
            [confirmed_accounts, [ahead[account_id][5] for account_id in confirmed_accounts]],
        )
        merged["statement_lines"] = cursor.rowcount
    if confirmed_transfers:
        cursor.execute(
            f"""INSERT INTO {rebuilt.transfer} ({', '.join(TRANSFER_COLUMNS)})
                SELECT {', '.join(TRANSFER_COLUMNS)} FROM {transfer} WHERE transfer_id = ANY(%s::uuid[])""",
            [confirmed_transfers],
        )
        merged["transfers"] = cursor.rowcount
    dropped = len(ahead) - len(confirmed_accounts) + len(missing_transfers) - len(confirmed_transfers)
    if dropped:
        logger.warning("%d live projection rows beyond the rebuild disagree with the ledger: not kept", dropped)
    return merged


def _accounts_confirmed(ahead: dict[Any, tuple], lines: dict[Any, list[tuple]]) -> list:
    """The accounts of `ahead` whose live balance and lines beyond the rebuild are the ledger's."""
    if not ahead:
        return []
    keys = [(row[0], row[1]) for rows in lines.values() for row in rows]
    with connections[LEDGER_ALIAS].cursor() as cursor:
        cursor.execute("SELECT id, currency FROM account WHERE id = ANY(%s::uuid[])", [list(ahead)])
        currencies = dict(cursor.fetchall())
        ledger_lines = set()
        if keys:
            cursor.execute(
                line_rows_sql(where="(e.account_id, e.sequence) IN "
                                    "(SELECT * FROM unnest(%(accounts)s::uuid[], %(sequences)s::bigint[]))"),
                {"applied_at": None, "accounts": [k[0] for k in keys], "sequences": [k[1] for k in keys]},
            )
            ledger_lines = {row[:-1] for row in cursor.fetchall()}
    confirmed = []
    for account_id, (_, currency, balance, last_sequence, updated_at, after) in ahead.items():
        mine = lines.get(account_id, [])
        if currencies.get(account_id) != currency:
            continue
        if [row[1] for row in mine] != list(range(after + 1, last_sequence + 1)):
            continue
        if not all(row[:-1] in ledger_lines for row in mine):
            continue
        if mine and (mine[-1][7], mine[-1][8]) != (balance, updated_at):
            continue
        if not mine and balance != 0:
            continue
        confirmed.append(account_id)
    return confirmed


def _transfers_confirmed(live_rows: list[tuple]) -> list:
    """The transfers of `live_rows` (TRANSFER_COLUMNS) that the ledger has, identical."""
    if not live_rows:
        return []
    with connections[LEDGER_ALIAS].cursor() as cursor:
        cursor.execute(transfer_rows_sql(where="t.id = ANY(%(ids)s::uuid[])"),
                       {"applied_at": None, "ids": [row[0] for row in live_rows]})
        ledger = {row[0]: row[:-1] for row in cursor.fetchall()}
    # The JSON columns come back as text on both sides, and equal jsonb values print the same.
    return [row[0] for row in live_rows if ledger.get(row[0]) == row[:-1]]


# --- plumbing --------------------------------------------------------------------------------


def _no_progress(stage: str, advance: int, total: int | None) -> None:
    pass


def _in_parallel(tasks: Sequence[T], work: Callable[[T], int], *, done: Callable[[T, int], None],
                 workers: int) -> None:
    """Run work(task) for every task in up to `workers` threads, each with its own database
    connections (closed when it ends); call done(task, result) here, as each finishes. The
    first error stops the others after their current task and is raised here."""
    pending: queue.SimpleQueue[T] = queue.SimpleQueue()
    for task in tasks:
        pending.put(task)
    finished: queue.SimpleQueue[tuple[T, int | None, BaseException | None]] = queue.SimpleQueue()
    stop = threading.Event()

    def loop() -> None:
        try:
            while not stop.is_set():
                try:
                    task = pending.get_nowait()
                except queue.Empty:
                    return
                try:
                    finished.put((task, work(task), None))
                except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
                    finished.put((task, None, exc))
                    return
        finally:
            connections.close_all()

    threads = [threading.Thread(target=loop, name=f"projections-replay-{n}", daemon=True)
               for n in range(max(1, min(workers, len(tasks))))]
    for thread in threads:
        thread.start()
    error: BaseException | None = None
    try:
        outstanding = len(tasks)
        while outstanding and error is None:
            try:
                task, value, exc = finished.get(timeout=0.2)
            except queue.Empty:
                if not any(thread.is_alive() for thread in threads) and finished.empty():
                    raise RuntimeError("replay workers ended with work left") from None
                continue
            outstanding -= 1
            if exc is not None:
                error = exc
            else:
                done(task, value)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    if error is not None:
        raise error


