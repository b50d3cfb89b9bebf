"""The relay against a broker that forgets: the embedded one restarted (`broker.stop()`, then
`broker.start()`: same port, a new cluster id, nothing in memory). What the projection
consumer had not applied is published again, and nothing else."""

from __future__ import annotations

import time

import pytest
from django.conf import settings
from django.db.utils import OperationalError
from django.utils import timezone

from apps.ledger.models import Transfer
from apps.outbox import relay
from apps.outbox.models import OutboxDelivery, OutboxEvent, RelayState
from apps.outbox.relay import outbox_relay
from apps.outbox.topics import ALL_TOPICS
from apps.projections.models import ConsumerOffset, ProjectedStatementLine, ProjectedTransfer
from apps.projections.selectors import projection_applied_positions
from apps.projections.verification import projections_verify
from creditledger import metrics
from tests.support import wait_until

pytestmark = [pytest.mark.django_db(transaction=True, databases=["default", "read"]), pytest.mark.slow]


def broker_restart(broker) -> None:
    """Restart the broker empty, and let the relay's next drain check it, as a live relay does
    within BROKER_CHECK_SECONDS."""
    broker.stop()
    broker.start()
    time.sleep(relay.BROKER_CHECK_SECONDS)


def projections_converge(timeout: float = 30.0) -> None:
    report = projections_verify(wait=timeout)
    assert report.ok, report.summary_lines()


def republished_count() -> float:
    return metrics.RELAY_REPUBLISHED._value.get()


def test_events_acknowledged_but_not_consumed_are_published_again_when_the_broker_restarts_empty(
    broker, start_consumer, make_account, make_transfer
):
    group = settings.KAFKA["CONSUMER_GROUP"]
    accounts = [make_account() for _ in range(4)]
    for i in range(12):
        make_transfer(accounts[i % 4], accounts[(i + 1) % 4], 10 + i)
    consumer = start_consumer(group)
    assert outbox_relay().published == 4 + 12 * 3
    projections_converge()
    consumer.stop()

    applied = set(OutboxEvent.objects.values_list("id", flat=True))
    for i in range(15):
        make_transfer(accounts[i % 4], accounts[(i + 2) % 4], 100 + i)
    assert outbox_relay().published == 15 * 3  # the broker has them; no consumer has read them
    unconsumed = set(OutboxEvent.objects.values_list("id", flat=True)) - applied
    positions_before = dict(OutboxDelivery.objects.values_list("outbox_id", "relay_position"))

    broker_restart(broker)
    counted = republished_count()
    assert outbox_relay().published == len(unconsumed)

    assert republished_count() - counted == len(unconsumed)
    delivered_again = {
        row_id
        for row_id, position in OutboxDelivery.objects.values_list("outbox_id", "relay_position")
        if position != positions_before[row_id]
    }
    assert delivered_again == unconsumed
    assert RelayState.objects.get().cluster_id == broker.cluster_id
    assert not RelayState.objects.get().kafka_history_complete
    start_consumer(group)
    projections_converge()
    assert ProjectedTransfer.objects.count() == Transfer.objects.count() == 27


def test_a_row_delivered_late_with_a_smaller_id_is_published_again_though_the_consumer_applied_greater_ids(
    broker, start_consumer, make_account, make_transfer
):
    group = settings.KAFKA["CONSUMER_GROUP"]
    source, destination = make_account(), make_account()
    for amount in (1, 2, 3, 4, 5):
        make_transfer(source, destination, amount)
    late = OutboxEvent.objects.filter(event_type="TransferPosted").order_by("id")[1]
    # As far as the relay can tell, its transaction has not committed yet: it skips the row.
    OutboxEvent.objects.filter(id=late.id).update(published_at=timezone.now())
    consumer = start_consumer(group)
    outbox_relay()
    wait_until(
        lambda: ProjectedTransfer.objects.count() == 4 and ProjectedStatementLine.objects.count() == 10,
        message="every row but the late one to be applied",
    )
    consumer.stop()
    OutboxEvent.objects.filter(id=late.id).update(published_at=None)  # it commits
    assert outbox_relay().published == 1  # after everything the consumer applied; it never reads it
    assert OutboxEvent.objects.filter(id__gt=late.id).exists()

    broker_restart(broker)
    assert outbox_relay().published == 1  # the late row, and none of those the consumer applied

    start_consumer(group)
    projections_converge()


def test_only_rows_delivered_after_the_consumer_position_on_their_partition_are_published_again(
    broker, make_account, make_transfer
):
    group = settings.KAFKA["CONSUMER_GROUP"]
    accounts = [make_account() for _ in range(6)]
    for i in range(30):
        make_transfer(accounts[i % 6], accounts[(i + 1) % 6], 1 + i)
    outbox_relay()
    topics = dict(OutboxEvent.objects.values_list("id", "topic"))
    deliveries = {
        row_id: (topics[row_id], partition, position)
        for row_id, partition, position in OutboxDelivery.objects.values_list(
            "outbox_id", "partition", "relay_position"
        )
    }
    by_partition: dict[tuple[str, int], list[int]] = {}
    for topic, partition, position in deliveries.values():
        by_partition.setdefault((topic, partition), []).append(position)
    # The consumer applied each partition up to its middle delivery, and nothing of the first one.
    applied = {key: sorted(positions)[len(positions) // 2] for key, positions in sorted(by_partition.items())[1:]}
    ConsumerOffset.objects.bulk_create(
        [
            ConsumerOffset(
                consumer_group=group,
                topic=topic,
                partition=partition,
                offset=0,
                relay_position=position,
                updated_at=timezone.now(),
            )
            for (topic, partition), position in applied.items()
        ]
    )
    time.sleep(relay.BROKER_CHECK_SECONDS)
    outbox_relay()  # its check reads them while the broker is still the same
    expected = {
        row_id
        for row_id, (topic, partition, position) in deliveries.items()
        if position > applied.get((topic, partition), 0)
    }
    assert 0 < len(expected) < len(deliveries)

    broker_restart(broker)
    # Positions read once the broker has changed may come from the new one: not trusted.
    ConsumerOffset.objects.update(relay_position=10**12)
    assert outbox_relay().published == len(expected)
    assert {
        row_id
        for row_id, position in OutboxDelivery.objects.values_list("outbox_id", "relay_position")
        if position != deliveries[row_id][2]
    } == expected


def test_nothing_is_published_again_on_the_first_run_nor_when_the_relay_restarts_against_the_same_broker(
    broker, make_account
):
    make_account()
    make_account()
    # Published before this relay recorded a cluster (an upgrade): no delivery recorded, no consumer position.
    OutboxEvent.objects.update(published_at=timezone.now())
    make_account()
    counted = metrics.RELAY_HISTORY_LOST._value.get()

    assert outbox_relay().published == 1
    assert RelayState.objects.get().cluster_id == broker.cluster_id

    relay._Producer.reset()  # a new relay process
    make_account()
    assert outbox_relay().published == 1
    time.sleep(relay.BROKER_CHECK_SECONDS)
    assert outbox_relay().published == 0  # the periodic check
    assert metrics.RELAY_HISTORY_LOST._value.get() == counted


def test_the_relay_publishes_when_the_consumer_positions_cannot_be_read_and_keeps_the_last_ones(
    broker, start_consumer, make_account, monkeypatch
):
    group = settings.KAFKA["CONSUMER_GROUP"]
    consumer = start_consumer(group)
    make_account()
    outbox_relay()
    wait_until(lambda: ConsumerOffset.objects.filter(consumer_group=group).exists(), message="the event to be applied")
    consumer.stop()
    time.sleep(relay.BROKER_CHECK_SECONDS)
    outbox_relay()  # its check records the consumer's positions
    recorded = RelayState.objects.get().consumer_positions
    assert recorded == projection_applied_positions(consumer_group=group, topics=ALL_TOPICS) != {}

    def unreachable(**_kwargs):
        raise OperationalError("the read database is down")

    monkeypatch.setattr(relay, "consumer_positions", unreachable)
    relay._Producer.reset()
    make_account()
    assert outbox_relay().published == 1
    assert RelayState.objects.get().consumer_positions == recorded
