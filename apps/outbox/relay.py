"""The relay: drains the outbox to Kafka, in order, one relay per shard at a time.

The outbox is split into OUTBOX_SHARDS shards by key (ADR 0022): a row goes to the Kafka
partition `outbox_partition(key)` (SQL, apps/outbox/sql/0007_relay_shards.sql), and shard
`partition % OUTBOX_SHARDS` publishes it. A session advisory lock per shard makes its relay
the only one, so the order of events per key is the order of their rows (several relays
with SKIP LOCKED would reorder them), and the shards run in parallel. A relay reads a batch
of its shard's unpublished rows by id (no row is skipped: it never tails by id), produces
them with the idempotent producer, waits for every delivery report, then marks the
delivered rows published. Rows that failed stay unpublished and go out first on the next
run; per partition the idempotent producer delivers a prefix, so per-key order holds.
The shard of a row is computed when it is claimed, never stored, so changing OUTBOX_SHARDS
moves keys between shards without reordering them, provided no relay still runs with the
old count: a relay refuses to run while one with another count holds its lock.

A broker can forget what it acknowledged: the embedded one keeps everything in memory. Each
delivery carries a relay position (header `relay_position`, from a sequence, in the order
the relay produces), and the projection consumer records the last one it applied per
partition. On a new producer, and then at most every BROKER_CHECK_SECONDS, the relay
compares the broker's cluster id and topics with what it recorded; when the broker has lost
its history, it marks unpublished again every row delivered after what the consumer had
applied on that row's partition (docs/adr/0007).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import cast

import orjson
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone
from django.utils.module_loading import import_string
from opentelemetry import propagate, trace

from apps.outbox.models import RelayState
from apps.outbox.topics import ALL_TOPICS, RELAY_POSITION_HEADER
from creditledger import kafka, metrics

logger = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

#: The advisory locks of the relays: (RELAY_LOCK_KEY, shards << 16 | shard), one per shard.
RELAY_LOCK_KEY = 0x4F555442  # "OUTB"
#: How often a drain compares the broker with what the relay recorded (a metadata request).
BROKER_CHECK_SECONDS = 1.0
METADATA_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class RelayResult:
    published: int = 0
    failed: int = 0
    #: Why nothing ran: "locked" (another relay of the shard is running), "resharding" (a relay
    #: with another OUTBOX_SHARDS is running) or "backoff" (Kafka failed recently).
    skipped: str | None = None


class _Producer:
    """One idempotent producer per process, created on first use. The broker is checked when
    it is created and then at most every BROKER_CHECK_SECONDS; a broker that lost its history
    gets a new producer too (an idempotent producer never recovers from a broker that has
    forgotten it)."""

    instance: Producer | None = None
    checked_at = 0.0
    #: The cluster it was last found to publish to: deliveries are marked only while the relay
    #: state still records that one (see _published_mark).
    cluster_id: str | None = None

    @classmethod
    def get(cls) -> Producer:
        now = time.monotonic()
        if cls.instance is None or now - cls.checked_at >= BROKER_CHECK_SECONDS:
            producer = cls.instance or kafka.producer_create()
            cluster_id, lost = _broker_check(producer)
            # Another shard may have found the new broker first: a producer of the old one is wedged.
            if lost or (cls.instance is not None and cluster_id != cls.cluster_id):
                producer = kafka.producer_create()
            cls.instance, cls.checked_at, cls.cluster_id = producer, now, cluster_id
        return cls.instance

    @classmethod
    def reset(cls) -> None:
        cls.instance = None

    @classmethod
    def check_now(cls) -> None:
        """Check the broker on the next get()."""
        cls.checked_at = 0.0


def outbox_relay(*, shard: int = 0, max_batches: int | None = None, ignore_backoff: bool = False) -> RelayResult:
    """Publish the shard's unpublished outbox rows until none are left (or `max_batches`)."""
    shards = settings.OUTBOX["SHARDS"]
    if not 0 <= shard < shards:
        raise ValueError(f"no relay shard {shard}: OUTBOX_SHARDS is {shards}, shards are 0 to {shards - 1}")
    lock = shard_lock_key(shards=shards, shard=shard)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [RELAY_LOCK_KEY, lock])
        if not cursor.fetchone()[0]:
            return RelayResult(skipped="locked")
    try:
        if _other_shard_count_running(shards):
            return RelayResult(skipped="resharding")
        if not ignore_backoff and _in_backoff():
            return RelayResult(skipped="backoff")
        return _drain(shards=shards, shard=shard, max_batches=max_batches)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [RELAY_LOCK_KEY, lock])


def shard_lock_key(*, shards: int, shard: int) -> int:
    """The second key of the advisory lock of `shard` of `shards` (the first is RELAY_LOCK_KEY)."""
    return shards << 16 | shard


def _other_shard_count_running(shards: int) -> bool:
    """Whether a relay with another shard count holds its lock, in this database. Each relay
    takes its lock before it looks, so of two relays with different counts at least one sees
    the other: they never run together, and a key never has two relays (see ADR 0022)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT EXISTS (
                   SELECT FROM pg_locks
                    WHERE locktype = 'advisory' AND granted AND objsubid = 2 AND classid = %s
                      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                      AND objid::bigint >> 16 <> %s)""",
            [RELAY_LOCK_KEY, shards],
        )
        return cursor.fetchone()[0]


def _drain(*, shards: int, shard: int, max_batches: int | None) -> RelayResult:
    published = 0
    batches = 0
    batch_size = settings.OUTBOX["RELAY_BATCH_SIZE"]
    try:
        while max_batches is None or batches < max_batches:
            producer = _Producer.get()
            rows = _unpublished(shards=shards, shard=shard, limit=batch_size)
            if not rows:
                break
            started = time.perf_counter()
            delivered, errors = _publish(producer, rows, _positions_draw(len(rows)))
            if not _published_mark(delivered, cluster_id=_Producer.cluster_id):
                _Producer.check_now()
                continue
            published += len(delivered)
            batches += 1
            metrics.RELAY_BATCH_SIZE.observe(len(rows))
            metrics.RELAY_BATCH_DURATION.observe(time.perf_counter() - started)
            metrics.RELAY_PUBLISHED.inc(len(delivered))
            if errors:
                raise KafkaException(errors[0])
    except KafkaException as exc:
        _record_failure(exc)
        return RelayResult(published=published, failed=1)
    _record_success()
    return RelayResult(published=published)


#: An unpublished row: id, topic, key, partition, headers and payload (JSON text).
_Row = tuple[int, str, str, int, str, str]


def _unpublished(*, shards: int, shard: int, limit: int) -> list[_Row]:
    """The shard's oldest unpublished rows, with their partition, payloads as stored JSON text:
    relayed as they are, never decoded and encoded again. The scan walks the partial index of
    unpublished rows in id order and skips the other shards' rows: about `shards` x `limit`
    index entries per batch."""
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT id, topic, key, partition, headers::text, payload::text
                 FROM (SELECT *, outbox_partition(key, %(partitions)s) AS partition
                         FROM outbox_event WHERE published_at IS NULL) AS unpublished
                WHERE mod(partition, %(shards)s) = %(shard)s
                ORDER BY id LIMIT %(limit)s""",
            {"partitions": settings.KAFKA["TOPIC_PARTITIONS"], "shards": shards, "shard": shard, "limit": limit},
        )
        return cursor.fetchall()


def _positions_draw(count: int) -> list[int]:
    """`count` new relay positions, ascending."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT nextval('outbox_relay_position') FROM generate_series(1, %s)", [count])
        return sorted(position for (position,) in cursor.fetchall())


@dataclass(frozen=True)
class _Delivery:
    row_id: int
    position: int
    partition: int


def _publish(producer: Producer, rows: list[_Row], positions: list[int]) -> tuple[list[_Delivery], list[KafkaError]]:
    """Produce `rows` in order, the n-th with the n-th position, and wait for every report."""
    delivered: list[_Delivery] = []
    errors: list[KafkaError] = []

    def on_delivery(row_id: int, position: int):
        def report(error: KafkaError | None, message: Message) -> None:
            if error is None:
                # A delivered message has the partition it went to.
                delivered.append(_Delivery(row_id, position, cast(int, message.partition())))
            else:
                errors.append(error)

        return report

    for (row_id, topic, key, partition, headers_json, payload), position in zip(rows, positions, strict=True):
        headers = orjson.loads(headers_json)
        # Continue the trace of the request that wrote the row.
        with tracer.start_as_current_span(
            f"{topic} publish",
            context=propagate.extract(headers),
            kind=trace.SpanKind.PRODUCER,
            attributes={"messaging.system": "kafka", "messaging.destination.name": topic},
        ):
            outgoing = {**headers, RELAY_POSITION_HEADER: str(position)}
            propagate.inject(outgoing)
            _produce(
                producer,
                topic,
                key,
                partition,
                payload.encode(),
                kafka.headers_as_list(outgoing),
                on_delivery(row_id, position),
            )
    remaining = producer.flush(settings.KAFKA["PRODUCER_CONFIG"]["message.timeout.ms"] / 1000 + 5)
    if remaining:
        errors.append(KafkaError(KafkaError._MSG_TIMED_OUT, f"{remaining} messages still in flight"))
    return delivered, errors


def _published_mark(delivered: list[_Delivery], *, cluster_id: str | None) -> bool:
    """Mark the rows published and record where each delivery went, in one statement, unless
    another shard has meanwhile found that the broker lost its history (the relay state has
    another cluster): then the rows stay unpublished and go to the new broker on the next run.
    The relay state is read FOR SHARE, so _history_lost, which updates it first, republishes
    after every mark made before it, and no mark happens after it. Returns whether it marked."""
    if not delivered:
        return True
    with transaction.atomic(durable=True), connection.cursor() as cursor:
        cursor.execute("SELECT cluster_id FROM outbox_relay_state WHERE id = 1 FOR SHARE")
        recorded = cursor.fetchone()
        if recorded is not None and recorded[0] != cluster_id:
            logger.warning("the broker changed while %d rows were delivered; they go out again", len(delivered))
            return False
        cursor.execute(
            """WITH delivered(id, position, partition) AS (
                        SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::int[])),
                    marked AS (
                        UPDATE outbox_event o SET published_at = %s FROM delivered d WHERE o.id = d.id)
               INSERT INTO outbox_delivery (outbox_id, relay_position, partition)
               SELECT id, position, partition FROM delivered
               ON CONFLICT (outbox_id) DO UPDATE SET relay_position = EXCLUDED.relay_position,
                                                     partition = EXCLUDED.partition""",
            [
                [d.row_id for d in delivered],
                [d.position for d in delivered],
                [d.partition for d in delivered],
                timezone.now(),
            ],
        )
    return True


def _produce(producer: Producer, topic: str, key: str, partition: int, value: bytes, headers, on_delivery) -> None:
    while True:
        try:
            producer.produce(
                topic, key=key.encode(), value=value, partition=partition, headers=headers, on_delivery=on_delivery
            )
            return
        except BufferError:
            producer.poll(0.1)  # local queue full: let deliveries drain


def consumer_positions(*, consumer_group: str, topics: Iterable[str]) -> dict[str, dict[str, int]]:
    """The positions the read side says its consumer applied (OUTBOX['CONSUMER_POSITIONS_SELECTOR'])."""
    return import_string(settings.OUTBOX["CONSUMER_POSITIONS_SELECTOR"])(consumer_group=consumer_group, topics=topics)


def _broker_check(producer: Producer) -> tuple[str | None, bool]:
    """Compare the broker with what the relay recorded. If it is another cluster, or the
    ledger topics are gone, it has lost what was published to it: mark unpublished again the
    rows the projection consumer had not applied. Returns the broker's cluster id, and whether
    it had lost its history. The first run ever only records the cluster.

    The consumer's positions are read before the metadata request: if the broker is then
    still the recorded one, the consumer applied them from it, and they become the positions
    to republish after. Positions read once the broker has changed may come from the new
    broker, past rows lost with the old one, so a change uses those of the last check."""
    state, _ = RelayState.objects.get_or_create(id=1)
    try:
        applied = consumer_positions(consumer_group=settings.KAFKA["CONSUMER_GROUP"], topics=ALL_TOPICS)
    except DatabaseError:  # the read model's database: publishing must not depend on it
        logger.warning("could not read the projection consumer's positions; keeping the last ones", exc_info=True)
        applied = state.consumer_positions
    metadata = producer.list_topics(timeout=METADATA_TIMEOUT_SECONDS)
    missing = [topic for topic in ALL_TOPICS if topic not in metadata.topics]
    lost = state.cluster_id is not None and (metadata.cluster_id != state.cluster_id or bool(missing))
    if missing or settings.KAFKA["DEAD_LETTER_TOPIC"] not in metadata.topics:
        kafka.topics_ensure([*missing, settings.KAFKA["DEAD_LETTER_TOPIC"]])
    if lost:
        _history_lost(state, cluster_id=metadata.cluster_id, missing=missing)
    elif (state.cluster_id, state.consumer_positions) != (metadata.cluster_id, applied):
        state.cluster_id, state.consumer_positions = metadata.cluster_id, applied
        state.save(update_fields=["cluster_id", "consumer_positions", "updated_at"])
    return metadata.cluster_id, lost


def _history_lost(state: RelayState, *, cluster_id: str | None, missing: list[str]) -> None:
    """Mark unpublished every published row whose latest delivery is not known to be applied:
    none is recorded, or it came after the consumer's position on its partition (none: 0).
    Positions follow the order the relay produced, so a row committed late, with a smaller id,
    counts from when it was delivered. The consumer's positions stay as they were: still
    applied, and below whatever the relay delivers from now on. The relay state is updated
    first: a shard marking its deliveries meanwhile either did so before (and its rows are
    republished here) or finds the new cluster and leaves them unpublished."""
    positions = state.consumer_positions
    applied = [
        (topic, int(partition), position)
        for topic, partitions in positions.items()
        for partition, position in partitions.items()
    ]
    with transaction.atomic(durable=True), connection.cursor() as cursor:
        previous = state.cluster_id
        state.cluster_id, state.kafka_history_complete = cluster_id, False
        state.save(update_fields=["cluster_id", "kafka_history_complete", "updated_at"])
        cursor.execute(
            """WITH applied(topic, partition, position) AS (
                        SELECT * FROM unnest(%s::text[], %s::int[], %s::bigint[])),
                    republished AS (
                        UPDATE outbox_event o SET published_at = NULL
                         WHERE o.published_at IS NOT NULL
                           AND NOT EXISTS (SELECT FROM outbox_delivery d
                                             JOIN applied a
                                               ON a.partition = d.partition AND a.position >= d.relay_position
                                            WHERE d.outbox_id = o.id AND a.topic = o.topic)
                        RETURNING o.id)
               SELECT count(*), min(id) FROM republished""",
            [[a[0] for a in applied], [a[1] for a in applied], [a[2] for a in applied]],
        )
        republished, first_id = cursor.fetchone()
    metrics.RELAY_HISTORY_LOST.inc()
    metrics.RELAY_REPUBLISHED.inc(republished)
    reason = f"cluster id {cluster_id}, was {previous}" if cluster_id != previous else f"no topic {', '.join(missing)}"
    logger.warning(
        "Kafka has lost what the relay published to it (%s): republishing %d outbox rows from id %s, "
        "those the projection consumer (group %s) had not applied",
        reason,
        republished,
        first_id,
        settings.KAFKA["CONSUMER_GROUP"],
    )


def _in_backoff() -> bool:
    state = RelayState.objects.filter(id=1).first()
    return bool(state and state.next_attempt_at and state.next_attempt_at > timezone.now())


def _record_failure(exc: Exception) -> None:
    state, _ = RelayState.objects.get_or_create(id=1)
    state.consecutive_failures += 1
    delay = min(settings.OUTBOX["MAX_BACKOFF_SECONDS"], 0.5 * 2 ** (state.consecutive_failures - 1))
    state.next_attempt_at = timezone.now() + timedelta(seconds=delay)
    state.last_error = str(exc)[:2000]
    state.save()
    metrics.RELAY_FAILURES.inc()
    logger.error(
        "outbox relay could not deliver to Kafka (%s); %d failures in a row, next attempt in %.1f s",
        exc,
        state.consecutive_failures,
        delay,
    )
    _Producer.reset()


def _record_success() -> None:
    RelayState.objects.filter(id=1, consecutive_failures__gt=0).update(
        consecutive_failures=0, next_attempt_at=None, last_error=""
    )
