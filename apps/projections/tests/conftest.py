"""Fixtures for tests that run the real pipeline: a Kafka-protocol broker of the test's
own (so it can be taken down), the relay, and the consumer loop in a thread."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.db import connections

from apps.ledger.models import Entry
from apps.outbox import relay
from apps.projections.consumer import consume_loop
from apps.projections.models import ProjectedBalance, ProjectedStatementLine
from creditledger.devstack import TansuBroker


@pytest.fixture
def broker(settings, tmp_path: Path) -> Iterator[TansuBroker]:
    """A fresh in-memory broker for this test; settings point the relay and consumer at it."""
    tansu = TansuBroker(log_path=tmp_path / "tansu.log")
    tansu.start()
    settings.KAFKA = {
        **settings.KAFKA,
        "BOOTSTRAP_SERVERS": tansu.bootstrap_servers,
        "PRODUCER_CONFIG": {**settings.KAFKA["PRODUCER_CONFIG"], "message.timeout.ms": 3000},
        "CONSUMER_CONFIG": {**settings.KAFKA["CONSUMER_CONFIG"], "session.timeout.ms": 2000,
                            "heartbeat.interval.ms": 500},
    }
    relay._Producer.reset()
    yield tansu
    relay._Producer.reset()
    tansu.stop()


class ConsumerThread:
    def __init__(self, group: str) -> None:
        self.group = group
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            consume_loop(should_stop=self.stop_event.is_set, consumer_group=self.group)
        except BaseException as exc:  # surfaced by stop()
            self.error = exc
        finally:
            connections.close_all()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the consumer did not stop"
        if self.error:
            raise self.error


@pytest.fixture
def start_consumer(broker) -> Iterator[Callable[[], ConsumerThread]]:
    started: list[ConsumerThread] = []

    def start() -> ConsumerThread:
        consumer = ConsumerThread(group=f"test-{uuid.uuid4().hex[:8]}")
        consumer.thread.start()
        started.append(consumer)
        return consumer

    yield start
    for consumer in started:
        if consumer.thread.is_alive():
            consumer.stop()


def projection_matches_ledger() -> bool:
    """Every entry is a statement line with the same amount and balance, nothing extra, and
    every balance equals its account's latest entry."""
    entries = {(e.account_id, e.sequence): (e.amount, e.balance_after) for e in Entry.objects.all()}
    lines = {(line.account_id, line.sequence): (line.amount, line.balance_after)
             for line in ProjectedStatementLine.objects.all()}
    if entries != lines:
        return False
    latest: dict = {}
    for (account_id, sequence), (_, balance_after) in entries.items():
        if sequence > latest.get(account_id, (0, 0))[0]:
            latest[account_id] = (sequence, balance_after)
    projected = {b.account_id: (b.last_sequence, b.balance) for b in ProjectedBalance.objects.filter(last_sequence__gt=0)}
    return projected == latest


def wait_until(condition: Callable[[], bool], timeout: float = 30.0, message: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {message}")
