from __future__ import annotations

from uuid import UUID

from django.db import connection

from apps.accounts.models import Account, Currency
from creditledger import errors
from creditledger.pagination import DEFAULT_LIMIT, Page, keyset_page


def currency_get(*, code: str) -> Currency:
    try:
        return Currency.objects.get(code=code)
    except Currency.DoesNotExist:
        raise errors.UnknownCurrency(
            f"Unknown currency '{code}'. GET /currencies lists the registered ones.", field="currency"
        ) from None


def currency_list(*, after: str | None = None, limit: int = DEFAULT_LIMIT) -> Page[Currency]:
    """Currencies in code order, a page at a time."""
    return keyset_page(Currency.objects.all(), field="code", after=after, limit=limit, descending=False)


def account_get(*, account_id: UUID) -> Account:
    try:
        return Account.objects.get(id=account_id)
    except Account.DoesNotExist:
        raise errors.AccountNotFound(f"No account {account_id}.") from None


def account_currency_get(*, account_id: UUID) -> str:
    """The account's currency, for the reads that need no more of it: one index probe, without
    the ORM's query building and model instance (a statement page is read often)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT currency FROM account WHERE id = %s", [account_id])
        row = cursor.fetchone()
    if row is None:
        raise errors.AccountNotFound(f"No account {account_id}.")
    return row[0]


def account_list(
    *,
    currency: str | None = None,
    status: str | None = None,
    external_ref: str | None = None,
    after: UUID | None = None,
    limit: int,
) -> Page[Account]:
    """Accounts, newest first."""
    queryset = Account.objects.all()
    if currency:
        queryset = queryset.filter(currency_id=currency)
    if status:
        queryset = queryset.filter(status=status)
    if external_ref:
        queryset = queryset.filter(external_ref=external_ref)
    return keyset_page(queryset, field="id", after=after, limit=limit, descending=True)
