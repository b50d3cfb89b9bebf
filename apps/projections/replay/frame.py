"""The frame every replay runs in, whatever it loads from: under the replay lock, create the
rebuild tables beside the live ones, fill them, swap them in, and drop the rebuild if
anything fails (Ctrl-C included), so that the live tables stay as they were."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from apps.projections.replay.lock import replay_lock
from apps.projections.replay.rebuild import Index, rebuild_schema_drop, rebuild_tables_create
from apps.projections.replay.result import Progress, ReplayResult
from apps.projections.replay.swap import live_schemas, swap

logger = logging.getLogger(__package__)


def rebuild_and_swap(
    result: ReplayResult, *, progress: Progress, drop_indexes: bool, fill: Callable[[list[Index]], None]
) -> ReplayResult:
    """Run `fill(dropped indexes)` on fresh rebuild tables, then swap them in. Returns `result`
    with the rows merged at the swap and the time it all took."""
    started = time.monotonic()
    with replay_lock():
        live = live_schemas()
        try:
            fill(rebuild_tables_create(drop_indexes=drop_indexes))
            result.merged = swap(live, progress=progress)
        except BaseException:
            rebuild_schema_drop()
            raise
    result.seconds = time.monotonic() - started
    logger.info("projections rebuilt from %s: %s", result.source, result)
    return result
