"""Rate limits per API key (issue 12, section 4): a budget per second for writes and one for
reads, counted in the cache every web worker shares (CACHES["throttle"]: Redis when one is
configured, else the database cache). Past it, DRF raises Throttled: 429 problem+json with
Retry-After, before the view runs, so nothing of the request is applied and nothing is written."""

from __future__ import annotations

import logging
from typing import Any, cast

from django.conf import settings
from django.core.cache import BaseCache, caches
from django.db import DatabaseError
from redis.exceptions import RedisError
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from creditledger.api.scopes import ScopedCredential

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

logger = logging.getLogger(__name__)


class _KeyRateThrottle(SimpleRateThrottle):
    """Counts the requests of one API key; a request without a key (LEDGER_AUTH=off, or a
    public endpoint) is not counted."""

    reads: bool

    def __init__(self) -> None:
        # DRF reads the cache from a class attribute; the shared one is looked up per request.
        self.cache: BaseCache = caches["throttle"]
        super().__init__()

    def get_rate(self) -> str:
        return settings.LEDGER["RATE_LIMITS"][self.scope]

    def allow_request(self, request: Request, view: Any) -> bool:
        """Without its cache, a limit lets the request through (and says so in the log): the
        budget is a guard against overuse, not a dependency of every answer, as the relay's kick
        on commit is not (apps/outbox/tasks.py)."""
        try:
            return super().allow_request(request, view)
        except (RedisError, DatabaseError) as error:
            logger.warning("rate limit %s not applied: its cache is unavailable (%s)", self.scope, error)
            return True

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if request.auth is None or ((request.method or "GET") in READ_METHODS) != self.reads:
            return None
        key = cast(ScopedCredential, request.auth)
        return f"throttle:{self.scope}:{key.id}"


class KeyWriteThrottle(_KeyRateThrottle):
    scope = "writes"
    reads = False


class KeyReadThrottle(_KeyRateThrottle):
    scope = "reads"
    reads = True
