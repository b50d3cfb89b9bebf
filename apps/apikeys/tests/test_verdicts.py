"""The verdict cache against the real database: a change committed by another process drops a
key's verdict in this one, and without a listening connection nothing is kept."""

from __future__ import annotations

import select
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from unittest import mock

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from apps.apikeys import services
from apps.apikeys.models import ApiKey
from apps.apikeys.services import ApiKeyCreated, api_key_authenticate, api_key_create
from apps.apikeys.verdicts import APPLIED_CHANNEL, CHANGED_CHANNEL, LISTENER_APPLICATION_NAME, VerdictCache

pytestmark = pytest.mark.django_db(transaction=True)


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


@contextmanager
def forgotten_watched(cache: VerdictCache) -> Iterator[mock.MagicMock]:
    """The cache's forget(), still doing its work, with the calls the listener makes recorded."""
    with mock.patch.object(cache, "forget", wraps=cache.forget) as forget:
        yield forget


def cached_key(django_assert_num_queries) -> ApiKeyCreated:
    """A key whose verdict this process keeps: its first check reads the row (and records the
    use), the second reads nothing."""
    created = api_key_create(name="billing", scopes=["transfers:read"])
    with django_assert_num_queries(2):
        assert api_key_authenticate(presented=created.printed) is not None
    with django_assert_num_queries(0):
        assert api_key_authenticate(presented=created.printed) is not None
    return created


def test_the_trigger_notifies_the_channel_the_listener_listens_on(elsewhere):
    created = api_key_create(name="billing", scopes=["transfers:read"])
    elsewhere.execute(psycopg.sql.SQL("LISTEN {}").format(psycopg.sql.Identifier(CHANGED_CHANNEL)))
    ApiKey.objects.filter(id=created.key.id).update(revoked_at=timezone.now())
    notifications = list(elsewhere.notifies(timeout=5, stop_after=1))
    assert [(n.channel, n.payload) for n in notifications] == [(CHANGED_CHANNEL, str(created.key.id))]


def test_a_key_revoked_by_another_process_is_refused_at_its_next_request(
    listening, elsewhere, django_assert_num_queries
):
    created = cached_key(django_assert_num_queries)
    with forgotten_watched(listening) as forget:
        elsewhere.execute("UPDATE api_key SET revoked_at = now() WHERE id = %s", [created.key.id])
        wait_until(lambda: mock.call(created.key.id) in forget.call_args_list)

    with django_assert_num_queries(1):
        assert api_key_authenticate(presented=created.printed) is None


def test_a_scope_change_elsewhere_holds_at_the_next_request(listening, elsewhere, django_assert_num_queries):
    created = cached_key(django_assert_num_queries)
    with forgotten_watched(listening) as forget:
        elsewhere.execute("UPDATE api_key SET scopes = '{admin}' WHERE id = %s", [created.key.id])
        wait_until(lambda: mock.call(created.key.id) in forget.call_args_list)

    key = api_key_authenticate(presented=created.printed)
    assert key is not None
    assert key.scopes == ["admin"]


def test_the_last_use_of_a_cached_key_is_written_once_a_minute_and_drops_no_verdict(
    listening, elsewhere, django_assert_num_queries
):
    created = cached_key(django_assert_num_queries)
    a_minute_later = timezone.now() + timedelta(seconds=61)
    with mock.patch.object(services.timezone, "now", return_value=a_minute_later):
        with django_assert_num_queries(1):  # the UPDATE of last_used_at, no read of the row
            assert api_key_authenticate(presented=created.printed) is not None
        with django_assert_num_queries(0):
            assert api_key_authenticate(presented=created.printed) is not None
    assert ApiKey.objects.get(id=created.key.id).last_used_at == a_minute_later

    # Notifications arrive in commit order: once a later change's has, the last use's would have.
    later = api_key_create(name="later", scopes=["transfers:read"])
    with forgotten_watched(listening) as forget:
        elsewhere.execute("UPDATE api_key SET name = 'renamed' WHERE id = %s", [later.key.id])
        # Done once the listener has also confirmed it and found nothing more: a cached verdict
        # is not served while it is at work.
        wait_until(lambda: mock.call(later.key.id) in forget.call_args_list and not listening._applying)
    assert mock.call(created.key.id) not in forget.call_args_list
    with django_assert_num_queries(0):
        assert api_key_authenticate(presented=created.printed) is not None


@contextmanager
def database_closed_to_new_connections() -> Iterator[psycopg.Connection]:
    """The test database refuses new connections (the open ones stay); yields a connection to
    the server's `postgres` database, which does that."""
    name = connection.settings_dict["NAME"]
    with psycopg.connect(**{**connection.get_connection_params(), "dbname": "postgres"}, autocommit=True) as admin:
        statement = "ALTER DATABASE {} ALLOW_CONNECTIONS {}"
        admin.execute(psycopg.sql.SQL(statement).format(psycopg.sql.Identifier(name), psycopg.sql.SQL("false")))
        try:
            yield admin
        finally:
            admin.execute(psycopg.sql.SQL(statement).format(psycopg.sql.Identifier(name), psycopg.sql.SQL("true")))


def test_while_the_listener_is_down_every_request_reads_the_row(listening, django_assert_num_queries):
    created = cached_key(django_assert_num_queries)
    with database_closed_to_new_connections() as admin:
        terminated = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
            [connection.settings_dict["NAME"], LISTENER_APPLICATION_NAME],
        ).fetchall()
        assert terminated == [(True,)]
        assert listening.listener_wait(listening=False, timeout=10)
        for _ in range(3):
            with django_assert_num_queries(1):
                assert api_key_authenticate(presented=created.printed) is not None

    assert listening.listener_wait(timeout=30), "the listener did not reconnect"
    with django_assert_num_queries(1):  # a reconnection starts from an empty cache
        assert api_key_authenticate(presented=created.printed) is not None
    with django_assert_num_queries(0):
        assert api_key_authenticate(presented=created.printed) is not None


def test_a_verdict_read_before_a_notification_and_stored_after_it_is_not_kept(
    listening, elsewhere, django_assert_num_queries
):
    """The request reads the row while the key is valid; the revocation commits and its
    notification is applied before the request stores its verdict."""
    created = api_key_create(name="billing", scopes=["transfers:read"])
    read_row = services.api_key_get

    def read_then_revoked_elsewhere(**kwargs):
        row = read_row(**kwargs)
        with forgotten_watched(listening) as forget:
            elsewhere.execute("UPDATE api_key SET revoked_at = now() WHERE id = %s", [created.key.id])
            wait_until(lambda: mock.call(created.key.id) in forget.call_args_list)
        return row

    with mock.patch.object(services, "api_key_get", side_effect=read_then_revoked_elsewhere):
        assert api_key_authenticate(presented=created.printed) is not None  # it was valid when read

    with django_assert_num_queries(1):
        assert api_key_authenticate(presented=created.printed) is None


def test_no_verdict_is_kept_with_the_cache_off(settings, listening, django_assert_num_queries):
    settings.LEDGER = {**settings.LEDGER, "API_KEY_CACHE_SECONDS": 0}
    created = api_key_create(name="billing", scopes=["transfers:read"])
    api_key_authenticate(presented=created.printed)
    with django_assert_num_queries(1):
        assert api_key_authenticate(presented=created.printed) is not None


@contextmanager
def another_listener(*, acknowledges_after: float | None) -> Iterator[None]:
    """A listener of another process, as the database sees it: it confirms each change it is told
    of after `acknowledges_after` seconds, or never (None)."""
    params = {**connection.get_connection_params(), "application_name": LISTENER_APPLICATION_NAME, "autocommit": True}
    with psycopg.connect(**params) as conn:
        conn.execute(psycopg.sql.SQL("LISTEN {}").format(psycopg.sql.Identifier(CHANGED_CHANNEL)))
        stop = threading.Event()

        def acknowledge() -> None:
            while not stop.is_set():
                told = [notification.payload for notification in conn.notifies(timeout=0.05)]
                if acknowledges_after is not None:
                    for payload in told:  # the connection is free again once notifies() is done
                        time.sleep(acknowledges_after)
                        conn.execute("SELECT pg_notify(%s, %s)", [APPLIED_CHANNEL, payload])

        thread = threading.Thread(target=acknowledge)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


def test_a_revocation_returns_once_every_process_has_dropped_the_key(listening, django_assert_num_queries):
    created = cached_key(django_assert_num_queries)
    with another_listener(acknowledges_after=0.3):
        started = time.monotonic()
        services.api_key_revoke(key_id=created.key.id)
        waited = time.monotonic() - started
    assert 0.3 <= waited < services.REVOCATION_WAIT_SECONDS
    with django_assert_num_queries(1):
        assert api_key_authenticate(presented=created.printed) is None


def test_a_revocation_waits_for_a_silent_listener_no_longer_than_its_bound(listening, monkeypatch):
    monkeypatch.setattr(services, "REVOCATION_WAIT_SECONDS", 0.4)
    created = api_key_create(name="billing", scopes=["transfers:read"])
    with another_listener(acknowledges_after=None):
        started = time.monotonic()
        services.api_key_revoke(key_id=created.key.id)
        waited = time.monotonic() - started
    assert 0.4 <= waited < 2
    assert ApiKey.objects.get(id=created.key.id).revoked_at is not None


def test_a_change_notified_while_the_listener_confirms_another_is_applied_too(
    listening, elsewhere, django_assert_num_queries
):
    """Key B's revocation reaches the listener's socket while it confirms key A's: psycopg reads
    it with the confirmation's answer, into its backlog, where the socket no longer shows it."""
    first = api_key_create(name="first", scopes=["transfers:read"])
    second = cached_key(django_assert_num_queries)
    say = listening._applied_say

    def say_with_another_change_arriving(conn, payload):
        if payload == str(first.key.id):
            elsewhere.execute("UPDATE api_key SET revoked_at = now() WHERE id = %s", [second.key.id])
            wait_until(lambda: select.select([conn.fileno()], [], [], 0)[0] != [])
        say(conn, payload)

    arriving = mock.patch.object(listening, "_applied_say", side_effect=say_with_another_change_arriving)
    with forgotten_watched(listening) as forget, arriving:
        elsewhere.execute("UPDATE api_key SET revoked_at = now() WHERE id = %s", [first.key.id])
        wait_until(lambda: mock.call(second.key.id) in forget.call_args_list, timeout=3)

    with django_assert_num_queries(1):
        assert api_key_authenticate(presented=second.printed) is None
