"""Rebuilding the projections from the ledger, the source of truth."""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.utils import timezone

from apps.projections.replay.loader import CHUNK_ROWS, ledger_load
from apps.projections.replay.lock import replay_lock
from apps.projections.replay.rebuild import indexes_build, rebuild_schema_drop, rebuild_tables_create
from apps.projections.replay.result import Progress, ReplayResult, no_progress
from apps.projections.replay.swap import live_schemas, swap

logger = logging.getLogger(__package__)  # one logger for the whole replay: apps.projections.replay

DEFAULT_WORKERS = 2


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
    report = progress or no_progress
    copy = (not settings.READ_DATABASE_IS_DEFAULT) if ledger_copy is None else ledger_copy
    result = ReplayResult(source="ledger")
    with replay_lock():
        live = live_schemas()
        indexes = rebuild_tables_create(drop_indexes=True)
        try:
            loaded = ledger_load(
                applied_at=timezone.now(), copy=copy, chunk_rows=chunk_rows, workers=workers, progress=report
            )
            result.balances = loaded["balances"]
            result.statement_lines = loaded["statement lines"]
            result.transfers = loaded["transfers"]
            indexes_build(indexes, workers=workers, progress=report)
            result.merged = swap(live, progress=report)
        except BaseException:
            rebuild_schema_drop()
            raise
    result.seconds = time.monotonic() - started
    logger.info("projections rebuilt from the ledger: %s", result)
    return result
