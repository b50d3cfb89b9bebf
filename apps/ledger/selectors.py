from __future__ import annotations

from typing import Any
from uuid import UUID

import orjson
from django.db import connection
from django.db.models import Prefetch

from apps.ledger.models import Entry, Transfer
from creditledger import errors


def transfer_get(*, transfer_id: UUID) -> Transfer:
    """The transfer with its entries, debit first (as in the API's document)."""
    try:
        return Transfer.objects.prefetch_related(Prefetch("entries", queryset=Entry.objects.order_by("amount"))).get(
            id=transfer_id
        )
    except Transfer.DoesNotExist:
        raise errors.TransferNotFound(f"No transfer {transfer_id}.") from None


def transfer_document(*, transfer_id: UUID) -> dict[str, Any]:
    """The transfer as the API shows it, built by the same SQL as the POST answer."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT ledger_transfer_document(%s)::text", [transfer_id])
        document = cursor.fetchone()[0]
    if document is None:
        raise errors.TransferNotFound(f"No transfer {transfer_id}.")
    return orjson.loads(document)
