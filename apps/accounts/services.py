from __future__ import annotations

from typing import Any

from django.db import IntegrityError

from apps.accounts.events import account_created_message
from apps.accounts.models import Account, Currency
from apps.accounts.selectors import currency_get
from apps.outbox.services import outbox_messages_add
from creditledger import errors
from creditledger.db import in_durable_transaction


def currency_create(*, code: str, scale: int, name: str) -> Currency:
    """Register a custom credit unit (or an ISO currency we do not ship)."""

    def work() -> Currency:
        return Currency.objects.create(code=code, scale=scale, name=name)

    try:
        return in_durable_transaction(work)
    except IntegrityError:
        raise errors.Conflict(f"Currency {code} already exists.", field="code") from None


def account_create(
    *,
    currency: str,
    name: str | None = None,
    external_ref: str | None = None,
    overdraft_limit: int | None = None,
    metadata: dict[str, Any] | None = None,
) -> Account:
    """Open an account. `overdraft_limit`: None = unlimited, 0 = never negative, N = down to -N."""
    currency_get(code=currency)

    def work() -> Account:
        account = Account.objects.create(
            currency_id=currency,
            name=name,
            external_ref=external_ref,
            overdraft_limit=overdraft_limit,
            metadata=metadata or {},
        )
        outbox_messages_add(account_created_message(account))
        return account

    return in_durable_transaction(work)
