from __future__ import annotations

from enum import Enum
from typing import Any, Final
from uuid import UUID

from django.conf import settings
from django.db import IntegrityError, connection

from apps.accounts.events import account_created_message, account_updated_message
from apps.accounts.models import Account, AccountChange, AccountStatus, Currency
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


class DeploymentDefault(Enum):
    """A value not given: the deployment's setting applies."""

    DEFAULT = "default"


DEFAULT: Final = DeploymentDefault.DEFAULT


def account_create(
    *,
    currency: str,
    name: str | None = None,
    external_ref: str | None = None,
    overdraft_limit: int | DeploymentDefault | None = DEFAULT,
    metadata: dict[str, Any] | None = None,
) -> Account:
    """Open an account. `overdraft_limit`: None = unlimited, 0 = never negative, N = down to -N;
    not given: LEDGER_DEFAULT_OVERDRAFT_LIMIT (unlimited unless set)."""
    currency_get(code=currency)
    limit = (
        settings.LEDGER["DEFAULT_OVERDRAFT_LIMIT"]
        if isinstance(overdraft_limit, DeploymentDefault)
        else overdraft_limit
    )

    def work() -> Account:
        account = Account.objects.create(
            currency_id=currency,
            name=name,
            external_ref=external_ref,
            overdraft_limit=limit,
            metadata=metadata or {},
        )
        outbox_messages_add(account_created_message(account))
        return account

    return in_durable_transaction(work)


class Unchanged(Enum):
    """A field account_update is not asked to change (None is a value there)."""

    UNCHANGED = "unchanged"


UNCHANGED: Final = Unchanged.UNCHANGED

#: The account fields a PATCH may change, by their API names.
_API_NAMES = {"name": "name", "metadata": "metadata", "overdraft_limit": "overdraftLimit", "status": "status"}


def account_update(
    *,
    account_id: UUID,
    name: str | Unchanged | None = UNCHANGED,
    metadata: dict[str, Any] | Unchanged = UNCHANGED,
    overdraft_limit: int | Unchanged | None = UNCHANGED,
    status: str | Unchanged = UNCHANGED,
    reason: str | None = None,
    changed_by: str | None = None,
) -> Account:
    """Change an account's name, metadata, overdraft limit or status. Only the fields whose
    value differs are changed, each change is an AccountUpdated event and an AccountChange
    record; asking for the values it already has changes nothing (idempotent).

    The account's row is locked first, as the posting function locks it, so a change and a
    transfer on the same account are serialized: a transfer either commits before a freeze or
    sees the account frozen."""
    asked = {
        field: value
        for field, value in {
            "name": name,
            "metadata": metadata,
            "overdraft_limit": overdraft_limit,
            "status": status,
        }.items()
        if value is not UNCHANGED
    }
    if not asked:
        raise errors.InvalidRequest("Give at least one of name, metadata, overdraftLimit and status.")

    def work() -> Account:
        account = Account.objects.select_for_update().filter(id=account_id).first()
        if account is None:
            raise errors.AccountNotFound(f"No account {account_id}.")
        changes = {field: value for field, value in asked.items() if getattr(account, field) != value}
        if not changes:
            return account
        _account_change_check(account, changes)
        for field, value in changes.items():
            setattr(account, field, value)
        account.save(update_fields=[*changes, "updated_at"])
        api_changes = {_API_NAMES[field]: value for field, value in changes.items()}
        AccountChange.objects.create(
            account=account, changes=api_changes, reason=reason, changed_by=changed_by, created_at=account.updated_at
        )
        outbox_messages_add(account_updated_message(account, changes=api_changes, reason=reason))
        return account

    return in_durable_transaction(work)


def _account_change_check(account: Account, changes: dict[str, Any]) -> None:
    if account.status == AccountStatus.CLOSED:
        raise errors.AccountClosed(f"Account {account.id} is closed; it can no longer change.", accountStatus="closed")
    if changes.get("status") == AccountStatus.CLOSED:
        _account_empty_check(account)
    limit = changes.get("overdraft_limit")
    # Its holds may still post: the limit must cover them too (pending debits, read under the lock).
    committed = account.balance - account.pending_debits
    if limit is not None and committed < -limit:
        raise errors.OverdraftLimitBelowBalance(
            f"Account {account.id} has a balance of {account.balance} and {account.pending_debits} held; its "
            f"overdraft limit cannot go below {-committed}.",
            field="overdraftLimit",
            balance=account.balance,
            minimumOverdraftLimit=-committed,
        )


def _account_grant_ties(account_id: UUID) -> int:
    """How many credit grants (the ledger's credit_grant table) may still book to or from the
    account: its own grants with credits left or to come, and the grants it funds or receives
    the expiries of that can still expire, be voided or release a reservation. Read under the
    account's lock, which every grant writer takes first."""
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT count(*) FROM credit_grant
                WHERE (account_id = %(id)s AND (status = 'scheduled' OR amount - consumed - expired - voided > 0))
                   OR ((funding_account_id = %(id)s OR expire_to_account_id = %(id)s)
                       AND (status IN ('scheduled', 'active', 'exhausted') OR reserved > 0))""",
            {"id": account_id},
        )
        return cursor.fetchone()[0]


def _account_empty_check(account: Account) -> None:
    """Closing needs nothing left on the account, read under its row lock: no posted balance
    and no open hold either way (pending totals; a hold past its expiry counts until the
    expiry task has released it, within seconds)."""
    tied = _account_grant_ties(account.id)
    if tied:
        raise errors.AccountNotEmpty(
            f"Account {account.id} is tied to {tied} credit grants that can still move credits on, onto or back to "
            "it (docs/credits.md); void them or let them run out first.",
            field="status",
            grants=tied,
        )
    if account.balance != 0 or account.pending_debits != 0 or account.pending_credits != 0:
        raise errors.AccountNotEmpty(
            f"Account {account.id} has a balance of {account.balance}, {account.pending_debits} in pending debits "
            f"and {account.pending_credits} in pending credits; only an empty account can close.",
            field="status",
            balance=account.balance,
            pendingDebits=account.pending_debits,
            pendingCredits=account.pending_credits,
        )
