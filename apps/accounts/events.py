from apps.accounts.models import Account
from apps.outbox.services import OutboxMessage
from apps.outbox.topics import ACCOUNT_TOPIC


def account_created_message(account: Account) -> OutboxMessage:
    return OutboxMessage(
        topic=ACCOUNT_TOPIC,
        key=str(account.id),
        event_type="AccountCreated",
        aggregate_type="account",
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
