"""Serializer fields shared by the APIs: strict money, strings and idempotency keys, bounded
metadata, opaque cursors."""

from __future__ import annotations

import base64
import binascii
import math
import re
from datetime import UTC, datetime
from typing import Any, overload
from uuid import UUID

import orjson
from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

MAX_MINOR_UNITS = 2**63 - 1


@extend_schema_field({"type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_MINOR_UNITS})
class MinorUnitsField(serializers.Field):
    """A positive amount in minor units. Only JSON integers: no floats, strings or booleans."""

    default_error_messages = {
        "invalid": "Must be an integer number of minor units (for example 1234 for 12.34 USD).",
        "min_value": "Must be at least 1.",
        "max_value": f"Must be at most {MAX_MINOR_UNITS} (2^63-1).",
    }

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        if data < 1:
            self.fail("min_value")
        if data > MAX_MINOR_UNITS:
            self.fail("max_value")
        return data

    def to_representation(self, value: int) -> int:
        return int(value)


# drf-spectacular adds the "null" itself, from allow_null.
@extend_schema_field({"type": "integer", "format": "int64", "minimum": 0, "maximum": MAX_MINOR_UNITS})
class OverdraftLimitField(serializers.Field):
    """How far below zero the balance may go: null = unlimited, 0 = never negative."""

    default_error_messages = {
        "invalid": "Must be null or a non-negative integer number of minor units.",
        "max_value": f"Must be at most {MAX_MINOR_UNITS} (2^63-1).",
    }

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("allow_null", True)  # null is a value here: unlimited overdraft
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> int | None:
        if data is None:
            return None
        if isinstance(data, bool) or not isinstance(data, int) or data < 0:
            self.fail("invalid")
        if data > MAX_MINOR_UNITS:
            self.fail("max_value")
        return data

    def to_representation(self, value: int | None) -> int | None:
        return value


@extend_schema_field({"type": "object", "additionalProperties": True, "example": {"plan": "pro"}})
class MetadataField(serializers.Field):
    """A JSON object of the client's own, at most LEDGER['METADATA_MAX_BYTES'] bytes."""

    default_error_messages = {
        "not_object": "Must be a JSON object.",
        "too_large": "Must be at most {max_bytes} bytes of JSON.",
        "unstorable": (
            "Must be JSON that PostgreSQL can store: integers within 64 bits, finite numbers, no NUL characters "
            "or lone surrogates, nested at most 254 levels deep."
        ),
    }

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            self.fail("not_object")
        max_bytes = settings.LEDGER["METADATA_MAX_BYTES"]
        try:
            # orjson refuses integers beyond 64 bits, lone surrogates and nesting past 254.
            size = len(orjson.dumps(data))
        except orjson.JSONEncodeError:
            self.fail("unstorable")
        if _has_unstorable_scalar(data):
            self.fail("unstorable")
        if size > max_bytes:
            self.fail("too_large", max_bytes=max_bytes)
        return data

    def to_representation(self, value: dict[str, Any]) -> dict[str, Any]:
        return value


def _has_unstorable_scalar(value: Any) -> bool:
    """Infinity (a JSON number like 1e400) and NUL characters, which jsonb refuses."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_unstorable_scalar(key) or _has_unstorable_scalar(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_has_unstorable_scalar(item) for item in value)
    return False


# C0 and C1 control characters (Unicode category Cc), NUL included.
_CONTROL_CHARACTERS = r"\x00-\x1f\x7f-\x9f"
_CONTROL_CHARACTER = re.compile(f"[{_CONTROL_CHARACTERS}]")


@extend_schema_field({"type": "string", "pattern": f"^[^{_CONTROL_CHARACTERS}]*$"})
class StrictCharField(serializers.CharField):
    """A JSON string without control characters. DRF's CharField also takes 42 or true and
    stores "42" or "True"; PostgreSQL refuses NUL in text, and the others have no place in
    a name or a reference. Surrounding spaces are still trimmed, as DRF does."""

    default_error_messages = {
        "not_a_string": "Must be a string.",
        "control_character": "Must not contain control characters (U+0000-U+001F, U+007F-U+009F).",
    }

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("not_a_string")
        if _CONTROL_CHARACTER.search(data):
            self.fail("control_character")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """A JSON true or false. DRF's BooleanField also takes "yes", "0" or 1, and a client that
    sends "false" as a string must not get an atomic batch it did not ask for (or the reverse)."""

    default_error_messages = {"invalid": "Must be true or false."}

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


# Visible ASCII, with spaces only between other characters: what an HTTP header carries
# unchanged, so the header and the body field take exactly the same keys.
_IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e](?:[\x20-\x7e]{0,253}[\x21-\x7e])?$"
IDEMPOTENCY_KEY_SCHEMA = {"type": "string", "minLength": 1, "maxLength": 255, "pattern": _IDEMPOTENCY_KEY_PATTERN}
_IDEMPOTENCY_KEY = re.compile(_IDEMPOTENCY_KEY_PATTERN)


@extend_schema_field(IDEMPOTENCY_KEY_SCHEMA)
class IdempotencyKeyField(serializers.Field):
    """An idempotency key, in the body or (validated by the same field) the Idempotency-Key
    header. Refused rather than trimmed: a key is compared byte for byte."""

    default_error_messages = {
        "invalid": "Must be a string of 1-255 printable ASCII characters, with no space at either end.",
    }

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str) or not _IDEMPOTENCY_KEY.fullmatch(data):
            self.fail("invalid")
        return data

    def to_representation(self, value: str) -> str:
        return value


_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:[Zz]|[+-]\d{2}:\d{2})$")


@extend_schema_field({"type": "string", "format": "date-time", "example": "2026-11-23T23:32:20Z"})
class InstantField(serializers.Field):
    """An instant as RFC 3339 writes it: date, time and a UTC offset (`Z` or `+01:00`). DRF's
    DateTimeField also takes a bare date or a time without offset, which name no instant;
    the server's time zone would decide."""

    default_error_messages = {
        "invalid": "Must be an RFC 3339 date-time with a UTC offset, for example 2026-11-23T23:32:20Z.",
    }

    def to_internal_value(self, data: Any) -> datetime:
        if not isinstance(data, str) or not _RFC3339.match(data):
            self.fail("invalid")
        try:
            return datetime.fromisoformat(data.upper()).astimezone(UTC)
        except (ValueError, OverflowError):  # 2026-02-30; 0001-01-01T00:00:00+01:00 is before year 1 in UTC
            self.fail("invalid")

    def to_representation(self, value: datetime) -> str:
        return serializers.DateTimeField().to_representation(value)


def instant_text(moment: datetime) -> str:
    """An aware datetime as DRF's DateTimeField writes it (ISO 8601 in the current time zone,
    UTC as `Z`), for answers built without a serializer. Nothing activates another time zone
    than TIME_ZONE, so the current one is the default one, which is cached (the current one
    is a thread-local lookup per value)."""
    text = moment.astimezone(timezone.get_default_timezone()).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


class UUIDStringField(serializers.UUIDField):
    """A UUID written as a JSON string. DRF's UUIDField also takes a JSON integer (or a
    boolean) as the UUID's 128-bit value, which turns a typo into some other id."""

    def to_internal_value(self, data: Any) -> UUID:
        if not isinstance(data, str):
            self.fail("invalid", value=data)
        return super().to_internal_value(data)


CURRENCY_CODE = re.compile(r"^[A-Z][A-Z0-9_]{2,15}$")


class CurrencyCodeField(serializers.RegexField):
    # A class attribute, because RegexField hands the message to its validator in __init__.
    default_error_messages = {
        "invalid": "Must be 3-16 uppercase letters, digits or underscores, starting with a letter.",
    }

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault(
            "help_text", "ISO 4217 code (USD) or a custom credit unit (CREDITS): 3-16 uppercase letters, digits or _."
        )
        super().__init__(CURRENCY_CODE, **kwargs)


@extend_schema_field({"type": "string", "minLength": 1, "maxLength": 512})
class CursorField(serializers.Field):
    """An opaque pagination cursor wrapping the last key of the previous page (a UUID, a
    sequence number or a currency code, as `position_type` says)."""

    default_error_messages = {"invalid": "Not a valid cursor; pass back `nextCursor` from a previous page."}

    def __init__(self, *, position_type: type[UUID] | type[int] | type[str], **kwargs: Any) -> None:
        self.position_type = position_type
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> UUID | int | str:
        if not isinstance(data, str) or len(data) > 512:
            self.fail("invalid")
        try:
            decoded = orjson.loads(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))
            position = decoded["after"]
            if self.position_type is int:
                if isinstance(position, bool) or not isinstance(position, int):
                    self.fail("invalid")
                return position
            if not isinstance(position, str):
                self.fail("invalid")
            if self.position_type is str:
                if not CURRENCY_CODE.match(position):
                    self.fail("invalid")
                return position
            return UUID(position)
        except (binascii.Error, ValueError, TypeError, KeyError, orjson.JSONDecodeError):
            self.fail("invalid")

    def to_representation(self, value: UUID | int | str) -> str:
        return encode_cursor(value)


@overload
def encode_cursor(position: UUID | int | str) -> str: ...
@overload
def encode_cursor(position: None) -> None: ...
@overload
def encode_cursor(position: UUID | int | str | None) -> str | None: ...
def encode_cursor(position: UUID | int | str | None) -> str | None:
    if position is None:
        return None
    after = position if isinstance(position, int) else str(position)
    return base64.urlsafe_b64encode(orjson.dumps({"after": after})).decode().rstrip("=")
