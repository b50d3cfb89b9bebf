"""The pipeline scaled out (ADR 0022): two relay shards and two consumers of one group, against
a real Kafka-protocol broker, while transfers are being posted."""

from __future__ import annotations

import logging
import threading
import time

import orjson
import pytest
from django.db import connections

from apps.ledger.models import Entry
from apps.outbox.models import OutboxEvent
from apps.outbox.relay import RelayResult, outbox_relay
from apps.outbox.topics import ENTRY_TOPIC
from apps.projections.verification import projections_verify
from creditledger import metrics
from tests.support import projection_matches_ledger, read_topic, wait_until

pytestmark = [pytest.mark.django_db(transaction=True, databases=["default", "read"]), pytest.mark.slow]


def _entries_applied() -> float:
    return metrics.EVENTS_APPLIED.labels(event_type="EntryPosted")._value.get()


def test_two_relays_and_two_consumers_keep_each_account_in_order_and_apply_each_event_once(
    settings, start_consumer, make_account, make_transfer, caplog
):
    settings.OUTBOX = {**settings.OUTBOX, "SHARDS": 2}
    caplog.set_level(logging.INFO, logger="apps.projections")
    accounts = [make_account() for _ in range(10)]
    applied_before = _entries_applied()
    consumers = [start_consumer("scale-out")]
    stop = threading.Event()
    results: dict[int, list[RelayResult]] = {0: [], 1: []}

    def relay(shard: int) -> None:
        try:
            while not stop.is_set():
                results[shard].append(outbox_relay(shard=shard))
                time.sleep(0.05)
            results[shard].append(outbox_relay(shard=shard))  # what was committed last
        finally:
            connections.close_all()

    relays = [threading.Thread(target=relay, args=(shard,)) for shard in results]
    for thread in relays:
        thread.start()
    try:
        for i in range(160):
            make_transfer(accounts[i % 10], accounts[(3 * i + 1) % 10], 1 + i)
            if i == 60:  # a second member joins the group: the partitions move while events flow
                consumers.append(start_consumer("scale-out"))
    finally:
        stop.set()
        for thread in relays:
            thread.join(timeout=60)

    assert all(result.failed == 0 and result.skipped is None for runs in results.values() for result in runs)
    assert all(sum(result.published for result in results[shard]) > 0 for shard in results)
    assert sum(result.published for runs in results.values() for result in runs) == OutboxEvent.objects.count()
    assert not OutboxEvent.objects.filter(published_at__isnull=True).exists()
    wait_until(projection_matches_ledger, timeout=60, message="the projections to match the ledger")
    report = projections_verify(wait=30)
    assert report.ok, report.summary_lines()
    for consumer in consumers:
        consumer.stop()  # raises what stopped it, if anything did

    # Each entry was applied once, none healed from the ledger: every account's entries came in order.
    assert _entries_applied() - applied_before == Entry.objects.count() == 160 * 2
    messages = [record.getMessage() for record in caplog.records]
    assert not [message for message in messages if "healed" in message]
    assert any(message.startswith("revoked") for message in messages), "the second consumer's join moved no partition"
    by_key: dict[bytes, list[int]] = {}
    for message in sorted(read_topic(ENTRY_TOPIC, idle_seconds=0.5), key=lambda m: (m.partition(), m.offset())):
        by_key.setdefault(message.key(), []).append(orjson.loads(message.value())["data"]["sequence"])
    assert all(sequences == list(range(1, len(sequences) + 1)) for sequences in by_key.values())
