"""The relay against a real Kafka-protocol broker (the `broker` fixture of apps/projections/tests)."""

from __future__ import annotations

import threading

import orjson
import psycopg
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection, connections

from apps.outbox.models import OutboxDelivery, OutboxEvent, RelayState
from apps.outbox.relay import RELAY_LOCK_KEY, _Delivery, _Producer, _published_mark, outbox_relay, shard_lock_key
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
    lock = [RELAY_LOCK_KEY, shard_lock_key(shards=1, shard=0)]
    holder = psycopg.connect(**connection.get_connection_params(), autocommit=True)
    holder.execute("SELECT pg_advisory_lock(%s, %s)", lock)
    try:
        assert outbox_relay().skipped == "locked"
        assert OutboxEvent.objects.filter(published_at__isnull=True).count() == 1
    finally:
        # Explicitly: a closed session's locks go only when the server has ended its backend.
        holder.execute("SELECT pg_advisory_unlock(%s, %s)", lock)
        holder.close()
    assert outbox_relay().published == 1


def _partitions_of(keys: list[str]) -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT k, outbox_partition(k, %s) FROM unnest(%s::text[]) AS k", [settings.KAFKA["TOPIC_PARTITIONS"], keys]
        )
        return dict(cursor.fetchall())


def test_each_shard_publishes_the_partitions_it_owns_and_keeps_each_key_in_order(
    broker, settings, make_account, make_transfer
):
    settings.OUTBOX = {**settings.OUTBOX, "SHARDS": 2}
    accounts = [make_account() for _ in range(8)]
    for i in range(24):
        make_transfer(accounts[i % 8], accounts[(i + 3) % 8], 1 + i)
    rows = list(OutboxEvent.objects.values_list("id", "key"))
    partitions = _partitions_of(sorted({key for _, key in rows}))
    assert {p % 2 for p in partitions.values()} == {0, 1}, "the keys should fall in both shards"

    first = outbox_relay(shard=1)

    published = set(OutboxEvent.objects.filter(published_at__isnull=False).values_list("id", flat=True))
    assert published == {row_id for row_id, key in rows if partitions[key] % 2 == 1}
    assert first.published == len(published)
    assert outbox_relay(shard=0).published == len(rows) - len(published)
    assert not OutboxEvent.objects.filter(published_at__isnull=True).exists()
    deliveries = dict(OutboxDelivery.objects.values_list("outbox_id", "partition"))
    assert all(deliveries[row_id] == partitions[key] for row_id, key in rows)
    for topic in ("ledger.account.v1", "ledger.transfer.v1", "ledger.entry.v1"):
        for message in read_topic(topic, idle_seconds=0.5):
            assert message.partition() == partitions[message.key().decode()]
    by_key: dict[bytes, list[int]] = {}
    for message in sorted(read_topic("ledger.entry.v1", idle_seconds=0.5), key=lambda m: m.offset()):
        by_key.setdefault(message.key(), []).append(orjson.loads(message.value())["data"]["sequence"])
    assert all(sequences == list(range(1, len(sequences) + 1)) for sequences in by_key.values())


def test_shards_run_in_parallel_but_not_beside_a_relay_with_another_shard_count(broker, settings, make_account):
    settings.OUTBOX = {**settings.OUTBOX, "SHARDS": 2}
    for _ in range(6):
        make_account()
    holder = psycopg.connect(**connection.get_connection_params(), autocommit=True)
    try:
        holder.execute("SELECT pg_advisory_lock(%s, %s)", [RELAY_LOCK_KEY, shard_lock_key(shards=2, shard=0)])
        assert outbox_relay(shard=0).skipped == "locked"
        assert outbox_relay(shard=1).skipped is None  # another shard's relay is no obstacle
        holder.execute("SELECT pg_advisory_unlock_all()")

        holder.execute("SELECT pg_advisory_lock(%s, %s)", [RELAY_LOCK_KEY, shard_lock_key(shards=1, shard=0)])
        assert outbox_relay(shard=0).skipped == "resharding"
        assert outbox_relay(shard=1).skipped == "resharding"
        holder.execute("SELECT pg_advisory_unlock_all()")
    finally:
        holder.close()
    outbox_relay(shard=0)
    assert not OutboxEvent.objects.filter(published_at__isnull=True).exists()
    with pytest.raises(ValueError, match="no relay shard 2"):
        outbox_relay(shard=2)


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


def test_deliveries_are_not_marked_once_another_shard_has_recorded_a_new_broker(broker, make_account):
    """Shard A delivered to the old broker; shard B then found the new one and republished what
    was published: A's rows must stay unpublished, or they would be lost with the old broker."""
    make_account()
    outbox_relay()  # records the broker's cluster
    row = OutboxEvent.objects.get()
    OutboxEvent.objects.update(published_at=None)
    delivered = [_Delivery(row.id, 1, 0)]

    RelayState.objects.update(cluster_id="tansu-a-newer-broker")

    assert not _published_mark(delivered, cluster_id=_Producer.cluster_id)
    assert OutboxEvent.objects.filter(published_at__isnull=True).count() == 1
    assert _published_mark(delivered, cluster_id="tansu-a-newer-broker")
    assert not OutboxEvent.objects.filter(published_at__isnull=True).exists()
