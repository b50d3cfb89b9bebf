from apps.accounts.models import Account
from apps.outbox.registry import ACCOUNT_CREATED
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
