from apps.ledger.models import Entry, Transfer
from apps.outbox.services import OutboxMessage
from apps.outbox.topics import ENTRY_TOPIC, TRANSFER_TOPIC


def transfer_posted_message(transfer: Transfer, entries: list[Entry]) -> OutboxMessage:
    return OutboxMessage(
        topic=TRANSFER_TOPIC,
        key=str(transfer.id),
        event_type="TransferPosted",
        aggregate_type="transfer",
        occurred_at=transfer.created_at,
        data={
            "transferId": str(transfer.id),
            "idempotencyKey": transfer.idempotency_key,
            "from": str(transfer.from_account_id),
            "to": str(transfer.to_account_id),
            "amount": transfer.amount,
            "currency": transfer.currency_id,
            "status": transfer.status,
            "metadata": transfer.metadata,
            "createdAt": transfer.created_at.isoformat(),
            "entries": [_entry_data(entry) for entry in entries],
        },
    )


def entry_posted_message(entry: Entry) -> OutboxMessage:
    """Keyed by account, so one account's entries stay in sequence order on one partition."""
    return OutboxMessage(
        topic=ENTRY_TOPIC,
        key=str(entry.account_id),
        event_type="EntryPosted",
        aggregate_type="account",
        occurred_at=entry.created_at,
        data=_entry_data(entry),
    )


def _entry_data(entry: Entry) -> dict:
    return {
        "entryId": str(entry.id),
        "transferId": str(entry.transfer_id),
        "accountId": str(entry.account_id),
        "counterpartyId": str(entry.counterparty_id),
        "currency": entry.currency_id,
        "amount": entry.amount,
        "sequence": entry.sequence,
        "balanceAfter": entry.balance_after,
        "createdAt": entry.created_at.isoformat(),
    }
