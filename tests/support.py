"""Helpers for tests that run the real pipeline (the fixtures that use them are in the root
conftest.py): the consumer loop in a thread, reading a topic back, comparing the read model
with the ledger, waiting for a condition, moving the ledger's clock."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta

from confluent_kafka import Consumer, TopicPartition
from django.conf import settings
from django.db import connection, connections

from apps.ledger.models import Entry
from apps.projections.consumer import consume_loop
from apps.projections.models import ProjectedBalance, ProjectedStatementLine


class ConsumerThread:
    def __init__(self, group: str) -> None:
        self.group = group
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            consume_loop(should_stop=self.stop_event.is_set, consumer_group=self.group)
        except BaseException as exc:  # noqa: BLE001 (surfaced by stop(), in the test's thread)
            self.error = exc
        finally:
            connections.close_all()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the consumer did not stop"
        if self.error:
            raise self.error


#: How long read_topic's first poll may wait for the connection and the first fetch.
FIRST_FETCH_SECONDS = 5.0


def read_topic(topic: str, idle_seconds: float = 2.0) -> list:
    """Every message now on `topic`, read from the beginning of each partition until the
    topic stays quiet. (Not up to the high watermarks: Tansu reports them wrong.)

    Each partition is read from offset 0, which is where the in-memory broker's logs start,
    rather than from OFFSET_BEGINNING, which librdkafka resolves with a ListOffsets request
    that Tansu can answer wrongly; and the first poll allows for connecting and the first
    fetch on a loaded machine, which can take longer than `idle_seconds`."""
    reader = Consumer(
        {
            "bootstrap.servers": settings.KAFKA["BOOTSTRAP_SERVERS"],
            "group.id": "test-reader",
            "enable.auto.commit": False,
        }
    )
    partitions = reader.list_topics(topic, timeout=10).topics[topic].partitions
    reader.assign([TopicPartition(topic, p, 0) for p in partitions])
    messages = []
    timeout = max(idle_seconds, FIRST_FETCH_SECONDS)
    while (message := reader.poll(timeout)) is not None:
        timeout = idle_seconds
        if not message.error():
            messages.append(message)
    reader.close()
    return messages


def projection_matches_ledger() -> bool:
    """Every entry is a statement line with the same amount and balance, nothing extra, and
    every balance equals its account's latest entry."""
    entries = {(e.account_id, e.sequence): (e.amount, e.balance_after) for e in Entry.objects.all()}
    lines = {
        (line.account_id, line.sequence): (line.amount, line.balance_after)
        for line in ProjectedStatementLine.objects.all()
    }
    if entries != lines:
        return False
    latest: dict = {}
    for (account_id, sequence), (_, balance_after) in entries.items():
        if sequence > latest.get(account_id, (0, 0))[0]:
            latest[account_id] = (sequence, balance_after)
    projected = {
        b.account_id: (b.last_sequence, b.balance) for b in ProjectedBalance.objects.filter(last_sequence__gt=0)
    }
    return projected == latest


def wait_until(condition: Callable[[], bool], timeout: float = 30.0, message: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {message}")


class LedgerClock:
    """The ledger's clock (ledger_now, apps/ledger/sql/0015_grants.sql), moved forward by a
    test: the offset is set on the test database, so every new connection (the API's, the
    stack's) reads it, and on the connections already open."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def advance(self, delta: timedelta) -> None:
        self.offset += delta
        self._apply(f"{self.offset.total_seconds()} seconds")

    def reset(self) -> None:
        self.offset = timedelta(0)
        self._apply("")

    def _apply(self, value: str) -> None:
        with connection.cursor() as cursor:
            name = connection.settings_dict["NAME"]
            if value:
                cursor.execute(f'ALTER DATABASE "{name}" SET ledger.clock_offset = %s', [value])
            else:
                cursor.execute(f'ALTER DATABASE "{name}" RESET ledger.clock_offset')
        for alias in connections:
            if connections[alias].connection is not None:
                with connections[alias].cursor() as cursor:
                    cursor.execute("SELECT set_config('ledger.clock_offset', %s, false)", [value])
