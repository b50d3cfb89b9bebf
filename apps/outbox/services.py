"""Write side of the transactional outbox."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from django.db import connection, connections, router, transaction
from opentelemetry import propagate
from psycopg.types.json import Jsonb

from apps.outbox.models import OutboxEvent
from apps.outbox.registry import EVENT_TYPES, EventType
from apps.outbox.tasks import relay_kick
from creditledger.ids import new_id


@dataclass(frozen=True)
class OutboxMessage:
    event_type: EventType
    #: The message key: the id of the event's aggregate.
    key: str
    data: dict[str, Any]
    occurred_at: datetime
    event_id: UUID = field(default_factory=new_id)


def outbox_messages_add(*messages: OutboxMessage) -> None:
    """Queue events for the relay, inside the caller's transaction.

    The rows are built by outbox_event_row, the SQL function ledger_post_transfer writes its
    events with, so the envelope has one builder. The current trace context travels in the
    headers, so the relay and the consumer can continue the trace that caused the change.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("outbox messages must be written inside the transaction that makes the change")
    trace_headers: dict[str, str] = {}
    propagate.inject(trace_headers)
    with connection.cursor() as cursor:
        cursor.execute(
            """INSERT INTO outbox_event (event_id, topic, key, event_type, payload, headers, created_at, published_at)
               SELECT r.event_id, r.topic, r.key, r.event_type, r.payload, r.headers, r.created_at, r.published_at
                 FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::timestamptz[], %s::jsonb[])
                        AS m(event_id, event_type, key, occurred_at, data),
                      LATERAL outbox_event_row(m.event_id, m.event_type, m.key, m.occurred_at, m.data, %s::jsonb)
                        AS r""",
            [
                [message.event_id for message in messages],
                [message.event_type.name for message in messages],
                [message.key for message in messages],
                [message.occurred_at for message in messages],
                [Jsonb(message.data) for message in messages],
                Jsonb(trace_headers),  # type: ignore[list-item]  # django-stubs' SQL parameter types lack Jsonb
            ],
        )
    outbox_relay_kick_on_commit()


def outbox_relay_kick_on_commit() -> None:
    """Kick the relay when the current transaction commits. Every service that writes outbox
    rows, here or in SQL, calls it inside that transaction."""
    transaction.on_commit(relay_kick)


def outbox_event_types_sync(*, using: str, **signal_kwargs: Any) -> None:
    """Make the outbox_event_type table, which outbox_event_row reads, equal to the registry.
    Runs after every migrate and test flush (post_migrate), as contenttypes does."""
    if not router.allow_migrate(using, OutboxEvent._meta.app_label, model_name=OutboxEvent._meta.model_name):
        return
    with transaction.atomic(using=using), connections[using].cursor() as cursor:
        cursor.execute("SELECT to_regclass('outbox_event_type') IS NOT NULL")
        if not cursor.fetchone()[0]:  # migrated back before outbox 0004
            return
        cursor.execute("DELETE FROM outbox_event_type WHERE NOT name = ANY(%s)", [list(EVENT_TYPES)])
        cursor.execute(
            """INSERT INTO outbox_event_type (name, topic, version, aggregate_type)
               SELECT * FROM unnest(%s::text[], %s::text[], %s::int[], %s::text[])
               ON CONFLICT (name) DO UPDATE
                 SET topic = EXCLUDED.topic, version = EXCLUDED.version, aggregate_type = EXCLUDED.aggregate_type""",
            [
                [event.name for event in EVENT_TYPES.values()],
                [event.topic for event in EVENT_TYPES.values()],
                [event.version for event in EVENT_TYPES.values()],
                [event.aggregate_type for event in EVENT_TYPES.values()],
            ],
        )
