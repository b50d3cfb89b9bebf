"""The projection tables built beside the live ones, in REBUILD_SCHEMA: created as the
migrations create them, their indexes dropped for the load and built again after it."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import connections, transaction
from django.db.models import Model
from psycopg import sql

from apps.projections.models import ProjectedBalance, ProjectedGrant, ProjectedStatementLine, ProjectedTransfer
from apps.projections.projector import Tables
from apps.projections.replay.parallel import in_parallel
from apps.projections.replay.result import Progress
from apps.projections.routers import READ_ALIAS

logger = logging.getLogger(__package__)  # one logger for the whole replay: apps.projections.replay

REBUILD_SCHEMA = "projections_rebuild"
PROJECTION_MODELS: tuple[type[Model], ...] = (
    ProjectedBalance,
    ProjectedStatementLine,
    ProjectedTransfer,
    ProjectedGrant,
)
#: Sort memory for each index build.
INDEX_BUILD_MEMORY = "256MB"


@dataclass(frozen=True)
class Index:
    table: str
    name: str
    definition: str  # CREATE [UNIQUE] INDEX ..., schema-qualified, as pg_get_indexdef() writes it
    constraint: str | None  # "PRIMARY KEY" or "UNIQUE" when the index backs a constraint
    deferrable: str = ""


def rebuilt(table: str) -> sql.Identifier:
    """`table` in REBUILD_SCHEMA."""
    return sql.Identifier(REBUILD_SCHEMA, table)


def rebuild_tables_create(*, drop_indexes: bool) -> list[Index]:
    """A fresh REBUILD_SCHEMA with the projection tables, as the migrations create them. With
    `drop_indexes`, their indexes are dropped and returned, to be built after the load."""
    connection = connections[READ_ALIAS]
    schema = sql.Identifier(REBUILD_SCHEMA)
    with transaction.atomic(using=READ_ALIAS), connection.cursor() as cursor:
        cursor.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(schema))
        cursor.execute(sql.SQL("CREATE SCHEMA {}").format(schema))
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
                    cursor.execute(
                        sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                            rebuilt(index.table), sql.Identifier(index.name)
                        )
                    )
                else:
                    cursor.execute(sql.SQL("DROP INDEX {}").format(rebuilt(index.name)))
    return indexes


def _indexes_of(cursor, schema: str) -> list[Index]:
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
        Index(
            table,
            name,
            definition,
            kinds.get(contype),
            ("DEFERRABLE INITIALLY DEFERRED" if deferred else "DEFERRABLE") if deferrable else "",
        )
        for table, name, definition, contype, deferrable, deferred in cursor.fetchall()
    ]


def indexes_build(indexes: list[Index], *, workers: int, progress: Progress) -> None:
    """Build the dropped indexes in parallel, turn the constraint ones back into constraints,
    and give the planner statistics."""
    progress("indexes", 0, len(indexes))

    def build(index: Index) -> int:
        with transaction.atomic(using=READ_ALIAS), connections[READ_ALIAS].cursor() as cursor:
            cursor.execute("SELECT set_config('maintenance_work_mem', %s, true)", [INDEX_BUILD_MEMORY])
            cursor.execute(index.definition)
        return 1

    # Big tables first: their indexes take longest.
    order = {"projection_transfer": 0, "projection_statement_line": 1}
    in_parallel(
        sorted(indexes, key=lambda index: order.get(index.table, 2)),
        build,
        done=lambda _index, count: progress("indexes", count, len(indexes)),
        workers=workers,
    )
    with transaction.atomic(using=READ_ALIAS), connections[READ_ALIAS].cursor() as cursor:
        for index in indexes:
            if index.constraint:
                name = sql.Identifier(index.name)
                cursor.execute(
                    sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {} USING INDEX {} {}").format(
                        rebuilt(index.table), name, sql.SQL(index.constraint), name, sql.SQL(index.deferrable)
                    )
                )
    rebuild_analyze()


def rebuild_analyze() -> None:
    """Statistics for the planner, which new tables lack until autovacuum gets to them."""
    with connections[READ_ALIAS].cursor() as cursor:
        for model in PROJECTION_MODELS:
            cursor.execute(sql.SQL("ANALYZE {}").format(rebuilt(model._meta.db_table)))


def rebuild_counts() -> tuple[int, int, int, int]:
    """How many balances, statement lines, transfers and grants the rebuild holds."""
    tables = Tables(REBUILD_SCHEMA)
    counts = sql.SQL(", ").join(
        sql.SQL("(SELECT count(*) FROM {})").format(table)
        for table in (tables.balance, tables.line, tables.transfer, tables.grant)
    )
    with connections[READ_ALIAS].cursor() as cursor:
        cursor.execute(sql.SQL("SELECT {}").format(counts))
        return cursor.fetchone()


def rebuild_schema_drop() -> None:
    try:
        with connections[READ_ALIAS].cursor() as cursor:
            cursor.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(REBUILD_SCHEMA)))
    except Exception:  # the error being raised matters more; the next replay drops it anyway
        logger.warning("could not drop %s", REBUILD_SCHEMA, exc_info=True)
