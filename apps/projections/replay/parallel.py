"""Running the replay's database work in a few threads."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import TypeVar

from django.db import connections

T = TypeVar("T")


def in_parallel(tasks: Sequence[T], work: Callable[[T], int], *, done: Callable[[T, int], None], workers: int) -> None:
    """Run work(task) for every task in up to `workers` threads; call done(task, result) here,
    as each finishes. Each task runs on its thread's own database connections, closed after
    it. The first error cancels the tasks not started yet and is raised here, once the
    running ones have ended."""

    def run(task: T) -> int:
        try:
            return work(task)
        finally:
            connections.close_all()

    executor = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="projections-replay")
    try:
        pending = {executor.submit(run, task): task for task in tasks}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                done(pending.pop(future), future.result())
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
