"""The rate limits' Redis cache keeps one client per pool (creditledger/cache.py). Runs where
Redis is configured (CI's PostgreSQL 15 phase); otherwise the limits use the database cache."""

from __future__ import annotations

from typing import cast

import pytest
from django.conf import settings
from django.core.cache import caches

from creditledger.cache import SharedClientRedisCache

pytestmark = pytest.mark.skipif(
    settings.CACHES["throttle"]["BACKEND"] != "creditledger.cache.SharedClientRedisCache",
    reason="no Redis configured: the rate limits use the database cache",
)


def test_the_client_is_built_once_and_serves_reads_and_writes():
    cache = cast(SharedClientRedisCache, caches["throttle"])
    cache.set("shared-client-test", [1.5, 2.5], 30)

    assert cache.get("shared-client-test") == [1.5, 2.5]
    assert cache._cache.get_client(write=True) is cache._cache.get_client(write=True)
    assert cache._cache.get_client(write=False) is cache._cache.get_client(write=False)
    cache.delete("shared-client-test")
    assert cache.get("shared-client-test") is None


def test_a_claim_takes_what_the_budget_has_room_for_in_one_command():
    """Room is the limit less the previous counter at its weight and the current counter."""
    cache = cast(SharedClientRedisCache, caches["throttle"])
    cache.delete_many(["count-now", "count-before"])

    def claim(wanted: int) -> tuple[int, int, int]:
        return cache.claim("count-now", "count-before", ttl=30, wanted=wanted, limit=10, previous_weight=0.5)

    assert claim(3) == (3, 3, 0)
    cache.set("count-before", 8, 30)
    assert claim(5) == (3, 6, 8)  # 10 - 8 * 0.5 - 3
    assert claim(1) == (0, 6, 8)
    assert cache.get("count-now") == 6  # a claim without room wrote nothing
    client = cache._cache.get_client(write=True)
    assert 0 < client.ttl(cache.make_key("count-now")) <= 30
    cache.delete_many(["count-now", "count-before"])
