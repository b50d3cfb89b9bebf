"""What a replay reports: its result, its progress, and the error that leaves the live tables alone."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

#: progress(stage, rows just done, rows the stage will do or None): called from the calling thread.
Progress = Callable[[str, int, "int | None"], None]


class ReplayError(RuntimeError):
    """The replay could not run; the live projections are untouched."""


@dataclass
class ReplayResult:
    source: str  # "ledger" or "kafka"
    balances: int = 0
    statement_lines: int = 0
    transfers: int = 0
    grants: int = 0
    #: Rows the live consumer applied during the rebuild, merged in at the swap.
    merged: dict[str, int] = field(
        default_factory=lambda: {"balances": 0, "statement_lines": 0, "transfers": 0, "grants": 0}
    )
    #: Kafka only: messages read, and those that were not valid events (skipped).
    events: int = 0
    invalid_events: int = 0
    seconds: float = 0.0


def no_progress(stage: str, advance: int, total: int | None) -> None:
    pass
