from __future__ import annotations

from uuid import UUID

from apps.ledger.models import Transfer
from creditledger import errors


def transfer_get(*, transfer_id: UUID) -> Transfer:
    try:
        return Transfer.objects.prefetch_related("entries").get(id=transfer_id)
    except Transfer.DoesNotExist:
        raise errors.TransferNotFound(f"No transfer {transfer_id}.") from None
