"""The API's input validation (input_validate: one serializer per class, shared) and its JSON
renderer (orjson) answer exactly what DRF's own would: the hot path got cheaper
(benchmarks/README.md, "A lean hot path"), not different."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from django.utils.translation import gettext_lazy
from rest_framework import renderers as drf_renderers
from rest_framework import serializers

from apps.api.transfers import MultiLegTransferInputSerializer, SingleTransferInputSerializer
from creditledger.api.renderers import JSONRenderer
from creditledger.api.serializers import input_validate

A = "0193a1b2-0000-7000-8000-00000000000a"
B = "0193a1b2-0000-7000-8000-00000000000b"
SINGLE = {"from": A, "to": B, "amount": 5, "currency": "USD", "idempotencyKey": "k-1"}
POSTING = {"from": A, "to": B, "amount": 5, "currency": "USD"}

BODIES: list[Any] = [
    SINGLE,
    {**SINGLE, "metadata": {"plan": "pro"}, "description": "Top-up"},
    {**SINGLE, "pending": True, "timeoutSeconds": 60},
    {**SINGLE, "amount": "5"},
    {**SINGLE, "amount": 0, "currency": "usd", "to": 42},
    {**SINGLE, "amuont": 5},
    {**SINGLE, "timeoutSeconds": 60},
    {**SINGLE, "pending": True, "expiresAt": "2026-11-23T23:32:20Z", "timeoutSeconds": 60},
    {key: value for key, value in SINGLE.items() if key != "currency"},
    {"postings": [POSTING, {**POSTING, "currency": "CREDITS"}], "idempotencyKey": "k-2"},
    {"postings": [POSTING, {**POSTING, "amount": -1}], "idempotencyKey": "k-2"},
    {"postings": [], "idempotencyKey": "k-2"},
    {"postings": [POSTING], **POSTING, "idempotencyKey": "k-2"},
    {},
    None,
    [],
    "transfer",
    1234,
]


def _validate(serializer_class: type[serializers.Serializer], data: Any) -> tuple[str, Any]:
    try:
        return "valid", input_validate(serializer_class, data)
    except serializers.ValidationError as exc:
        return "invalid", exc.detail


def _validate_as_drf(serializer_class: type[serializers.Serializer], data: Any) -> tuple[str, Any]:
    serializer = serializer_class(data=data)
    if serializer.is_valid():
        return "valid", serializer.validated_data
    return "invalid", serializers.ValidationError(serializer.errors).detail


@pytest.mark.parametrize("serializer_class", [SingleTransferInputSerializer, MultiLegTransferInputSerializer])
@pytest.mark.parametrize("data", BODIES)
def test_input_is_validated_as_a_serializer_built_for_it_validates_it(serializer_class, data):
    # ErrorDetail compares its code too.
    assert _validate(serializer_class, data) == _validate_as_drf(serializer_class, data)


def test_threads_validating_at_once_each_get_the_answer_to_their_own_input():
    bodies = [
        {**SINGLE, "amount": amount} if amount % 3 else {**SINGLE, "amount": str(amount)} for amount in range(1, 601)
    ]

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda body: _validate(SingleTransferInputSerializer, body), bodies))

    assert answers == [_validate_as_drf(SingleTransferInputSerializer, body) for body in bodies]


RENDERED: list[Any] = [
    {"transferId": A, "amount": 2**63 - 1, "postings": [POSTING], "entries": [], "reversalOf": None},
    {"metadata": {"note": "café ☕", "line": "a\u2028b\u2029c", "list": [1, 2.5, -0.0, None, True, {}]}},
    {"at": datetime(2026, 12, 1, 4, 5, 6, 789012, tzinfo=UTC), "price": Decimal("12.34"), "id": UUID(A)},
    {"title": gettext_lazy("Not found"), 1: "an integer key"},
    {"total": 2**70},
    [],
    "text",
]


@pytest.mark.parametrize("data", RENDERED)
@pytest.mark.parametrize("accepted", ["application/json", "application/json; indent=4", None])
def test_an_answer_is_rendered_byte_for_byte_as_drfs_renderer_renders_it(data, accepted):
    assert JSONRenderer().render(data, accepted) == drf_renderers.JSONRenderer().render(data, accepted)


def test_no_answer_renders_as_an_empty_body():
    assert JSONRenderer().render(None) == b""
