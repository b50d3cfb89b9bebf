from __future__ import annotations

from uuid import UUID

from django.db.models import Prefetch

from apps.ledger.models import Entry, Transfer
from creditledger import errors


def transfer_get(*, transfer_id: UUID) -> Transfer:
    """The transfer with its entries, debit first: the order transfer_create returns them in,
    so that a replay answers exactly what the first request did."""
    try:
        return Transfer.objects.prefetch_related(Prefetch("entries", queryset=Entry.objects.order_by("amount"))).get(
            id=transfer_id
        )
    except Transfer.DoesNotExist:
        raise errors.TransferNotFound(f"No transfer {transfer_id}.") from None
