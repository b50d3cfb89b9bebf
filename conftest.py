"""Fixtures shared by every app's tests. Everything talks to a real PostgreSQL."""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from django.db import connection
from rest_framework.test import APIClient

from apps.accounts.currencies import DEFAULT_CURRENCIES
from apps.accounts.models import Account, Currency
from apps.accounts.services import account_create
from apps.apikeys.verdicts import verdicts
from apps.ledger.models import Entry, IdempotencyRecord, Transfer
from apps.ledger.services import TransferOutcome, transfer_create
from apps.outbox import relay
from apps.outbox.models import OutboxEvent
from apps.projections.projector import ConsumedMessage, projection_batch_apply
from creditledger.api.exception_handler import PROBLEM_CONTENT_TYPE, PROBLEM_TYPE_BASE
from creditledger.devstack import TansuBroker
from tests.support import ConsumerThread, LedgerClock

_keys = itertools.count()


@pytest.fixture(autouse=True)
def _default_currencies(request: pytest.FixtureRequest) -> None:
    """The currencies a fresh installation has (migration accounts.0002).

    A transactional test empties every table when it ends, seeded rows included, so each
    test that touches the database puts them back first.
    """
    wants_db = request.node.get_closest_marker("django_db") is not None or bool(
        {"db", "transactional_db"} & set(request.fixturenames)
    )
    if not wants_db:
        return
    request.getfixturevalue("db")  # the django_db marker still decides whether it is transactional
    Currency.objects.bulk_create(
        [Currency(code=code, scale=scale, name=name) for code, scale, name in DEFAULT_CURRENCIES],
        ignore_conflicts=True,
    )


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None) -> Iterator[None]:
    """pytest-django's, with the API key listener stopped before the test database is dropped:
    its connection would keep the DROP DATABASE from running."""
    yield
    verdicts.listener_stop()


@pytest.fixture
def api() -> APIClient:
    return APIClient()


@pytest.fixture
def make_account() -> Callable[..., Account]:
    def make(currency: str = "USD", **kwargs: Any) -> Account:
        return account_create(currency=currency, **kwargs)

    return make


@pytest.fixture
def make_transfer() -> Callable[..., TransferOutcome]:
    """Post a transfer through the service, with a fresh idempotency key unless given one."""

    def make(source: Account, destination: Account, amount: int, **kwargs: Any) -> TransferOutcome:
        kwargs.setdefault("idempotency_key", f"test-{next(_keys)}")
        kwargs.setdefault("currency", source.currency_id)
        return transfer_create(from_account_id=source.id, to_account_id=destination.id, amount=amount, **kwargs)

    return make


@pytest.fixture
def run_together() -> Callable[[int, Callable[[int], Any]], list[Any]]:
    """Run work(0..count-1) in `count` threads released at the same instant by a barrier,
    each with its own database connection. Each result is the return value or the exception.
    Needs a transactional test: the threads must see what the test committed."""

    def run(count: int, work: Callable[[int], Any]) -> list[Any]:
        barrier = threading.Barrier(count)
        results: list[Any] = [None] * count

        def worker(index: int) -> None:
            try:
                barrier.wait()
                results[index] = work(index)
            except BaseException as exc:  # noqa: BLE001 - handed back to the test
                results[index] = exc
            finally:
                connection.close()

        threads = [threading.Thread(target=worker, args=(index,)) for index in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not any(thread.is_alive() for thread in threads), "a worker hung"
        return results

    return run


@pytest.fixture
def ledger_state() -> Callable[[], dict[str, Any]]:
    """Everything a refused request must leave alone: balances, journal and outbox."""

    def capture() -> dict[str, Any]:
        return {
            "balances": dict(Account.objects.values_list("id", "balance")),
            "sequences": dict(Account.objects.values_list("id", "last_sequence")),
            "transfers": Transfer.objects.count(),
            "entries": Entry.objects.count(),
            "outbox": OutboxEvent.objects.count(),
        }

    return capture


@pytest.fixture
def idempotency_records() -> Callable[[], int]:
    return IdempotencyRecord.objects.count


@pytest.fixture
def problem() -> Callable[..., dict[str, Any]]:
    """Assert that `response` is an RFC 9457 problem with this status and code; return its body.

    `field`, when given, must be named by one of the body's errors[].
    """

    def check(response, status: int, code: str, field: str | None = None) -> dict[str, Any]:
        assert response.status_code == status, response.content
        assert response["Content-Type"] == PROBLEM_CONTENT_TYPE
        body = response.json()
        assert body["status"] == status
        assert body["code"] == code
        assert body["type"] == PROBLEM_TYPE_BASE + code.replace("_", "-")
        assert isinstance(body["title"], str)
        assert body["title"]
        assert isinstance(body["detail"], str)
        assert body["detail"]
        if field is not None:
            assert field in [error["field"] for error in body["errors"]], body
            assert all(error["message"] for error in body["errors"])
        return body

    return check


@pytest.fixture
def sync_projections() -> Callable[[], None]:
    """Apply every outbox event straight to the projections, as the consumer would, without
    Kafka: for tests of the read API. The Kafka path has its own tests (apps/projections)."""

    def sync() -> None:
        messages = [
            ConsumedMessage(
                topic=row.topic, partition=0, offset=row.id, key=row.key.encode(), value=orjson.dumps(row.payload)
            )
            for row in OutboxEvent.objects.order_by("id")
        ]
        projection_batch_apply(messages, consumer_group="tests")

    return sync


@pytest.fixture
def broker(settings, tmp_path: Path) -> Iterator[TansuBroker]:
    """A fresh in-memory broker for this test; settings point the relay and consumer at it."""
    tansu = TansuBroker(log_path=tmp_path / "tansu.log")
    tansu.start()
    settings.KAFKA = {
        **settings.KAFKA,
        "BOOTSTRAP_SERVERS": tansu.bootstrap_servers,
        "PRODUCER_CONFIG": {**settings.KAFKA["PRODUCER_CONFIG"], "message.timeout.ms": 3000},
        "CONSUMER_CONFIG": {
            **settings.KAFKA["CONSUMER_CONFIG"],
            "session.timeout.ms": 2000,
            "heartbeat.interval.ms": 500,
        },
    }
    relay._Producer.reset()
    yield tansu
    relay._Producer.reset()
    tansu.stop()


@pytest.fixture
def start_consumer(broker) -> Iterator[Callable[[], ConsumerThread]]:
    started: list[ConsumerThread] = []

    def start(group: str | None = None) -> ConsumerThread:
        """A consumer of its own group unless given one (the relay reads the configured group's positions)."""
        consumer = ConsumerThread(group=group or f"test-{uuid.uuid4().hex[:8]}")
        consumer.thread.start()
        started.append(consumer)
        return consumer

    yield start
    for consumer in started:
        if consumer.thread.is_alive():
            consumer.stop()


@pytest.fixture
def ledger_clock() -> Iterator[LedgerClock]:
    clock = LedgerClock()
    yield clock
    clock.reset()
