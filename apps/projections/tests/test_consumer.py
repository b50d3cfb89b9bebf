"""The consumer's own Kafka plumbing, without a broker."""

from __future__ import annotations

from typing import cast

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from apps.outbox.topics import ENTRY_TOPIC
from apps.projections.consumer import _Offsets, dead_letters_send
from apps.projections.projector import ConsumedMessage, DeadLetter
from creditledger import kafka, metrics


def test_dead_letters_that_kafka_did_not_take_fail_the_batch(settings):
    """Failed deliveries leave the producer's queue too, so flush() alone would report none."""
    settings.KAFKA = {**settings.KAFKA, "BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    producer = kafka.producer_create(**{"message.timeout.ms": 300})
    message = ConsumedMessage(topic=ENTRY_TOPIC, partition=0, offset=7, key=b"k", value=b"{not json")
    counted = metrics.DEAD_LETTERS.labels(topic=ENTRY_TOPIC)._value.get()

    with pytest.raises(RuntimeError, match="1 dead letters not delivered"):
        dead_letters_send(producer, [DeadLetter(message, "not JSON")])

    assert metrics.DEAD_LETTERS.labels(topic=ENTRY_TOPIC)._value.get() == counted


class _FlakyConsumer:
    """Refuses its first `failures` offset commits, as Kafka does during a rebalance."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.committed: list[dict[tuple[str, int], int]] = []

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool) -> None:
        if self.failures:
            self.failures -= 1
            raise KafkaException(KafkaError(KafkaError.REBALANCE_IN_PROGRESS))
        self.committed.append({(o.topic, o.partition): o.offset for o in offsets})


def _applied(partition: int, offset: int) -> ConsumedMessage:
    return ConsumedMessage(topic=ENTRY_TOPIC, partition=partition, offset=offset, key=b"k", value=b"{}")


def test_an_offset_commit_that_failed_is_made_again_when_the_partition_is_revoked():
    flaky = _FlakyConsumer(failures=1)
    consumer = cast(Consumer, flaky)
    offsets = _Offsets()

    offsets.commit(consumer, [_applied(0, 4), _applied(1, 9)])  # applied, not committed
    offsets.on_revoke(consumer, [TopicPartition(ENTRY_TOPIC, 0)])

    assert flaky.committed == [{(ENTRY_TOPIC, 0): 5}]
    offsets.commit(consumer, [_applied(2, 0)])  # the next batch carries what is still owed
    assert flaky.committed[-1] == {(ENTRY_TOPIC, 1): 10, (ENTRY_TOPIC, 2): 1}
    assert offsets.uncommitted == {}


def test_offsets_not_committed_to_a_broker_that_went_away_are_not_committed_to_the_new_one():
    flaky = _FlakyConsumer(failures=1)
    consumer = cast(Consumer, flaky)
    offsets = _Offsets()
    offsets.commit(consumer, [_applied(0, 5000)])

    offsets.forget()
    offsets.commit(consumer, [_applied(1, 0)])

    assert flaky.committed == [{(ENTRY_TOPIC, 1): 1}]
