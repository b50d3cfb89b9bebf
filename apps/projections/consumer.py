"""The projection consumer loop: Kafka in, `projection_batch_apply` on each batch, offsets
committed only after the database commit. Invalid messages go to the dead-letter topic
(flushed before the offsets move past them).

When the broker restarts empty (the embedded one keeps nothing), librdkafka reconnects and
the group is joined again; the new broker has no committed offsets, so every partition is
read from its beginning (auto.offset.reset is earliest). The loop refreshes the metadata
every second, which is how it notices topics created after it joined, and a new broker: it
creates the topics there, and joins the group again as a new member if the group still
gives it no partition (see `_GroupRejoin`).

Several consumers with one group id share the partitions (ADR 0022). A partition moves on a
rebalance, which librdkafka runs inside `consume()`, between two batches of this loop: every
batch returned before it was applied and its offsets committed, so the new owner starts from
the committed offset, right after what this one applied. An offset commit that failed is
made again when the partition is revoked (`_Offsets`); one that fails even then leaves the
new owner re-reading applied events, which the projector skips (the tracking table and the
read model's keys make a duplicate a no-op, so no event is applied twice). The new owner
does not resume from the tracking table's offsets: they are the offsets on the broker they
came from, and a new broker starts again at 0."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import cast

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from django.conf import settings
from django.db import DatabaseError
from opentelemetry import propagate, trace

from apps.outbox.topics import ALL_TOPICS
from apps.projections.projector import BatchResult, ConsumedMessage, DeadLetter, projection_batch_apply
from creditledger import kafka, metrics

logger = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

LAG_REFRESH_SECONDS = 5.0
METADATA_REFRESH_SECONDS = 1.0
#: How long after a broker change the group has to give this consumer partitions: a join
#: under way is over by then (the embedded broker's session timeout is 2 s).
GROUP_SETTLE_SECONDS = 5.0
GROUP_REJOIN_ATTEMPTS = 3
DB_RETRY_SECONDS = 1.0


def consumed(message: Message) -> ConsumedMessage:
    """A message consumed without error(), which has its topic, partition and offset."""
    topic, partition, offset = message.topic(), message.partition(), message.offset()
    if topic is None or partition is None or offset is None:
        raise ValueError(f"not a consumed message: {message.error()}")
    # A consumed message's headers are a list of (name, bytes or None); the dict form is for producing.
    headers = cast("list[tuple[str, bytes | None]]", message.headers() or [])
    return ConsumedMessage(
        topic=topic,
        partition=partition,
        offset=offset,
        key=message.key(),
        value=message.value(),
        headers={name: value or b"" for name, value in headers},
    )


def dead_letters_send(producer: Producer, dead_letters: list[DeadLetter]) -> None:
    """Publish invalid messages, with where they came from and why, and wait for every
    delivery report: one that failed (timed out, say) is not in flight any more either."""
    topic = settings.KAFKA["DEAD_LETTER_TOPIC"]
    failed: list[KafkaError] = []

    def report(error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            failed.append(error)

    for dead in dead_letters:
        source = dead.message
        headers = {
            **{name: value.decode(errors="replace") for name, value in source.headers.items()},
            "dlq_source_topic": source.topic,
            "dlq_source_partition": str(source.partition),
            "dlq_source_offset": str(source.offset),
            "dlq_reason": dead.reason[:1000],
        }
        producer.produce(
            topic, key=source.key, value=source.value, headers=kafka.headers_as_list(headers), on_delivery=report
        )
    undelivered = producer.flush(30)
    if undelivered or failed:
        raise RuntimeError(f"{undelivered + len(failed)} dead letters not delivered: {failed[:1]}")
    for dead in dead_letters:
        source = dead.message
        metrics.DEAD_LETTERS.labels(topic=source.topic).inc()
        logger.warning("dead-lettered %s[%d]@%d: %s", source.topic, source.partition, source.offset, dead.reason)


def batch_process(messages: list[ConsumedMessage], *, consumer_group: str, producer: Producer) -> BatchResult:
    """Apply one batch and dead-letter what was invalid. Each message gets a span that
    continues the trace carried in its headers."""
    spans = [
        tracer.start_span(
            f"{message.topic} process",
            context=propagate.extract(
                {name: value.decode(errors="replace") for name, value in message.headers.items()}
            ),
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": message.topic,
                "messaging.kafka.message.offset": message.offset,
            },
        )
        for message in messages
    ]
    try:
        started = time.perf_counter()
        result = projection_batch_apply(messages, consumer_group=consumer_group)
        if result.dead_letters:
            dead_letters_send(producer, result.dead_letters)
        metrics.CONSUMER_BATCH_DURATION.observe(time.perf_counter() - started)
    finally:
        for span in spans:
            span.end()
    for event_type, count in result.applied.items():
        metrics.EVENTS_APPLIED.labels(event_type=event_type).inc(count)
    metrics.EVENTS_DUPLICATE.inc(result.duplicates)
    for latency in result.latencies:
        metrics.PROJECTION_LATENCY.observe(latency)
    return result


def consume_loop(
    *,
    should_stop: Callable[[], bool],
    consumer_group: str | None = None,
    topics: tuple[str, ...] = ALL_TOPICS,
    batch_size: int | None = None,
) -> None:
    """Consume until `should_stop()` is true. Reconnecting after a broker restart is
    librdkafka's job; a database error rewinds to the batch start and retries."""
    group = consumer_group or settings.KAFKA["CONSUMER_GROUP"]
    batch_size = batch_size or settings.PROJECTIONS["CONSUMER_BATCH_SIZE"]
    _topics_ensure(topics)
    consumer = kafka.consumer_create(group)
    # Dead letters need no order, and an idempotent producer is wedged for good by a broker
    # that restarts with no memory of it (the embedded one).
    producer = kafka.producer_create(**{"enable.idempotence": False})
    offsets = _Offsets()
    rejoin = _GroupRejoin()

    def on_revoke(consumer: Consumer, partitions: list[TopicPartition]) -> None:
        offsets.on_revoke(consumer, partitions)
        if partitions:
            rejoin.arm("its partitions were revoked")

    subscription = {"on_assign": offsets.on_assign, "on_revoke": on_revoke}
    consumer.subscribe(list(topics), **subscription)
    lag_refreshed = metadata_refreshed = 0.0
    cluster_id: str | None = None
    try:
        while not should_stop():
            messages = _poll(consumer, batch_size)
            if messages:
                try:
                    batch_process(messages, consumer_group=group, producer=producer)
                except (DatabaseError, RuntimeError):
                    logger.exception("batch of %d not applied; rewinding to retry", len(messages))
                    _rewind(consumer, messages)
                    time.sleep(DB_RETRY_SECONDS)
                    continue
                offsets.commit(consumer, messages)
            if time.monotonic() - metadata_refreshed > METADATA_REFRESH_SECONDS:
                previous, cluster_id = cluster_id, _metadata_refresh(consumer, cluster_id, topics)
                if previous is not None and cluster_id != previous:
                    offsets.forget()
                    rejoin.arm("the broker changed")
                metadata_refreshed = time.monotonic()
            rejoin.check(consumer, topics, subscription)
            if time.monotonic() - lag_refreshed > LAG_REFRESH_SECONDS:
                _lag_refresh(consumer)
                lag_refreshed = time.monotonic()
    finally:
        consumer.close()
        producer.flush(5)


def _poll(consumer: Consumer, batch_size: int) -> list[ConsumedMessage]:
    messages = []
    for message in consumer.consume(num_messages=batch_size, timeout=0.2):
        error = message.error()
        if error is None:
            messages.append(consumed(message))
        elif error.code() != KafkaError._PARTITION_EOF:
            logger.warning("kafka: %s", error)
    return messages


def _first_offsets(messages: list[ConsumedMessage]) -> dict[tuple[str, int], int]:
    first: dict[tuple[str, int], int] = {}
    for message in messages:
        first.setdefault((message.topic, message.partition), message.offset)
    return first


def _rewind(consumer: Consumer, messages: list[ConsumedMessage]) -> None:
    for (topic, partition), offset in _first_offsets(messages).items():
        try:
            consumer.seek(TopicPartition(topic, partition, offset))
        except Exception:  # partition revoked meanwhile: its new owner starts from the committed offset
            logger.warning("could not rewind %s[%d]", topic, partition, exc_info=True)


class _Offsets:
    """Commits the offsets of applied batches, after their database commit. Those whose commit
    failed are kept, and committed again with the next batch or when their partition is
    revoked, so its next owner starts after what this consumer applied."""

    def __init__(self) -> None:
        self.uncommitted: dict[tuple[str, int], int] = {}

    def commit(self, consumer: Consumer, messages: list[ConsumedMessage]) -> None:
        for message in messages:
            self.uncommitted[(message.topic, message.partition)] = message.offset + 1
        self._commit(consumer, dict(self.uncommitted))

    def forget(self) -> None:
        """Drop the offsets not committed yet: on a new broker they would skip its messages."""
        self.uncommitted.clear()

    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        logger.info("assigned %s", _partitions_named(partitions))

    def on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = {(p.topic, p.partition) for p in partitions}
        self._commit(consumer, {tp: offset for tp, offset in self.uncommitted.items() if tp in revoked})
        for topic, partition in revoked:
            self.uncommitted.pop((topic, partition), None)
            with contextlib.suppress(KeyError):  # another consumer of the group reports its lag now
                metrics.CONSUMER_LAG.remove(topic, str(partition))
        logger.info("revoked %s", _partitions_named(partitions))

    def _commit(self, consumer: Consumer, offsets: dict[tuple[str, int], int]) -> None:
        if not offsets:
            return
        try:
            consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False)
        except Exception:  # e.g. a rebalance: tried again; else the next owner's redelivery is a no-op
            logger.warning("offset commit failed; the next owner may re-read already applied events", exc_info=True)
            return
        for partition, offset in offsets.items():
            if self.uncommitted.get(partition) == offset:
                del self.uncommitted[partition]


def _partitions_named(partitions: list[TopicPartition]) -> str:
    return ", ".join(f"{p.topic}[{p.partition}]" for p in partitions) or "no partition"


def _metadata_refresh(consumer: Consumer, cluster_id: str | None, topics: tuple[str, ...]) -> str | None:
    """Ask the broker for its metadata, so that topics created since the group was joined get
    assigned. On a new broker, create the topics. Returns the cluster id dealt with: the
    previous one while the topics could not be created, so the next refresh tries again."""
    try:
        metadata = consumer.list_topics(timeout=1.0)
    except KafkaException:
        return cluster_id  # the broker is down: librdkafka reconnects
    if cluster_id is not None and metadata.cluster_id != cluster_id:
        logger.warning(
            "Kafka is another cluster (%s, was %s): its committed offsets are gone, every partition "
            "is read again from its beginning",
            metadata.cluster_id,
            cluster_id,
        )
        try:
            _topics_ensure(topics)
        except KafkaException:
            logger.warning("could not create the topics on the new broker; retrying", exc_info=True)
            return cluster_id
    return metadata.cluster_id


class _GroupRejoin:
    """After a broker change, or a rebalance that revoked this consumer's partitions (another
    consumer of the group joined or left), join the group again as a new member if it has
    still given this consumer no partition once a join under way is over, at most
    GROUP_REJOIN_ATTEMPTS times (with more consumers than partitions on a real Kafka, an idle
    member is normal; it had no partition to revoke, so it is not armed).

    librdkafka joins the new broker's group as soon as it reconnects, often before the topics
    are there again, and gets no partition. Tansu (0.6) answers the same member's rejoin when
    they appear with the same generation and the assignment it first synced, the empty one,
    for good; a new member gets a new generation. Not earlier than GROUP_SETTLE_SECONDS: Tansu
    keeps a member that leaves in the middle of a join as the leader of a group that never syncs,
    and two members joining within a moment of each other can leave both with no partition."""

    def __init__(self) -> None:
        self.check_at: float | None = None
        self.attempts_left = 0
        self.reason = ""

    def arm(self, reason: str) -> None:
        self.check_at = time.monotonic() + GROUP_SETTLE_SECONDS
        self.attempts_left = GROUP_REJOIN_ATTEMPTS
        self.reason = reason

    def check(self, consumer: Consumer, topics: tuple[str, ...], subscription: dict[str, Callable]) -> None:
        if self.check_at is None or time.monotonic() < self.check_at:
            return
        self.check_at = None
        if consumer.assignment() or not self.attempts_left:
            return
        self.attempts_left -= 1
        logger.warning(
            "no partition assigned %.0f s after %s: joining the group again as a new member",
            GROUP_SETTLE_SECONDS,
            self.reason,
        )
        consumer.unsubscribe()
        consumer.subscribe(list(topics), **subscription)
        self.check_at = time.monotonic() + GROUP_SETTLE_SECONDS


def _topics_ensure(topics: tuple[str, ...]) -> None:
    kafka.topics_ensure([*topics, settings.KAFKA["DEAD_LETTER_TOPIC"]])


def _lag_refresh(consumer: Consumer) -> None:
    try:
        for position in consumer.position(consumer.assignment()):
            _low, high = consumer.get_watermark_offsets(position, timeout=1.0, cached=False)
            lag = max(0, high - position.offset) if position.offset >= 0 else high
            metrics.CONSUMER_LAG.labels(topic=position.topic, partition=str(position.partition)).set(lag)
    except Exception:
        logger.debug("could not refresh consumer lag", exc_info=True)
