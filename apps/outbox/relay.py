"""The relay: drains the outbox to Kafka, in order, one relay at a time.

A session advisory lock makes this the only relay running, so the order of events per key
is the order of their rows (several relays with SKIP LOCKED would reorder them). It reads a
batch of unpublished rows by id (no row is skipped: it never tails by id), produces them
with the idempotent producer, waits for every delivery report, then marks the delivered
rows published. Rows that failed stay unpublished and go out first on the next run; per
partition the idempotent producer delivers a prefix, so per-key order holds.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta

import orjson
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from django.conf import settings
from django.db import connection
from django.utils import timezone
from opentelemetry import propagate, trace

from apps.outbox.models import OutboxEvent, RelayState
from apps.outbox.topics import ALL_TOPICS
from creditledger import kafka, metrics

logger = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

RELAY_LOCK_KEY = 0x4F555442  # "OUTB"


@dataclass(frozen=True)
class RelayResult:
    published: int = 0
    failed: int = 0
    #: Why nothing ran: "locked" (another relay is running) or "backoff" (Kafka failed recently).
    skipped: str | None = None


class _Producer:
    """One idempotent producer per process, created on first use; topics ensured once."""

    instance: Producer | None = None

    @classmethod
    def get(cls) -> Producer:
        if cls.instance is None:
            kafka.topics_ensure([*ALL_TOPICS, settings.KAFKA["DEAD_LETTER_TOPIC"]])
            cls.instance = kafka.producer_create()
        return cls.instance

    @classmethod
    def reset(cls) -> None:
        cls.instance = None


def outbox_relay(*, max_batches: int | None = None, ignore_backoff: bool = False) -> RelayResult:
    """Publish unpublished outbox rows until none are left (or `max_batches`)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [RELAY_LOCK_KEY])
        if not cursor.fetchone()[0]:
            return RelayResult(skipped="locked")
    try:
        if not ignore_backoff and _in_backoff():
            return RelayResult(skipped="backoff")
        return _drain(max_batches)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [RELAY_LOCK_KEY])


def _drain(max_batches: int | None) -> RelayResult:
    published = 0
    batches = 0
    batch_size = settings.OUTBOX["RELAY_BATCH_SIZE"]
    try:
        producer = _Producer.get()
        while max_batches is None or batches < max_batches:
            rows = _unpublished(batch_size)
            if not rows:
                break
            started = time.perf_counter()
            delivered, errors = _publish(producer, rows)
            if delivered:
                OutboxEvent.objects.filter(id__in=delivered).update(published_at=timezone.now())
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


def _unpublished(limit: int) -> list[tuple[int, str, str, str, str]]:
    """The oldest unpublished rows, payloads as stored JSON text: relayed as they are, never
    decoded and encoded again."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, topic, key, headers::text, payload::text FROM outbox_event "
            "WHERE published_at IS NULL ORDER BY id LIMIT %s",
            [limit],
        )
        return cursor.fetchall()


def _publish(producer: Producer, rows: list[tuple[int, str, str, str, str]]) -> tuple[list[int], list[KafkaError]]:
    delivered: list[int] = []
    errors: list[KafkaError] = []

    def on_delivery(row_id: int):
        def report(error: KafkaError | None, _message: Message) -> None:
            if error is None:
                delivered.append(row_id)
            else:
                errors.append(error)

        return report

    for row_id, topic, key, headers_json, payload in rows:
        headers = orjson.loads(headers_json)
        # Continue the trace of the request that wrote the row.
        with tracer.start_as_current_span(
            f"{topic} publish", context=propagate.extract(headers), kind=trace.SpanKind.PRODUCER,
            attributes={"messaging.system": "kafka", "messaging.destination.name": topic},
        ):
            outgoing = {**headers}
            propagate.inject(outgoing)
            _produce(producer, topic, key, payload.encode(), kafka.headers_as_list(outgoing), on_delivery(row_id))
    remaining = producer.flush(settings.KAFKA["PRODUCER_CONFIG"]["message.timeout.ms"] / 1000 + 5)
    if remaining:
        errors.append(KafkaError(KafkaError._MSG_TIMED_OUT, f"{remaining} messages still in flight"))
    return delivered, errors


def _produce(producer: Producer, topic: str, key: str, value: bytes, headers, on_delivery) -> None:
    while True:
        try:
            producer.produce(topic, key=key.encode(), value=value, headers=headers, on_delivery=on_delivery)
            return
        except BufferError:
            producer.poll(0.1)  # local queue full: let deliveries drain


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
        exc, state.consecutive_failures, delay,
    )
    _Producer.reset()


def _record_success() -> None:
    RelayState.objects.filter(id=1, consecutive_failures__gt=0).update(
        consecutive_failures=0, next_attempt_at=None, last_error=""
    )
