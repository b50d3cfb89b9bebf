"""The verdicts of the API keys this process has checked, trusted only while PostgreSQL tells it
of every change to a key (ADR 0019).

A trigger (migration apikeys.0003) sends the key's id on CHANGED_CHANNEL when a change to its
row commits. A daemon thread of each process LISTENs on its own connection and drops that key's
verdicts, so a revocation holds at the key's next request in every process without a read of
the row per request. The cache serves only while that thread is listening: while it is not
(before it has connected, after its connection failed), every request reads the row, and each
(re)connection starts from an empty cache, since notifications may have been missed.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

import psycopg
from django.conf import settings
from django.db import connections
from psycopg import sql

from apps.apikeys.models import ApiKey

#: The channel of the trigger `api_key_changed_notify` (sql/0003_api_key_changed_notify.sql).
CHANGED_CHANNEL = "api_key_changed"
#: Where each listener says it has applied a change (the same payload), once the verdicts it
#: names are gone: a revocation waits for every listener (changes_applied_wait).
APPLIED_CHANNEL = "api_key_applied"
#: How the listeners' connections are named, so that a revocation can count them.
LISTENER_APPLICATION_NAME = "creditledger api key listener"
#: The most verdicts kept (keys are few): the cache is emptied when it is full.
VERDICTS_MAX = 1000
#: How often the listener looks up from its socket to see whether it is asked to stop.
_STOP_POLL_SECONDS = 0.25
_RECONNECT_FIRST_SECONDS = 0.1
_RECONNECT_MAX_SECONDS = 10.0
#: libpq's TCP keepalives, so that a connection that died silently is noticed in about 10 s
#: (a unix socket ignores them). The ceiling on a verdict's age covers what they miss.
_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3}

logger = logging.getLogger(__name__)


class VerdictCache:
    """Valid, live keys by (id, hash of the presented secret), each with the monotonic time its
    verdict stops counting: LEDGER["API_KEY_CACHE_SECONDS"] after the row was read, a ceiling
    for a notification that went missing (0 turns the cache and its listener off).

    The generation counts the events after which a verdict read before them may be stale: each
    notification and each (dis)connection. A request notes it before reading the row and keeps
    its verdict only if it has not moved, so a revocation that commits between the read and the
    store cannot leave a stale verdict behind."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._listening_changed = threading.Condition(self._lock)
        self._entries: dict[tuple[UUID, str], tuple[ApiKey, float]] = {}
        self._generation = 0
        #: The listening connection's socket, -1 while there is none: then nothing is served.
        self._listener_fd = -1
        #: Up while the listener reads its socket and drops what the notifications name.
        self._applying = False
        self._listener: threading.Thread | None = None
        self._stop = threading.Event()

    def get(self, key_id: UUID, secret_hash: str) -> ApiKey | None:
        """The key of a current verdict, or None: the hot path, no lock and no query.

        A notification the listener has not applied yet counts already: bytes waiting on its
        socket, or being applied, make this a miss. That is checked before the entry is read,
        in the reverse of the order the listener works in, so once a change's notification is
        on the socket, no call serves a verdict it drops. PostgreSQL signals the listening
        server processes when the change commits, before the committing client hears back; the
        gap left is their write to the socket, far shorter than a client's next request."""
        fd = self._listener_fd
        if fd < 0 or _readable(fd) or self._applying:
            return None
        entry = self._entries.get((key_id, secret_hash))
        if entry is None or entry[1] <= time.monotonic():
            return None
        return entry[0]

    def generation(self) -> int | None:
        """What to hand to store() after reading a key's row, or None when no verdict may be
        kept now: the cache is off, or the listener is not listening. The listener is started
        here, in the process that serves requests: a thread started before gunicorn forks its
        workers would not be in them."""
        if not settings.LEDGER["API_KEY_CACHE_SECONDS"]:
            return None
        if self._listener is None:
            self.listener_start()
        return self._generation if self._listener_fd >= 0 else None

    def store(self, key: ApiKey, secret_hash: str, generation: int | None) -> None:
        """Keep the verdict that `key`, read after generation() gave `generation`, is valid."""
        ttl = settings.LEDGER["API_KEY_CACHE_SECONDS"]
        if generation is None or not ttl:
            return
        with self._lock:
            if self._listener_fd < 0 or generation != self._generation:
                return
            if len(self._entries) >= VERDICTS_MAX:
                self._entries.clear()
            self._entries[(key.id, secret_hash)] = (key, time.monotonic() + ttl)

    def forget(self, key_id: UUID | None) -> None:
        """Drop the verdicts of this key (None: of every key)."""
        with self._lock:
            self._generation += 1
            if key_id is None:
                self._entries.clear()
            else:
                for cached in [entry for entry in self._entries if entry[0] == key_id]:
                    del self._entries[cached]

    def listener_start(self) -> None:
        """Start the listener thread, once per process; it connects in the background."""
        params = _listener_connection_params()
        with self._lock:
            if self._listener is not None:
                return
            self._stop = threading.Event()
            self._listener = threading.Thread(
                target=self._listen, args=(params, self._stop), name="api-key-listener", daemon=True
            )
            self._listener.start()

    def listener_wait(self, *, listening: bool = True, timeout: float) -> bool:
        """Whether the listener is (or is not) listening within `timeout` seconds."""
        with self._listening_changed:
            return self._listening_changed.wait_for(lambda: (self._listener_fd >= 0) is listening, timeout)

    def listener_stop(self, timeout: float = 5.0) -> None:
        """Stop the listener and close its connection (tests do, before their database is
        dropped); the next generation() starts a new one."""
        with self._lock:
            listener, self._listener = self._listener, None
            self._stop.set()
        if listener is not None:
            listener.join(timeout)
            if listener.is_alive():
                raise RuntimeError("The API key listener did not stop.")

    def _listening_set(self, listener_fd: int) -> None:
        """Start or stop serving (-1), from an empty cache either way."""
        with self._lock:
            self._listener_fd = listener_fd
            self._applying = False
            self._generation += 1
            self._entries.clear()
            self._listening_changed.notify_all()

    def _listen(self, params: dict[str, Any], stop: threading.Event) -> None:
        delay = _RECONNECT_FIRST_SECONDS
        while not stop.is_set():
            try:
                with psycopg.connect(**params) as conn:
                    try:
                        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANGED_CHANNEL)))
                        self._listening_set(conn.fileno())
                        delay = _RECONNECT_FIRST_SECONDS
                        self._notifications_apply(conn, stop)
                    finally:  # before the connection closes, whose file descriptor may be reused
                        self._listening_set(-1)
            except Exception:  # whatever it was, the cache is off until a reconnection
                logger.warning("API key listener disconnected; reconnecting in %.1f s", delay, exc_info=True)
            stop.wait(delay)
            delay = min(delay * 2, _RECONNECT_MAX_SECONDS)

    def _notifications_apply(self, conn: psycopg.Connection[Any], stop: threading.Event) -> None:
        """Until stopped: wait for the socket, then drop what each notification names and say so
        on APPLIED_CHANNEL. A notification that arrives while that is said is read with the
        answer, into psycopg's backlog, where the socket no longer shows it: so the listener
        drains again until a pass finds nothing. The flag is up from before the socket is read
        until then, so get() sees the waiting bytes, the flag, or the verdicts gone."""
        fd = conn.fileno()
        while not stop.is_set():
            if not _readable(fd, timeout=_STOP_POLL_SECONDS):
                continue
            self._applying = True
            try:
                while applied := self._notifications_drain(conn):
                    for payload in applied:
                        self._applied_say(conn, payload)
            finally:
                self._applying = False

    def _notifications_drain(self, conn: psycopg.Connection[Any]) -> list[str]:
        """Drop what the notifications waiting (in psycopg's backlog, then on the socket) name."""
        applied = []
        for notification in conn.notifies(timeout=0):
            self.forget(UUID(notification.payload) if notification.payload else None)
            applied.append(notification.payload)
        return applied

    def _applied_say(self, conn: psycopg.Connection[Any], payload: str) -> None:
        conn.execute("SELECT pg_notify(%s, %s)", [APPLIED_CHANNEL, payload])

    def _after_fork_in_child(self) -> None:
        """A forked child has no listener thread, and may have copied a lock that was held."""
        self._reset()


def _readable(fd: int, timeout: float = 0) -> bool:
    """Whether `fd` has bytes to read (or is closed or broken); a poll object per call, since
    one poll object may not be used by two threads at once."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(timeout * 1000))


def _listener_connection_params() -> dict[str, Any]:
    """The default database's connection, as Django opens it (TCP or unix socket), in autocommit."""
    params = connections["default"].get_connection_params()
    return {**_KEEPALIVES, **params, "application_name": LISTENER_APPLICATION_NAME, "autocommit": True}


@contextmanager
def changes_applied_wait(*, key_id: UUID, timeout: float) -> Iterator[None]:
    """Around a change to a key committed in the block: on leaving it, wait until every
    process's listener has dropped that key's verdicts (each says so on APPLIED_CHANNEL), for
    `timeout` seconds at most. PostgreSQL tells the listeners when the change commits, but a
    listener's server process may write it to its socket a few milliseconds later, when the
    machine gets to it: without this wait, a request sent right after a revocation could reach a
    process that has not read it yet. The listeners are counted whatever this process's own
    setting (a command may run with the cache off, the web with it on). Inside a transaction,
    the change commits later, and only then are the listeners told: nothing is waited for."""
    if connections["default"].in_atomic_block:
        yield
        return
    with psycopg.connect(**{**connections["default"].get_connection_params(), "autocommit": True}) as conn:
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(APPLIED_CHANNEL)))
        yield
        row = conn.execute(
            "SELECT array_agg(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name = %s",
            [LISTENER_APPLICATION_NAME],
        ).fetchone()
        waiting = set(row[0] or []) if row else set()
        deadline = time.monotonic() + timeout
        while waiting and (left := deadline - time.monotonic()) > 0:
            for notification in conn.notifies(timeout=left, stop_after=1):
                if notification.payload == str(key_id):
                    waiting.discard(notification.pid)
        if waiting:
            logger.warning(
                "API key %s: %d listener(s) did not confirm the change in %.1f s", key_id, len(waiting), timeout
            )


verdicts = VerdictCache()
os.register_at_fork(after_in_child=verdicts._after_fork_in_child)
