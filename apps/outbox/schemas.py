"""The consumer's check of the event contract declared in registry.py: the envelope, then the
type's data, before it applies anything. fastjsonschema compiles each schema to Python: about
10x faster than interpreting it, which matters at thousands of events/s."""

from __future__ import annotations

from typing import Any

import fastjsonschema

from apps.outbox.registry import ENVELOPE_SCHEMA, EVENT_TYPES

_ENVELOPE_VALIDATOR = fastjsonschema.compile(ENVELOPE_SCHEMA)
_DATA_VALIDATORS = {name: fastjsonschema.compile(event.data_schema) for name, event in EVENT_TYPES.items()}


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
