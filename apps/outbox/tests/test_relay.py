"""The relay against a real Kafka-protocol broker (the `broker` fixture of apps/projections/tests)."""

from __future__ import annotations

import threading

import orjson
import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import connection, connections

from apps.outbox.models import OutboxDelivery, OutboxEvent, RelayState
from apps.outbox.relay import RELAY_LOCK_KEY, outbox_relay
from tests.support import read_topic

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "read"])


def test_the_relay_publishes_in_row_order_with_the_event_id_in_a_header_and_marks_rows(
    broker, make_account, make_transfer
):
    source, destination = make_account(), make_account()
    for amount in (1, 2, 3):
        make_transfer(source, destination, amount)

    assert outbox_relay().published == 2 + 3 * 3
    assert not OutboxEvent.objects.filter(published_at__isnull=True).exists()

    rows = {str(row.event_id): row for row in OutboxEvent.objects.all()}
    deliveries = {d.outbox_id: d for d in OutboxDelivery.objects.all()}
    messages = [
        m for topic in ("ledger.account.v1", "ledger.transfer.v1", "ledger.entry.v1") for m in read_topic(topic)
    ]
    assert len(messages) == len(rows)
    positions: dict[tuple[str, int], list[tuple[int, int]]] = {}
    for message in messages:
        headers = dict(message.headers())
        row = rows[headers["event_id"].decode()]
        assert message.key() == row.key.encode()
        assert headers["event_type"].decode() == row.event_type
        assert orjson.loads(message.value()) == row.payload
        delivery = deliveries[row.id]
        assert (int(headers["relay_position"]), message.partition()) == (delivery.relay_position, delivery.partition)
        positions.setdefault((message.topic(), message.partition()), []).append(
            (message.offset(), delivery.relay_position)
        )
    assert all(sorted(p for _, p in pairs) == [p for _, p in sorted(pairs)] for pairs in positions.values())
    by_key: dict[bytes, list[int]] = {}
    for message in read_topic("ledger.entry.v1"):
        by_key.setdefault(message.key(), []).append(orjson.loads(message.value())["data"]["sequence"])
    assert all(sequences == sorted(sequences) for sequences in by_key.values())


def test_only_one_relay_runs_at_a_time(broker, make_account):
    make_account()
    holder = psycopg.connect(**connection.get_connection_params(), autocommit=True)
    holder.execute("SELECT pg_advisory_lock(%s)", [RELAY_LOCK_KEY])
    try:
        assert outbox_relay().skipped == "locked"
        assert OutboxEvent.objects.filter(published_at__isnull=True).count() == 1
    finally:
        # Explicitly: a closed session's locks go only when the server has ended its backend.
        holder.execute("SELECT pg_advisory_unlock(%s)", [RELAY_LOCK_KEY])
        holder.close()
    assert outbox_relay().published == 1


def test_concurrent_relays_publish_each_row_once(broker, make_account, make_transfer):
    source, destination = make_account(), make_account()
    for amount in range(1, 21):
        make_transfer(source, destination, amount)
    results = []

    def relay() -> None:
        results.append(outbox_relay())
        connections.close_all()

    threads = [threading.Thread(target=relay) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(result.published for result in results) == 2 + 20 * 3
    assert len(read_topic("ledger.entry.v1")) == 40


def test_a_failed_relay_backs_off_and_the_command_ignores_the_backoff(broker, make_account, capsys):
    make_account()
    broker.stop()
    assert outbox_relay().failed == 1
    state = RelayState.objects.get()
    assert state.consecutive_failures == 1
    assert state.last_error
    assert outbox_relay().skipped == "backoff"
    with pytest.raises(CommandError):
        call_command("relay_outbox")
    assert RelayState.objects.get().consecutive_failures == 2

    broker.start()
    call_command("relay_outbox")
    assert "published 1 events" in capsys.readouterr().out
    assert RelayState.objects.get().consecutive_failures == 0
