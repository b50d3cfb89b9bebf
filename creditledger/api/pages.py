"""Keyset-paginated list answers: `{"data": [...], "nextCursor": ...}`."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers
from rest_framework.response import Response

from creditledger.api.fields import encode_cursor
from creditledger.pagination import Page


def page_serializer(item: type[serializers.Serializer], name: str) -> type[serializers.Serializer]:
    """The schema of a page of `item`s."""
    return type(
        name,
        (serializers.Serializer,),
        {
            "data": item(many=True),
            "nextCursor": serializers.CharField(
                allow_null=True, help_text="Pass as `cursor` for the next page; null on the last page."
            ),
        },
    )


def page_response(page: Page, item: type[serializers.Serializer], **envelope: Any) -> Response:
    """The answer for one page of `item`s; `envelope` adds fields before `data`."""
    return Response(
        {
            **envelope,
            "data": item(page.items, many=True).data,
            "nextCursor": encode_cursor(page.next_after),
        }
    )
