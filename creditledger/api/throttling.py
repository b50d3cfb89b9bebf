"""Rate limits per API key (issue 12, section 4): a budget per second for writes and one for
reads, counted in the cache every web worker shares (CACHES["throttle"]: Redis when one is
configured, else the database cache). Past it, DRF raises Throttled: 429 problem+json with
Retry-After, before the view runs, so nothing of the request is applied and nothing is written.

The count is a sliding window estimated from two fixed ones (the current period's counter and
the previous one's, weighted by how much of it still overlaps the last period), as Redis-backed
limiters commonly do: with Redis, one Lua command per request (INCR, EXPIRE and GET), atomic
across workers, where DRF's own SimpleRateThrottle reads and rewrites a list of request times
(two round trips, and concurrent requests overwrite each other's)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any, cast

from django.conf import settings
from django.core.cache import BaseCache, caches
from django.db import DatabaseError
from redis.exceptions import RedisError
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from creditledger.api.scopes import ScopedCredential
from creditledger.cache import SharedClientRedisCache

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

logger = logging.getLogger(__name__)


def _count_if_admitted(
    cache: BaseCache, current: str, previous: str, ttl: int, admits: Callable[[int, int], bool]
) -> tuple[bool, int, int]:
    """Count one more request under the counter `current` if `admits(current with it, previous)`:
    (admitted, current with it, previous). A refusal leaves the counts as they were. With Redis,
    one atomic command counts and reads, and a refusal takes its count back; with the database
    cache, the counters are read first and only an admitted request writes (a refusal writes no
    row), at the price of a count that concurrent requests may undercount."""
    if isinstance(cache, SharedClientRedisCache):
        counted, before = cache.incr_and_get(current, previous, ttl)
        admitted = admits(counted, before)
        if not admitted:
            cache.decr(current)
        return admitted, counted, before
    counts = cache.get_many([current, previous])
    counted, before = counts.get(current, 0) + 1, counts.get(previous, 0)
    admitted = admits(counted, before)
    if admitted and not cache.add(current, 1, ttl):
        cache.incr(current)
    return admitted, counted, before


class _KeyRateThrottle(SimpleRateThrottle):
    """Counts the requests of one API key; a request without a key (LEDGER_AUTH=off, or a
    public endpoint) is not counted, nor is a refused one."""

    reads: bool

    def __init__(self) -> None:
        # DRF reads the cache from a class attribute; the shared one is looked up per request.
        self.cache: BaseCache = caches["throttle"]
        self.retry_after: float | None = None
        super().__init__()

    def get_rate(self) -> str:
        return settings.LEDGER["RATE_LIMITS"][self.scope]

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if request.auth is None or ((request.method or "GET") in READ_METHODS) != self.reads:
            return None
        key = cast(ScopedCredential, request.auth)
        return f"throttle:{self.scope}:{key.id}"

    def allow_request(self, request: Request, view: Any) -> bool:
        """Without its cache, a limit lets the request through (and says so in the log): the
        budget is a guard against overuse, not a dependency of every answer, as the relay's kick
        on commit is not (apps/outbox/tasks.py)."""
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        limit, period = cast(tuple[int, int], self.parse_rate(self.rate))
        window, into = divmod(time.time(), period)
        overlap = 1 - into / period
        try:
            admitted, counted, before = _count_if_admitted(
                self.cache,
                f"{key}:{int(window)}",
                f"{key}:{int(window) - 1}",
                2 * period,
                lambda counted, before: before * overlap + counted <= limit,
            )
        except (RedisError, DatabaseError) as error:
            logger.warning("rate limit %s not applied: its cache is unavailable (%s)", self.scope, error)
            return True
        if not admitted:
            self.retry_after = self._seconds_until_one_more(limit, period, into, admitted=counted - 1, before=before)
        return admitted

    @staticmethod
    def _seconds_until_one_more(limit: int, period: int, into: float, *, admitted: int, before: int) -> float:
        """When the estimate first leaves room for one request: later in this period as the
        previous one's weight fades, or in the next, once this one's has faded enough."""
        if admitted + 1 <= limit and before:
            return period * (1 - (limit - admitted - 1) / before) - into
        fade = max(0.0, 1 - (limit - 1) / admitted) if admitted else 0.0
        return period - into + period * fade

    def wait(self) -> float | None:
        return None if self.retry_after is None else max(1.0, math.ceil(self.retry_after))


class KeyWriteThrottle(_KeyRateThrottle):
    scope = "writes"
    reads = False


class KeyReadThrottle(_KeyRateThrottle):
    scope = "reads"
    reads = True
