"""Rebuilding the projections from the beginning of the ledger topics."""

from __future__ import annotations

import logging
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition
from django.db import connections, transaction

from apps.outbox.schemas import InvalidEvent
from apps.outbox.selectors import outbox_kafka_history_complete
from apps.outbox.topics import ALL_TOPICS
from apps.projections.consumer import consumed
from apps.projections.projector import BatchResult, Tables, decode, events_apply
from apps.projections.replay.frame import rebuild_and_swap
from apps.projections.replay.rebuild import REBUILD_SCHEMA, Index, rebuild_analyze, rebuild_counts
from apps.projections.replay.result import Progress, ReplayError, ReplayResult, no_progress
from apps.projections.routers import READ_ALIAS
from creditledger import kafka

logger = logging.getLogger(__package__)  # one logger for the whole replay: apps.projections.replay

KAFKA_BATCH_SIZE = 2_000
#: A Kafka replay gives up when the broker sends nothing at all for this long.
KAFKA_IDLE_TIMEOUT_SECONDS = 30.0


def projections_replay_from_kafka(
    *,
    progress: Progress | None = None,
    batch_size: int = KAFKA_BATCH_SIZE,
    idle_timeout: float = KAFKA_IDLE_TIMEOUT_SECONDS,
) -> ReplayResult:
    """Rebuild the projections from the beginning of the ledger topics and swap them in.

    Each partition is read until the consumer reaches its end (librdkafka's partition EOF),
    not up to the high watermark read at the start: the embedded Tansu broker reports those
    too low. Invalid messages are counted and skipped. Events published after that point
    are the live consumer's: whatever it applied is merged in at the swap.
    """
    if not outbox_kafka_history_complete():
        raise ReplayError(
            "Kafka has lost events the relay published to it (a broker restarted without its data; the embedded "
            "one keeps nothing), so its topics cannot rebuild the projections; replay from the ledger instead"
        )
    report = progress or no_progress
    result = ReplayResult(source="kafka")

    def fill(_kept_indexes: list[Index]) -> None:
        _kafka_read(result, report, batch_size=batch_size, idle_timeout=idle_timeout)
        rebuild_analyze()
        result.balances, result.statement_lines, result.transfers, result.grants = rebuild_counts()

    # The projector's upserts need the unique indexes: they stay.
    return rebuild_and_swap(result, progress=report, drop_indexes=False, fill=fill)


def _kafka_read(result: ReplayResult, report: Progress, *, batch_size: int, idle_timeout: float) -> None:
    """Read every partition of the ledger topics from its beginning with a throwaway consumer
    that commits nothing, and apply it to the rebuild."""
    kafka.topics_ensure(ALL_TOPICS)
    consumer = kafka.consumer_create(
        f"projections-replay-{uuid.uuid4().hex}", **{"enable.auto.commit": False, "enable.partition.eof": True}
    )
    try:
        partitions = _partitions_at_start(consumer)
        report("events", 0, sum(partitions.values()) or None)
        consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING) for topic, partition in partitions])
        _kafka_apply(consumer, set(partitions), result, report, batch_size=batch_size, idle_timeout=idle_timeout)
    finally:
        consumer.close()


def _partitions_at_start(consumer) -> dict[tuple[str, int], int]:
    """Every partition of the ledger topics, with how many messages it holds (about: see above)."""
    metadata = consumer.list_topics(timeout=10)
    partitions: dict[tuple[str, int], int] = {}
    for topic in ALL_TOPICS:
        for partition in sorted(metadata.topics[topic].partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10, cached=False)
            if low > 0:
                raise ReplayError(
                    f"{topic}[{partition}] starts at offset {low}: older events are gone (retention), "
                    "so Kafka cannot rebuild the projections; replay from the ledger instead"
                )
            partitions[(topic, partition)] = max(0, high - low)
    return partitions


def _kafka_apply(
    consumer,
    partitions: set[tuple[str, int]],
    result: ReplayResult,
    report: Progress,
    *,
    batch_size: int,
    idle_timeout: float,
) -> None:
    """Apply every message to the rebuild, batch by batch, until each partition is at its end."""
    remaining = set(partitions)
    tables = Tables(REBUILD_SCHEMA)
    heard = time.monotonic()
    while remaining:
        events = []
        read = 0
        for message in consumer.consume(num_messages=batch_size, timeout=0.5):
            heard = time.monotonic()
            error = message.error()
            position = (message.topic(), message.partition())
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    remaining.discard(position)
                else:
                    logger.warning("kafka: %s", error)
                continue
            read += 1
            try:
                events.append(decode(consumed(message)))
            except InvalidEvent as exc:
                result.invalid_events += 1
                logger.warning("skipped %s[%d]@%d: %s", message.topic(), message.partition(), message.offset(), exc)
        if events:
            batch = BatchResult()
            with transaction.atomic(using=READ_ALIAS), connections[READ_ALIAS].cursor() as cursor:
                events_apply(cursor, tables, events, batch)
        result.events += read
        if read:
            report("events", read, None)
        if remaining and time.monotonic() - heard > idle_timeout:
            raise ReplayError(
                f"Kafka sent nothing for {idle_timeout:.0f} s; partitions not read to the end: "
                + ", ".join(f"{topic}[{partition}]" for topic, partition in sorted(remaining))
            )
