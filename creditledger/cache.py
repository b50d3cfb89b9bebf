"""Django's Redis cache with one client per connection pool, kept for the process.

Django's RedisCacheClient builds a new redis.Redis around its pool on every call; redis-py's
constructor costs about as much as the command itself, so each rate-limit check (a get and a
set) paid for two. A redis.Redis object is safe to share between threads: its pool hands each
command its own connection."""

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


class SharedClientRedisCache(RedisCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = _SharedClientRedisCacheClient
