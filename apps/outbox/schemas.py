"""The event contract: one JSON Schema (draft 7) per event type, checked by the consumer before
it applies anything. docs/events.md documents the same shapes. fastjsonschema compiles each
schema to Python: about 10x faster than interpreting it, which matters at thousands of events/s."""

from __future__ import annotations

from typing import Any

import fastjsonschema

_UUID = {"type": "string", "pattern": "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"}
_INT64 = {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1}
_TIME = {"type": "string", "minLength": 20}
_CURRENCY = {"type": "string", "pattern": "^[A-Z][A-Z0-9_]{2,15}$"}


def _object(properties: dict[str, Any], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": [name for name in properties if name not in optional],
    }


_ENTRY = _object({
    "entryId": _UUID, "transferId": _UUID, "accountId": _UUID, "counterpartyId": _UUID, "currency": _CURRENCY,
    "amount": _INT64, "sequence": {"type": "integer", "minimum": 1}, "balanceAfter": _INT64, "createdAt": _TIME,
})

DATA_SCHEMAS: dict[str, dict[str, Any]] = {
    "AccountCreated": _object({
        "accountId": _UUID, "currency": _CURRENCY, "name": {"type": ["string", "null"]},
        "externalRef": {"type": ["string", "null"]}, "status": {"enum": ["active", "frozen", "closed"]},
        "overdraftLimit": {"type": ["integer", "null"], "minimum": 0}, "metadata": {"type": "object"},
    }),
    "TransferPosted": _object({
        "transferId": _UUID, "idempotencyKey": {"type": "string"}, "from": _UUID, "to": _UUID,
        "amount": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}, "currency": _CURRENCY,
        "status": {"enum": ["posted"]}, "metadata": {"type": "object"}, "createdAt": _TIME,
        "entries": {"type": "array", "items": _ENTRY, "minItems": 2},
    }),
    "EntryPosted": _ENTRY,
}

ENVELOPE_SCHEMA = _object({
    "eventId": _UUID,
    "type": {"enum": sorted(DATA_SCHEMAS)},
    "version": {"const": 1},
    "occurredAt": _TIME,
    "aggregateType": {"enum": ["account", "transfer"]},
    "aggregateId": _UUID,
    "data": {"type": "object"},
})

_ENVELOPE_VALIDATOR = fastjsonschema.compile(ENVELOPE_SCHEMA)
_DATA_VALIDATORS = {event_type: fastjsonschema.compile(schema) for event_type, schema in DATA_SCHEMAS.items()}


class InvalidEvent(ValueError):
    """The message is not an event of our contract; it belongs in the dead-letter topic."""


def event_validate(envelope: Any) -> dict[str, Any]:
    """Return `envelope` if it is a valid event of a known type and version, else raise InvalidEvent."""
    try:
        _ENVELOPE_VALIDATOR(envelope)
        _DATA_VALIDATORS[envelope["type"]](envelope["data"])
    except fastjsonschema.JsonSchemaValueException as error:
        raise InvalidEvent(error.message) from None
    return envelope
