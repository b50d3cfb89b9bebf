"""Transaction helpers for top-level services."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from django.conf import settings
from django.db import OperationalError, connection, transaction

from creditledger.actor import SYSTEM, actor_current

logger = logging.getLogger(__name__)

T = TypeVar("T")

# SQLSTATEs that mean "nothing was wrong with the request, run it again".
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})  # serialization_failure, deadlock_detected


def _sqlstate(exc: BaseException) -> str | None:
    cause = exc.__cause__
    return getattr(cause, "sqlstate", None)


def in_durable_transaction(work: Callable[[], T], *, retries: int | None = None, record_actor: bool = True) -> T:
    """Run `work` in its own durable transaction, retrying serialization failures and
    deadlocks with jittered backoff so that clients never see them as errors. Every row it
    writes records the current actor (creditledger/actor.py); `record_actor=False` leaves that
    to `work` when it sets `ledger.actor` itself before it writes (ledger_post_transfers sets
    each item's), which saves a round trip."""
    attempts = (settings.LEDGER["TRANSACTION_RETRIES"] if retries is None else retries) + 1
    for attempt in range(1, attempts + 1):
        try:
            with transaction.atomic(durable=True):
                if record_actor and (actor := actor_current()) != SYSTEM:  # else the columns' default
                    with connection.cursor() as cursor:
                        cursor.execute("SELECT set_config('ledger.actor', %s, true)", [actor])
                return work()
        except OperationalError as exc:
            if _sqlstate(exc) not in RETRYABLE_SQLSTATES or attempt == attempts:
                raise
            logger.warning("retrying transaction after %s (attempt %d/%d)", _sqlstate(exc), attempt, attempts)
            time.sleep(random.uniform(0, 0.005 * 2**attempt))  # noqa: S311 (jitter, not a secret)
    raise AssertionError("unreachable")
