from typing import Any

from apps.accounts.models import Account
from apps.outbox.registry import ACCOUNT_CREATED, ACCOUNT_UPDATED
from apps.outbox.services import OutboxMessage


def account_created_message(account: Account) -> OutboxMessage:
    return OutboxMessage(
        event_type=ACCOUNT_CREATED,
        key=str(account.id),
        occurred_at=account.created_at,
        data={
            "accountId": str(account.id),
            "currency": account.currency_id,
            "name": account.name,
            "externalRef": account.external_ref,
            "status": account.status,
            "overdraftLimit": account.overdraft_limit,
            "metadata": account.metadata,
        },
    )


def account_updated_message(account: Account, *, changes: dict[str, Any], reason: str | None) -> OutboxMessage:
    """`changes`: the changed fields with their new values, named as in the API."""
    data = {"accountId": str(account.id), "changedFields": list(changes), "status": account.status, **changes}
    if reason is not None:
        data["reason"] = reason
    return OutboxMessage(event_type=ACCOUNT_UPDATED, key=str(account.id), occurred_at=account.updated_at, data=data)
