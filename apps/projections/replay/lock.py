"""One replay at a time, whatever the process."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from django.db import DatabaseError, connections

from apps.projections.replay.result import ReplayError
from apps.projections.routers import READ_ALIAS

logger = logging.getLogger(__package__)  # one logger for the whole replay: apps.projections.replay

#: Held (session level) for the whole replay.
REPLAY_LOCK_KEY = 0x5245504C  # "REPL"


@contextlib.contextmanager
def replay_lock() -> Iterator[None]:
    """A session advisory lock on the read database, held while the block runs."""
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
