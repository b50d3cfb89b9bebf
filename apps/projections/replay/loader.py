"""Loading the rebuild from the ledger: one exported snapshot, read in chunks of heap pages by
a few connections in parallel."""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from django.db import connections, transaction
from django.db.models import Model
from psycopg import sql

from apps.projections.ledger_rows import (
    BALANCE_COLUMNS,
    GRANT_COLUMNS,
    LEDGER_ALIAS,
    LINE_COLUMNS,
    TRANSFER_COLUMNS,
    balance_rows_sql,
    column_list,
    grant_rows_sql,
    line_rows_sql,
    transfer_rows_sql,
)
from apps.projections.models import ProjectedBalance, ProjectedGrant, ProjectedStatementLine, ProjectedTransfer
from apps.projections.replay.parallel import in_parallel
from apps.projections.replay.rebuild import rebuilt
from apps.projections.replay.result import Progress, ReplayError
from apps.projections.routers import READ_ALIAS

#: About this many rows per chunk of the load.
CHUNK_ROWS = 50_000


class _Stage(NamedTuple):
    ledger_table: str
    ledger_alias: str  # the ledger table's alias in rows_sql
    rows_sql: Callable[[sql.Composable], sql.Composed]
    model: type[Model]
    columns: tuple[str, ...]


_STAGES = {
    "balances": _Stage("account", "a", balance_rows_sql, ProjectedBalance, BALANCE_COLUMNS),
    "statement lines": _Stage("entry", "e", line_rows_sql, ProjectedStatementLine, LINE_COLUMNS),
    "transfers": _Stage("transfer", "t", transfer_rows_sql, ProjectedTransfer, TRANSFER_COLUMNS),
    "grants": _Stage("credit_grant", "g", grant_rows_sql, ProjectedGrant, GRANT_COLUMNS),
}


@dataclass(frozen=True)
class _Chunk:
    stage: str  # a key of _STAGES
    first_page: int
    end_page: int | None  # None: to the end of the table


def ledger_load(
    *, applied_at: datetime, copy: bool, chunk_rows: int, workers: int, progress: Progress
) -> dict[str, int]:
    """Load every projection row the ledger has into the rebuild; the rows loaded per stage.

    `copy` streams the rows with COPY from the ledger's connection to the read model's;
    otherwise each chunk is one INSERT ... SELECT on the read model's connection."""
    with _ledger_snapshot() as snapshot:
        chunks, totals = _chunks_plan(chunk_rows)
        for stage, total in totals.items():
            progress(stage, 0, total)
        loaded: dict[str, int] = defaultdict(int)

        def load(chunk: _Chunk) -> int:
            return _chunk_load(chunk, snapshot=snapshot, applied_at=applied_at, copy=copy)

        def done(chunk: _Chunk, rows: int) -> None:
            loaded[chunk.stage] += rows
            progress(chunk.stage, rows, totals[chunk.stage])

        in_parallel(chunks, load, done=done, workers=workers)
    return loaded


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


def _chunks_plan(chunk_rows: int) -> tuple[list[_Chunk], dict[str, int]]:
    """Chunks of every ledger table, in the snapshot; and the exact row count of each stage."""
    with connections[LEDGER_ALIAS].cursor() as cursor:
        cursor.execute("SELECT count(*), coalesce(sum(last_sequence), 0) FROM account")
        accounts, entries = cursor.fetchone()
        cursor.execute("SELECT (SELECT count(*) FROM transfer), (SELECT count(*) FROM credit_grant)")
        transfers, grants = cursor.fetchone()
        totals = {"balances": accounts, "statement lines": int(entries), "transfers": transfers, "grants": grants}
        chunks = []
        for stage_name, stage in _STAGES.items():
            cursor.execute(
                "SELECT pg_relation_size(c.oid) / current_setting('block_size')::int, c.reltuples, c.relpages "
                "FROM pg_class c WHERE c.oid = %s::regclass",
                [stage.ledger_table],
            )
            pages, tuples, counted_pages = cursor.fetchone()
            per_page = tuples / counted_pages if tuples > 0 and counted_pages > 0 else 50
            step = max(1, int(chunk_rows / per_page))
            starts = list(range(0, max(pages, 1), step))
            # The last chunk is open-ended: rows this snapshot sees cannot be beyond what a
            # scan sees, whatever the size read above.
            chunks += [
                _Chunk(stage_name, first, starts[i + 1] if i + 1 < len(starts) else None)
                for i, first in enumerate(starts)
            ]
    # Big tables first, so that the parallel workers finish together.
    order = {"transfers": 0, "statement lines": 1, "balances": 2, "grants": 3}
    return sorted(chunks, key=lambda chunk: order[chunk.stage]), totals


def _chunk_load(chunk: _Chunk, *, snapshot: str, applied_at: datetime, copy: bool) -> int:
    """Load one chunk in this thread's own connections; the rows it wrote."""
    stage = _STAGES[chunk.stage]
    ctid = sql.Identifier(stage.ledger_alias, "ctid")
    where = sql.SQL("{} >= %(first)s::tid").format(ctid)
    params: dict[str, datetime | str] = {"applied_at": applied_at, "first": f"({chunk.first_page},0)"}
    if chunk.end_page is not None:
        where = sql.SQL("{} AND {} < %(end)s::tid").format(where, ctid)
        params["end"] = f"({chunk.end_page},0)"
    select = stage.rows_sql(where)
    target = sql.SQL("{} ({})").format(rebuilt(stage.model._meta.db_table), column_list(stage.columns))
    if not copy:
        with transaction.atomic(using=READ_ALIAS), connections[READ_ALIAS].cursor() as cursor:
            _snapshot_import(cursor, snapshot)
            cursor.execute("SET LOCAL jit = off")
            cursor.execute(sql.SQL("INSERT INTO {} {}").format(target, select), params)
            return cursor.rowcount
    with (
        transaction.atomic(using=LEDGER_ALIAS),
        connections[LEDGER_ALIAS].cursor() as source,
        transaction.atomic(using=READ_ALIAS),
        connections[READ_ALIAS].cursor() as destination,
    ):
        _snapshot_import(source, snapshot)
        source.execute("SET LOCAL jit = off")
        with (
            source.cursor.copy(sql.SQL("COPY ({}) TO STDOUT (FORMAT BINARY)").format(select), params) as rows_out,
            destination.cursor.copy(sql.SQL("COPY {} FROM STDIN (FORMAT BINARY)").format(target)) as rows_in,
        ):
            for data in rows_out:
                rows_in.write(data)
        return source.cursor.rowcount


def _snapshot_import(cursor, snapshot: str) -> None:
    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    cursor.execute("SET TRANSACTION SNAPSHOT %s", [snapshot])
