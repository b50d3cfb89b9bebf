"""Rate limits per API key (issue 12, section 4): a budget per second for writes and one for
reads, counted in the cache every web worker shares (CACHES["throttle"]: Redis when one is
configured, else the database cache). Past it, DRF raises Throttled: 429 problem+json with
Retry-After, before the view runs, so nothing of the request is applied and nothing is written.

The count is a sliding window estimated from two fixed ones (the current period's counter and
the previous one's, weighted by how much of it still overlaps the last period), as Redis-backed
limiters commonly do. With Redis, a claim is one Lua command, atomic across workers, where DRF's
own SimpleRateThrottle reads and rewrites a list of request times (two round trips, and
concurrent requests overwrite each other's). A process claims a slice of the budget at a time
(_Leases), so that at a high rate most requests are admitted without a command at all."""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any, cast

from django.conf import settings
from django.core.cache import BaseCache, caches
from django.db import DatabaseError, connection, transaction
from redis.exceptions import RedisError
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from creditledger.api.scopes import ScopedCredential
from creditledger.cache import SharedClientRedisCache

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: The advisory locks of the database cache's claims: (RATE_LIMIT_LOCK_KEY, hashtext(counter)).
RATE_LIMIT_LOCK_KEY = 0x52415445  # "RATE"

logger = logging.getLogger(__name__)


def _claim(
    cache: BaseCache, current: str, previous: str, *, ttl: int, wanted: int, limit: int, previous_weight: float
) -> tuple[int, int, int]:
    """Count up to `wanted` more requests under the counter `current`, as many as keep the
    estimate `previous * previous_weight + current` within `limit`: (taken, current after it,
    previous). A claim that finds no room takes nothing and writes nothing. With Redis, one
    atomic command (SharedClientRedisCache.claim); with the database cache, a transaction that
    takes the counter's advisory lock, reads both counters, and writes only when it takes
    something: exact across workers too."""
    if isinstance(cache, SharedClientRedisCache):
        return cache.claim(current, previous, ttl=ttl, wanted=wanted, limit=limit, previous_weight=previous_weight)
    with transaction.atomic():
        # The database cache reads, then writes: claims of one counter take turns.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [RATE_LIMIT_LOCK_KEY, current])
        counts = cache.get_many([current, previous])
        counted, before = counts.get(current, 0), counts.get(previous, 0)
        taken = min(wanted, math.floor(limit - before * previous_weight - counted))
        if taken < 1:
            return 0, counted, before
        if not cache.add(current, taken, ttl):
            cache.incr(current, taken)
    return taken, counted + taken, before


class _Leases:
    """What this process may still admit without asking the cache, by counter: a process
    claims a slice of a key's budget at a time (LEASE_SHARE of it) and admits from it locally,
    so that at high rates one command counts many requests. A slice unused when its period
    ends is lost: with P processes a key may be refused up to P slices early, and is never
    admitted past its budget."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._remaining: dict[str, int] = {}

    def take(self, counter: str) -> bool:
        with self._lock:
            left = self._remaining.get(counter, 0)
            if left < 1:
                return False
            self._remaining[counter] = left - 1
            return True

    def grant(self, counter: str, count: int) -> None:
        with self._lock:
            if len(self._remaining) >= 1024:  # mostly past periods' counters: dropping a lease is safe
                self._remaining.clear()
            self._remaining[counter] = self._remaining.get(counter, 0) + count


#: The share of a budget a process claims at a time: with a budget of 100 per second, 2.
LEASE_SHARE = 1 / 50

_leases = _Leases()


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
        current = f"{key}:{int(window)}"
        if _leases.take(current):
            return True
        try:
            taken, counted, before = _claim(
                self.cache,
                current,
                f"{key}:{int(window) - 1}",
                ttl=2 * period,
                wanted=max(1, int(limit * LEASE_SHARE)),
                limit=limit,
                previous_weight=1 - into / period,
            )
        except (RedisError, DatabaseError) as error:
            logger.warning("rate limit %s not applied: its cache is unavailable (%s)", self.scope, error)
            return True
        if taken:
            if taken > 1:
                _leases.grant(current, taken - 1)
            return True
        self.retry_after = self._seconds_until_one_more(limit, period, into, admitted=counted, before=before)
        return False

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
