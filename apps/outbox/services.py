"""Write side of the transactional outbox."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from django.db import connection, transaction
from opentelemetry import propagate

from apps.outbox.models import OutboxEvent
from apps.outbox.tasks import relay_kick
from creditledger.ids import new_id

ENVELOPE_VERSION = 1


@dataclass(frozen=True)
class OutboxMessage:
    topic: str
    key: str
    event_type: str
    aggregate_type: str
    data: dict[str, Any]
    occurred_at: datetime
    event_id: UUID = field(default_factory=new_id)

    def envelope(self) -> dict[str, Any]:
        return {
            "eventId": str(self.event_id),
            "type": self.event_type,
            "version": ENVELOPE_VERSION,
            "occurredAt": iso_utc(self.occurred_at),
            "aggregateType": self.aggregate_type,
            "aggregateId": self.key,
            "data": self.data,
        }


def iso_utc(moment: datetime) -> str:
    """Timestamps as the events and the API write them; the same format as ledger_iso() in SQL."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def outbox_messages_add(*messages: OutboxMessage) -> None:
    """Queue events for the relay, inside the caller's transaction.

    The current trace context travels in the headers, so the relay and the consumer can
    continue the trace that caused the change. The commit kicks the relay.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("outbox messages must be written inside the transaction that makes the change")
    headers: dict[str, str] = {}
    propagate.inject(headers)
    OutboxEvent.objects.bulk_create(
        [
            OutboxEvent(
                event_id=message.event_id,
                topic=message.topic,
                key=message.key,
                event_type=message.event_type,
                payload=message.envelope(),
                headers={"event_id": str(message.event_id), "event_type": message.event_type, **headers},
            )
            for message in messages
        ]
    )
    transaction.on_commit(relay_kick)
