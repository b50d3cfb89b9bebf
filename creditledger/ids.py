"""Time-ordered UUIDv7 identifiers: unique without coordination, index-friendly, sortable by creation."""

from uuid import UUID

from uuid_utils.compat import uuid7


def new_id() -> UUID:
    return uuid7()
