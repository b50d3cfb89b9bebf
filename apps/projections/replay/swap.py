"""Putting the rebuilt tables in the live ones' place, in one transaction that no consumer
batch interleaves with."""

from __future__ import annotations

import logging
import time

from django.db import OperationalError, connections, transaction
from psycopg import sql

from apps.projections.projector import SWAP_LOCK_KEY
from apps.projections.replay.merge import live_merge
from apps.projections.replay.rebuild import PROJECTION_MODELS, REBUILD_SCHEMA, rebuilt
from apps.projections.replay.result import Progress, ReplayError
from apps.projections.routers import READ_ALIAS

logger = logging.getLogger(__package__)  # one logger for the whole replay: apps.projections.replay

RETIRED_SCHEMA = "projections_retired"
#: The swap waits this long for its locks, then retries. Short: while its ACCESS EXCLUSIVE
#: request waits behind a long read, the reads that come after it wait too.
SWAP_LOCK_TIMEOUT = "2s"
SWAP_ATTEMPTS = 10


def live_schemas() -> dict[str, str]:
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


def swap(live: dict[str, str], *, progress: Progress) -> dict[str, int]:
    """Merge what the live consumer applied meanwhile, then put the rebuilt tables in place of
    the `live` ones (live_schemas()); the rows merged per projection."""
    progress("swap", 0, 1)
    retired = sql.Identifier(RETIRED_SCHEMA)
    for attempt in range(1, SWAP_ATTEMPTS + 1):
        try:
            with transaction.atomic(using=READ_ALIAS), connections[READ_ALIAS].cursor() as cursor:
                cursor.execute("SELECT set_config('lock_timeout', %s, true)", [SWAP_LOCK_TIMEOUT])
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [SWAP_LOCK_KEY])
                merged = live_merge(cursor, live)
                cursor.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(retired))
                cursor.execute(sql.SQL("CREATE SCHEMA {}").format(retired))
                for model in PROJECTION_MODELS:
                    table = model._meta.db_table
                    live_schema = sql.Identifier(live[table])
                    cursor.execute(
                        sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(sql.Identifier(live[table], table), retired)
                    )
                    cursor.execute(sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(rebuilt(table), live_schema))
                cursor.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(retired))
                cursor.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(REBUILD_SCHEMA)))
        except OperationalError as exc:
            if getattr(exc.__cause__, "sqlstate", None) not in ("55P03", "40P01") or attempt == SWAP_ATTEMPTS:
                raise
            logger.warning("swap attempt %d/%d could not take its locks (%s); retrying", attempt, SWAP_ATTEMPTS, exc)
            time.sleep(min(3.0, 0.5 * attempt))
            continue
        progress("swap", 1, 1)
        return merged
    raise AssertionError("unreachable")
