from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from django.db.models import Q

from apps.accounts.selectors import account_get
from apps.ledger.models import Entry, Transfer
from creditledger import errors
from creditledger.pagination import Page, keyset_page


@dataclass(frozen=True)
class Balance:
    account_id: UUID
    currency: str
    balance: int
    overdraft_limit: int | None
    last_sequence: int
    updated_at: datetime

    @property
    def available(self) -> int | None:
        """What may still be debited; None when the overdraft is unlimited."""
        return None if self.overdraft_limit is None else self.balance + self.overdraft_limit


def account_balance(*, account_id: UUID) -> Balance:
    account = account_get(account_id=account_id)
    return Balance(
        account_id=account.id,
        currency=account.currency_id,
        balance=account.balance,
        overdraft_limit=account.overdraft_limit,
        last_sequence=account.last_sequence,
        updated_at=account.updated_at,
    )


def transfer_get(*, transfer_id: UUID) -> Transfer:
    try:
        return Transfer.objects.prefetch_related("entries").get(id=transfer_id)
    except Transfer.DoesNotExist:
        raise errors.TransferNotFound(f"No transfer {transfer_id}.") from None


def transfer_list(
    *,
    account_id: UUID | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    status: str | None = None,
    currency: str | None = None,
    after: UUID | None = None,
    limit: int,
) -> Page[Transfer]:
    """Transfers, newest first. `created_from` is inclusive, `created_to` exclusive."""
    queryset = Transfer.objects.prefetch_related("entries")
    if account_id is not None:
        account_get(account_id=account_id)
        queryset = queryset.filter(Q(from_account_id=account_id) | Q(to_account_id=account_id))
    if created_from is not None:
        queryset = queryset.filter(created_at__gte=created_from)
    if created_to is not None:
        queryset = queryset.filter(created_at__lt=created_to)
    if status:
        queryset = queryset.filter(status=status)
    if currency:
        queryset = queryset.filter(currency_id=currency)
    return keyset_page(queryset, field="id", after=after, limit=limit, descending=True)


def statement_lines(
    *,
    account_id: UUID,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    after_sequence: int | None = None,
    limit: int,
) -> Page[Entry]:
    """An account's entries in sequence order, each with its running balance."""
    account_get(account_id=account_id)
    queryset = Entry.objects.filter(account_id=account_id)
    if created_from is not None:
        queryset = queryset.filter(created_at__gte=created_from)
    if created_to is not None:
        queryset = queryset.filter(created_at__lt=created_to)
    return keyset_page(queryset, field="sequence", after=after_sequence, limit=limit, descending=False)
