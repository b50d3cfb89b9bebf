"""Posting transfers: the one place that moves money."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import orjson
from django.db import connection
from django.utils import timezone

from apps.accounts.models import Account, AccountStatus
from apps.accounts.selectors import currency_get
from apps.ledger.events import entry_posted_message, transfer_posted_message
from apps.ledger.models import Entry, IdempotencyRecord, Transfer, TransferStatus
from apps.ledger.selectors import transfer_get
from apps.outbox.services import outbox_messages_add
from creditledger import errors, metrics
from creditledger.db import in_durable_transaction

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# Errors whose outcome is stored against the idempotency key and replayed. Input that fails
# validation before the service runs (400) is not stored, as with Stripe.
_STORED_ERRORS = (errors.BusinessRuleViolation, errors.NotFound)


@dataclass(frozen=True)
class TransferOutcome:
    transfer: Transfer
    replayed: bool


def request_fingerprint(
    *, from_account_id: UUID, to_account_id: UUID, amount: int, currency: str, metadata: dict[str, Any]
) -> str:
    canonical = orjson.dumps(
        {"from": str(from_account_id), "to": str(to_account_id), "amount": amount, "currency": currency,
         "metadata": metadata},
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(canonical).hexdigest()


def transfer_create(
    *,
    idempotency_key: str,
    from_account_id: UUID,
    to_account_id: UUID,
    amount: int,
    currency: str,
    metadata: dict[str, Any] | None = None,
) -> TransferOutcome:
    """Move `amount` minor units from one account to another, exactly once per key.

    The first outcome for a key (the transfer, or the business error that refused it) is
    stored in the same transaction and returned again for the same request; the same key
    with a different request raises IdempotencyKeyReused.
    """
    metadata = metadata or {}
    if amount < 1 or amount > INT64_MAX:
        raise errors.InvalidRequest("amount must be between 1 and 2^63-1 minor units.", field="amount")
    currency_get(code=currency)
    fingerprint = request_fingerprint(
        from_account_id=from_account_id, to_account_id=to_account_id, amount=amount, currency=currency,
        metadata=metadata,
    )

    def work() -> TransferOutcome | errors.LedgerError:
        if not _claim_idempotency_key(idempotency_key, fingerprint):
            return _replay(idempotency_key, fingerprint)
        try:
            transfer = _post(
                idempotency_key=idempotency_key, fingerprint=fingerprint, from_account_id=from_account_id,
                to_account_id=to_account_id, amount=amount, currency=currency, metadata=metadata,
            )
        except _STORED_ERRORS as error:
            # Nothing was written before the error: only the outcome is stored.
            IdempotencyRecord.objects.filter(key=idempotency_key).update(error=error.as_outcome())
            return error
        IdempotencyRecord.objects.filter(key=idempotency_key).update(transfer=transfer)
        return TransferOutcome(transfer=transfer, replayed=False)

    outcome = in_durable_transaction(work)
    if isinstance(outcome, errors.LedgerError):
        if not outcome.replayed:
            metrics.TRANSFERS_FAILED.labels(reason=outcome.code).inc()
        raise outcome
    if not outcome.replayed:
        metrics.TRANSFERS_POSTED.labels(currency=currency).inc()
    return outcome


def _claim_idempotency_key(key: str, fingerprint: str) -> bool:
    """True if this transaction now owns `key`. A concurrent owner makes this wait until it
    commits (then False) or rolls back (then True)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO idempotency_record (key, request_fingerprint, created_at) VALUES (%s, %s, now()) "
            "ON CONFLICT (key) DO NOTHING",
            [key, fingerprint],
        )
        return cursor.rowcount == 1


def _replay(key: str, fingerprint: str) -> TransferOutcome | errors.LedgerError:
    record = IdempotencyRecord.objects.get(key=key)
    if record.request_fingerprint != fingerprint:
        return errors.IdempotencyKeyReused(
            f"Idempotency key '{key}' was first used with a different request; use a new key for a new transfer.",
            field="idempotencyKey",
        )
    if record.transfer_id is not None:
        return TransferOutcome(transfer=transfer_get(transfer_id=record.transfer_id), replayed=True)
    error = errors.LedgerError.from_outcome(record.error)
    error.replayed = True
    return error


def _post(
    *,
    idempotency_key: str,
    fingerprint: str,
    from_account_id: UUID,
    to_account_id: UUID,
    amount: int,
    currency: str,
    metadata: dict[str, Any],
) -> Transfer:
    if from_account_id == to_account_id:
        raise errors.SameAccount("A transfer needs two different accounts.", field="to")

    # Lock both accounts in id order, so opposite transfers cannot deadlock.
    locked = {
        account.id: account
        for account in Account.objects.select_for_update().filter(id__in=[from_account_id, to_account_id]).order_by("id")
    }
    source = _require(locked, from_account_id, "from")
    destination = _require(locked, to_account_id, "to")
    for account, field in ((source, "from"), (destination, "to")):
        if account.currency_id != currency:
            raise errors.CurrencyMismatch(
                f"Account {account.id} holds {account.currency_id}, not {currency}.",
                field=field, accountCurrency=account.currency_id,
            )
        if account.status != AccountStatus.ACTIVE:
            raise errors.AccountNotActive(f"Account {account.id} is {account.status}.", field=field, accountStatus=account.status)

    source_balance = source.balance - amount
    destination_balance = destination.balance + amount
    if source.overdraft_limit is not None and source_balance < -source.overdraft_limit:
        available = source.balance + source.overdraft_limit
        raise errors.InsufficientFunds(
            f"Account {source.id} has {available} available; the transfer needs {amount}.",
            field="amount", available=available, requested=amount,
        )
    if source_balance < INT64_MIN or destination_balance > INT64_MAX:
        raise errors.BalanceOutOfRange("The transfer would take a balance beyond the 64-bit range.", field="amount")

    now = timezone.now()
    transfer = Transfer.objects.create(
        idempotency_key=idempotency_key, request_fingerprint=fingerprint, from_account=source, to_account=destination,
        amount=amount, currency_id=currency, status=TransferStatus.POSTED, metadata=metadata, created_at=now,
        updated_at=now,
    )
    entries = Entry.objects.bulk_create([
        Entry(transfer=transfer, account=source, counterparty=destination, currency_id=currency, amount=-amount,
              sequence=source.last_sequence + 1, balance_after=source_balance, created_at=now),
        Entry(transfer=transfer, account=destination, counterparty=source, currency_id=currency, amount=amount,
              sequence=destination.last_sequence + 1, balance_after=destination_balance, created_at=now),
    ])
    for account, entry in ((source, entries[0]), (destination, entries[1])):
        Account.objects.filter(id=account.id).update(
            balance=entry.balance_after, last_sequence=entry.sequence, updated_at=now
        )
    outbox_messages_add(transfer_posted_message(transfer, entries), *map(entry_posted_message, entries))
    return transfer_get(transfer_id=transfer.id)


def _require(locked: dict[UUID, Account], account_id: UUID, field: str) -> Account:
    try:
        return locked[account_id]
    except KeyError:
        raise errors.AccountNotFound(f"No account {account_id}.", field=field) from None
