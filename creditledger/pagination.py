"""Keyset pagination: stable under concurrent inserts, O(limit) at any depth."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from django.db.models import QuerySet

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    #: Key of the last item when more follow, else None.
    next_after: Any | None


def keyset_page(queryset: QuerySet, *, field: str, after: Any | None, limit: int, descending: bool) -> Page:
    """Rows of `queryset` ordered by the unique `field`, starting after the value `after`."""
    if after is not None:
        queryset = queryset.filter(**{f"{field}__{'lt' if descending else 'gt'}": after})
    return page_of(list(queryset.order_by(f"-{field}" if descending else field)[: limit + 1]), field=field, limit=limit)


def page_of(rows: list[T], *, field: str, limit: int) -> Page[T]:
    """The page made of up to `limit` + 1 `rows` read in key order: the extra row, if any,
    only says that more follow."""
    if len(rows) <= limit:
        return Page(items=rows, next_after=None)
    rows = rows[:limit]
    return Page(items=rows, next_after=getattr(rows[-1], field))
