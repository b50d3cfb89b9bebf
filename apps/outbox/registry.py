"""The event registry: every event type the ledger publishes, declared once with its topic,
version, aggregate and payload JSON Schema (draft 7), and the envelope around it.

Everything else reads it: the `outbox_event_type` table that the SQL envelope builder
`outbox_event_row` looks types up in (filled after every migrate, see apps.py), the
consumer's validation (schemas.py), the projector's dispatch, the relay's and consumer's
topic lists (topics.py) and the test that checks docs/events.md. Pure Python, no Django, so
schemas.py can be used on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_UUID = {"type": "string", "pattern": "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"}
_INT64 = {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1}
_TIME = {"type": "string", "minLength": 20}
#: creditledger.actor.ACTOR_PATTERN (this module imports no Django).
_ACTOR = {"type": "string", "pattern": r"^(system|anonymous|unrecorded|key:[0-9a-f-]{36}|user:.{1,150})$"}
_CURRENCY = {"type": "string", "pattern": "^[A-Z][A-Z0-9_]{2,15}$"}


def _object(properties: dict[str, Any], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": [name for name in properties if name not in optional],
    }


@dataclass(frozen=True)
class EventType:
    """One event type. Its message key and `aggregateId` are the id of its aggregate."""

    name: str
    topic: str
    version: int
    aggregate_type: str
    data_schema: dict[str, Any] = field(compare=False)


_ENTRY_DATA = _object(
    {
        "entryId": _UUID,
        "transferId": _UUID,
        "accountId": _UUID,
        "counterpartyId": _UUID,
        "currency": _CURRENCY,
        "amount": _INT64,
        "sequence": {"type": "integer", "minimum": 1},
        "balanceAfter": _INT64,
        "createdAt": _TIME,
        # EntryPosted only, on an entry that drew from, reserved for, expired or restored grants.
        "allocations": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "grantId": _UUID,
                    "kind": {"enum": ["draw", "post", "restore", "expire", "void"]},
                    "amount": {"type": "integer", "minimum": 1},
                },
                "required": ["grantId", "kind", "amount"],
            },
        },
    },
    optional=("allocations",),
)

ACCOUNT_CREATED = EventType(
    name="AccountCreated",
    topic="ledger.account.v1",
    version=1,
    aggregate_type="account",
    data_schema=_object(
        {
            "accountId": _UUID,
            "currency": _CURRENCY,
            "name": {"type": ["string", "null"]},
            "externalRef": {"type": ["string", "null"]},
            "status": {"enum": ["active", "frozen", "closed"]},
            "overdraftLimit": {"type": ["integer", "null"], "minimum": 0},
            "metadata": {"type": "object"},
        }
    ),
)
#: One per PATCH that changes something. `changedFields` names what changed, each with its
#: new value beside it; `status` is always there.
ACCOUNT_UPDATED = EventType(
    name="AccountUpdated",
    topic="ledger.account.v1",
    version=1,
    aggregate_type="account",
    data_schema=_object(
        {
            "accountId": _UUID,
            "changedFields": {
                "type": "array",
                "items": {"enum": ["name", "metadata", "overdraftLimit", "status"]},
                "minItems": 1,
                "uniqueItems": True,
            },
            "status": {"enum": ["active", "frozen", "closed"]},
            "name": {"type": ["string", "null"]},
            "metadata": {"type": "object"},
            "overdraftLimit": {"type": ["integer", "null"], "minimum": 0},
            "reason": {"type": "string"},
        },
        optional=("name", "metadata", "overdraftLimit", "reason"),
    ),
)

_AMOUNT = {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


_POSTING = _object({"from": _UUID, "to": _UUID, "amount": _AMOUNT, "currency": _CURRENCY})

#: `from`, `to`, `amount` and `currency` are the transfer's one posting, null when it has several.
#: `postings`, `description` and `reversalOf` came later: optional, so that earlier events stay valid.
TRANSFER_POSTED = EventType(
    name="TransferPosted",
    topic="ledger.transfer.v1",
    version=1,
    aggregate_type="transfer",
    data_schema=_object(
        {
            "transferId": _UUID,
            "idempotencyKey": {"type": "string"},
            "from": _nullable(_UUID),
            "to": _nullable(_UUID),
            "amount": _nullable(_AMOUNT),
            "currency": _nullable(_CURRENCY),
            "status": {"enum": ["posted"]},
            "metadata": {"type": "object"},
            "description": {"type": ["string", "null"], "maxLength": 500},
            "reversalOf": _nullable(_UUID),
            "createdAt": _TIME,
            "postings": {"type": "array", "items": _POSTING, "minItems": 1, "maxItems": 100},
            "entries": {"type": "array", "items": _ENTRY_DATA, "minItems": 2},
        },
        optional=("description", "postings", "reversalOf"),
    ),
)
#: A reversal of the transfer was posted (its own TransferPosted carries `reversalOf`). Keyed by
#: the reversed transfer, so it follows that transfer's TransferPosted on its partition.
#: `amount` is what this reversal moved back, `reversedAmount` the running total.
TRANSFER_REVERSED = EventType(
    name="TransferReversed",
    topic="ledger.transfer.v1",
    version=1,
    aggregate_type="transfer",
    data_schema=_object(
        {
            "transferId": _UUID,
            "reversalId": _UUID,
            "amount": {"type": "integer", "minimum": 1},
            "reversedAmount": {"type": "integer", "minimum": 1},
            "createdAt": _TIME,
        }
    ),
)
#: A hold (a pending transfer) and how it ends without posting: the same data, with the status.
#: `from`, `to`, `amount` and `currency` as in TransferPosted; `postings` are the held ones.
_HOLD_DATA = {
    "transferId": _UUID,
    "idempotencyKey": {"type": "string"},
    "from": _nullable(_UUID),
    "to": _nullable(_UUID),
    "amount": _nullable(_AMOUNT),
    "currency": _nullable(_CURRENCY),
    "metadata": {"type": "object"},
    "description": {"type": ["string", "null"], "maxLength": 500},
    "createdAt": _TIME,
    "expiresAt": {"type": ["string", "null"], "minLength": 20},
    "occurredAt": _TIME,
    "postings": {"type": "array", "items": _POSTING, "minItems": 1, "maxItems": 100},
}


def _hold_event(name: str, status: str) -> EventType:
    return EventType(
        name=name,
        topic="ledger.transfer.v1",
        version=1,
        aggregate_type="transfer",
        data_schema=_object({**_HOLD_DATA, "status": {"enum": [status]}}),
    )


TRANSFER_PENDING = _hold_event("TransferPending", "pending")
TRANSFER_VOIDED = _hold_event("TransferVoided", "voided")
TRANSFER_EXPIRED = _hold_event("TransferExpired", "expired")
#: Keyed by the entry's account, so one account's entries stay in order on one partition.
ENTRY_POSTED = EventType(
    name="EntryPosted",
    topic="ledger.entry.v1",
    version=1,
    aggregate_type="account",
    data_schema=_ENTRY_DATA,
)

#: A grant (docs/credits.md) as the API shows it when the event happened; keyed by the grant.
_GRANT_DATA = {
    "grantId": _UUID,
    "accountId": _UUID,
    "transferId": _UUID,
    "from": _UUID,
    "expireTo": _UUID,
    "currency": _CURRENCY,
    "amount": _AMOUNT,
    "remaining": {"type": "integer", "minimum": 0},
    "consumed": {"type": "integer", "minimum": 0},
    "reserved": {"type": "integer", "minimum": 0},
    "expired": {"type": "integer", "minimum": 0},
    "voided": {"type": "integer", "minimum": 0},
    "priority": {"type": "integer", "minimum": 0, "maximum": 100},
    "effectiveAt": _TIME,
    "expiresAt": {"type": ["string", "null"], "minLength": 20},
    "status": {"enum": ["scheduled", "active", "exhausted", "expired", "voided"]},
    "description": {"type": ["string", "null"], "maxLength": 500},
    "metadata": {"type": "object"},
    "createdAt": _TIME,
    "updatedAt": _TIME,
}


def _grant_event(name: str, extra: dict[str, Any] | None = None) -> EventType:
    return EventType(
        name=name,
        topic="ledger.grant.v1",
        version=1,
        aggregate_type="grant",
        data_schema=_object({**_GRANT_DATA, **(extra or {})}),
    )


GRANT_CREATED = _grant_event("GrantCreated")
GRANT_ACTIVATED = _grant_event("GrantActivated")
#: `expiredAmount`: what this expiry moved to the expire-to account (a grant whose holds
#: release reserved credits after its expiry expires again, by what they released).
GRANT_EXPIRED = _grant_event("GrantExpired", {"expiredAmount": {"type": "integer", "minimum": 0}})
#: `voidedAmount`: what the void moved back to the funding account (a scheduled grant: its amount, never posted).
GRANT_VOIDED = _grant_event("GrantVoided", {"voidedAmount": {"type": "integer", "minimum": 0}})

EVENT_TYPES: dict[str, EventType] = {
    event.name: event
    for event in (
        ACCOUNT_CREATED,
        ACCOUNT_UPDATED,
        TRANSFER_POSTED,
        TRANSFER_REVERSED,
        ENTRY_POSTED,
        TRANSFER_PENDING,
        TRANSFER_VOIDED,
        TRANSFER_EXPIRED,
        GRANT_CREATED,
        GRANT_ACTIVATED,
        GRANT_EXPIRED,
        GRANT_VOIDED,
    )
}

#: Every topic an event type is published on, in declaration order.
TOPICS: tuple[str, ...] = tuple(dict.fromkeys(event.topic for event in EVENT_TYPES.values()))

#: The envelope every event travels in; outbox_event_row (apps/outbox/sql) builds it.
ENVELOPE_SCHEMA = {
    **_object(
        {
            "eventId": _UUID,
            "type": {"enum": sorted(EVENT_TYPES)},
            "version": {"type": "integer"},
            "occurredAt": _TIME,
            "aggregateType": {"enum": sorted({event.aggregate_type for event in EVENT_TYPES.values()})},
            "aggregateId": _UUID,
            # Who made the change (creditledger/actor.py); absent from events written before it was recorded.
            "actor": _ACTOR,
            "data": {"type": "object"},
        },
        optional=("actor",),
    ),
    # Each type's own version; `data` is checked against the type's data_schema separately.
    "allOf": [
        {
            "if": {"properties": {"type": {"const": event.name}}},
            "then": {"properties": {"version": {"const": event.version}}},
        }
        for event in EVENT_TYPES.values()
    ],
}
