from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
from django.db import connection
from django.db.models import Prefetch

from apps.ledger.models import Entry, Transfer
from creditledger import errors


@dataclass(frozen=True)
class PostedBalance:
    """An account's posted balance after its last entry at or before an instant."""

    balance: int
    #: The sequence of that entry; 0 when there was none yet.
    sequence: int
    #: When that entry was posted; None when there was none yet.
    posted_at: datetime | None


@dataclass(frozen=True)
class PendingTotals:
    """What an account's open holds reserve now: holds past their expiry count for nothing,
    even before the expiry task has released them."""

    debits: int
    credits: int


def account_pending(*, account_id: UUID) -> PendingTotals:
    """Read from the ledger's open holds at statement time, so a hold is counted as soon as
    its POST answered and never once it is posted, voided or past its expiry."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT ledger_pending_debits(%(id)s, statement_timestamp()), "
            "ledger_pending_credits(%(id)s, statement_timestamp())",
            {"id": account_id},
        )
        debits, credits = cursor.fetchone()
    return PendingTotals(debits=debits, credits=credits)


def account_balance_at(*, account_id: UUID, moment: datetime) -> PostedBalance:
    """Read from the journal itself, so it is exact, with one backward probe of the index on
    entry (account_id, created_at). An account's entries are posted under its row lock, each
    at clock_timestamp() after the previous one committed, so their times rise strictly with
    their sequence: the last by time is the last by sequence."""
    latest = (
        Entry.objects.filter(account_id=account_id, created_at__lte=moment)
        .order_by("-created_at")
        .values_list("balance_after", "sequence", "created_at")
        .first()
    )
    return PostedBalance(*latest) if latest else PostedBalance(balance=0, sequence=0, posted_at=None)


def transfer_get(*, transfer_id: UUID) -> Transfer:
    """The transfer with its entries, debit first (as in the API's document)."""
    try:
        return Transfer.objects.prefetch_related(Prefetch("entries", queryset=Entry.objects.order_by("amount"))).get(
            id=transfer_id
        )
    except Transfer.DoesNotExist:
        raise errors.TransferNotFound(f"No transfer {transfer_id}.") from None


def transfer_document(*, transfer_id: UUID) -> dict[str, Any]:
    """The transfer as the API shows it, built by the same SQL as the POST answer."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT ledger_transfer_document(%s)::text", [transfer_id])
        document = cursor.fetchone()[0]
    if document is None:
        raise errors.TransferNotFound(f"No transfer {transfer_id}.")
    return orjson.loads(document)
