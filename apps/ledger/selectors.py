from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast
from uuid import UUID

import orjson
from django.db import connection
from django.db.models import Prefetch, QuerySet, Sum

from apps.ledger.models import Entry, IdempotencyRecord, Transfer, TransferStatus
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


@dataclass(frozen=True)
class TransferCommand:
    """Something done to a transfer after it was created: the post or void that settled its
    hold, the hold's expiry, or a reversal of it. Amounts are per currency, in minor units."""

    #: "post", "void", "expiry" or "reverse".
    command: str
    #: The command's own idempotency key (a reversal's is the reversal transfer's); None for an
    #: expiry, which the expiry task or a late post or void does without one.
    idempotency_key: str | None
    #: When it took effect.
    at: datetime
    #: What a post posted, or what a reversal moved back; empty for a void or an expiry.
    moved: dict[str, int]
    #: What a post (of less than was held), a void or an expiry released from the hold.
    released: dict[str, int]
    #: The reversal transfer, for a reversal.
    reversal_id: UUID | None = None


def transfer_commands(*, transfer: Transfer) -> list[TransferCommand]:
    """What was done to `transfer` after it was created, in the order it happened: the command
    that settled its hold (post or void, under its own idempotency key) or the hold's expiry,
    then its reversals. Commands that were refused are not among them: their idempotency
    records keep the refusal, not the transfer (a key has one outcome)."""
    held = _by_currency(transfer.holds.values("currency").annotate(total=Sum("amount")))
    posted = _by_currency(
        Entry.objects.filter(transfer=transfer, amount__lt=0).values("currency").annotate(total=-Sum("amount"))
    )
    released = {currency: amount - posted.get(currency, 0) for currency, amount in held.items()}
    released = {currency: amount for currency, amount in released.items() if amount > 0}
    commands = [
        TransferCommand(
            command=cast(str, command),  # not null: filtered on
            idempotency_key=key,
            at=transfer.updated_at,
            moved=posted if command == "post" else {},
            released=released,
        )
        for key, command in IdempotencyRecord.objects.filter(transfer=transfer, command__isnull=False)
        .order_by("created_at")
        .values_list("key", "command")
    ]
    if transfer.status == TransferStatus.EXPIRED:
        commands.append(
            TransferCommand(command="expiry", idempotency_key=None, at=transfer.updated_at, moved={}, released=held)
        )
    reversals: dict[UUID, dict[str, Any]] = {}
    for row in (
        Entry.objects.filter(transfer__reversal_of=transfer, amount__lt=0)
        .values("transfer_id", "transfer__idempotency_key", "transfer__created_at", "currency")
        .annotate(total=-Sum("amount"))
        .order_by("transfer__created_at", "transfer_id", "currency")
    ):
        key, at = row["transfer__idempotency_key"], row["transfer__created_at"]
        reversal = reversals.setdefault(row["transfer_id"], {"key": key, "at": at, "moved": {}})
        reversal["moved"][row["currency"]] = row["total"]
    return commands + [
        TransferCommand(
            command="reverse",
            idempotency_key=reversal["key"],
            at=reversal["at"],
            moved=reversal["moved"],
            released={},
            reversal_id=reversal_id,
        )
        for reversal_id, reversal in reversals.items()
    ]


def _by_currency(rows: QuerySet[Any, Any]) -> dict[str, int]:
    """{currency: total} from rows of a `.values("currency").annotate(total=...)` query."""
    return {row["currency"]: row["total"] for row in rows.order_by("currency")}


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
