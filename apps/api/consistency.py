"""Read-your-writes. A write answers with a consistency token naming, per account it touched,
the entry sequence the read model must have reached to include that write; a read that passes
the token back waits for that sequence, and answers 503 projection_not_ready if it does not
come within PROJECTIONS['CONSISTENCY_WAIT_SECONDS']."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any
from uuid import UUID

import orjson
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers
from rest_framework.request import Request

from apps.projections.selectors import projection_wait
from creditledger import errors
from creditledger.api.serializers import StrictInputSerializer

TOKEN_HEADER = "Consistency-Token"  # noqa: S105 (a header name, not a secret)

#: The longest token a read accepts: one that still fits a request header or query string. A
#: token names ~45 characters per account, so this covers writes on about 70 accounts.
TOKEN_MAX_LENGTH = 4096

TOKEN_HEADER_PARAMETER = OpenApiParameter(
    TOKEN_HEADER, str, OpenApiParameter.HEADER, required=False, description="Same as consistencyToken."
)


class ConsistencyQuerySerializer(StrictInputSerializer):
    consistencyToken = serializers.CharField(
        required=False,
        allow_blank=True,
        help_text="From a POST /transfers answer: wait (at most the server's PROJECTION_CONSISTENCY_WAIT_SECONDS) "
        "until the read model includes that write, else 503.",
    )


def consistency_token_for(positions: Mapping[UUID, int]) -> str:
    payload = {str(account_id): sequence for account_id, sequence in positions.items()}
    return base64.urlsafe_b64encode(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).decode().rstrip("=")


def consistency_token_parse(raw: str) -> dict[UUID, int]:
    invalid = errors.InvalidRequest(
        "Not a valid consistency token; pass back `consistencyToken` from a write.", field="consistencyToken"
    )
    if len(raw) > TOKEN_MAX_LENGTH:
        raise invalid
    try:
        payload = orjson.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        positions = {UUID(account_id): sequence for account_id, sequence in payload.items()}
    except (binascii.Error, ValueError, AttributeError, TypeError, orjson.JSONDecodeError):
        raise invalid from None
    if not all(
        isinstance(sequence, int) and not isinstance(sequence, bool) and sequence >= 0
        for sequence in positions.values()
    ):
        raise invalid
    return positions


def read_your_writes(request: Request, params: dict[str, Any], *, account_id: UUID) -> None:
    """Wait until the read model includes every write on `account_id` that the caller's token
    (the consistencyToken parameter or the Consistency-Token header) names."""
    raw = params.get("consistencyToken") or request.headers.get(TOKEN_HEADER)
    if not raw:
        return
    projection_wait(account_id=account_id, sequence=consistency_token_parse(raw).get(account_id))
