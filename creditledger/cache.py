"""Django's Redis cache with one client per connection pool, kept for the process.

Django's RedisCacheClient builds a new redis.Redis around its pool on every call; redis-py's
constructor costs about as much as the command itself, so each rate-limit check paid for it.
A redis.Redis object is safe to share between threads: its pool hands each command its own
connection. The cache also claims the rate limits' budget in one command (claim)."""

from __future__ import annotations

from typing import Any

from django.core.cache.backends.redis import RedisCache, RedisCacheClient


class _SharedClientRedisCacheClient(RedisCacheClient):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, Any] = {}

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        # The stubs lack the client's private helpers (Django 5.2: _get_connection_pool, _client).
        pool = self._get_connection_pool(write)  # type: ignore[attr-defined]  # kept for the process
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients[id(pool)] = self._client(connection_pool=pool)  # type: ignore[attr-defined]
        return client


_CLAIM = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local before = tonumber(redis.call('GET', KEYS[2]) or '0')
local room = math.floor(tonumber(ARGV[3]) - before * tonumber(ARGV[4]) - current)
local take = math.min(tonumber(ARGV[2]), room)
if take < 1 then
  return {0, current, before}
end
current = redis.call('INCRBY', KEYS[1], take)
redis.call('EXPIRE', KEYS[1], ARGV[1])
return {take, current, before}
"""


class SharedClientRedisCache(RedisCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = _SharedClientRedisCacheClient
        self._claim: Any = None

    def claim(
        self, counter: str, previous: str, *, ttl: int, wanted: int, limit: int, previous_weight: float
    ) -> tuple[int, int, int]:
        """Add up to `wanted` to `counter` (expiring `ttl` seconds after its last claim), as
        much as keeps `previous * previous_weight + counter` within `limit`, in one command,
        atomic in Redis. Returns (taken, counter after it, previous); a claim that finds no room
        takes 0 and writes nothing."""
        if self._claim is None:
            self._claim = self._cache.get_client(write=True).register_script(_CLAIM)
        taken, counted, before = self._claim(
            keys=[self.make_and_validate_key(counter), self.make_and_validate_key(previous)],
            args=[ttl, wanted, limit, repr(previous_weight)],
        )
        return int(taken), int(counted), int(before)
