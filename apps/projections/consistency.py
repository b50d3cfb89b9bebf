"""Read-your-writes tokens. A token names, per account a write touched, the entry sequence
the projection must have reached for a read to include that write."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from uuid import UUID

import orjson

from creditledger import errors

TOKEN_HEADER = "Consistency-Token"


def consistency_token_for(positions: Iterable[tuple[UUID, int]]) -> str:
    payload = {str(account_id): sequence for account_id, sequence in positions}
    return base64.urlsafe_b64encode(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).decode().rstrip("=")


def consistency_token_parse(raw: str) -> dict[UUID, int]:
    invalid = errors.InvalidRequest(
        "Not a valid consistency token; pass back `consistencyToken` from a write.", field="consistencyToken"
    )
    if len(raw) > 1024:
        raise invalid
    try:
        payload = orjson.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        positions = {UUID(account_id): sequence for account_id, sequence in payload.items()}
    except (binascii.Error, ValueError, AttributeError, TypeError, orjson.JSONDecodeError):
        raise invalid from None
    if not all(isinstance(sequence, int) and not isinstance(sequence, bool) and sequence >= 0 for sequence in positions.values()):
        raise invalid
    return positions
