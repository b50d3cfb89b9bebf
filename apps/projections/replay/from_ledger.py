"""Rebuilding the projections from the ledger, the source of truth."""

from __future__ import annotations

from django.conf import settings
from django.utils import timezone

from apps.projections.replay.frame import rebuild_and_swap
from apps.projections.replay.loader import CHUNK_ROWS, ledger_load
from apps.projections.replay.rebuild import Index, indexes_build
from apps.projections.replay.result import Progress, ReplayResult, no_progress

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
    report = progress or no_progress
    copy = (not settings.READ_DATABASE_IS_DEFAULT) if ledger_copy is None else ledger_copy
    result = ReplayResult(source="ledger")

    def fill(indexes: list[Index]) -> None:
        loaded = ledger_load(
            applied_at=timezone.now(), copy=copy, chunk_rows=chunk_rows, workers=workers, progress=report
        )
        result.balances = loaded["balances"]
        result.statement_lines = loaded["statement lines"]
        result.transfers = loaded["transfers"]
        result.grants = loaded["grants"]
        indexes_build(indexes, workers=workers, progress=report)

    return rebuild_and_swap(result, progress=report, drop_indexes=True, fill=fill)
