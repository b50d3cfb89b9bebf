"""The consumer's own Kafka plumbing, without a broker."""

from __future__ import annotations

import pytest

from apps.outbox.topics import ENTRY_TOPIC
from apps.projections.consumer import dead_letters_send
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
