from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast
from uuid import UUID

import orjson
from django.db import connection
from django.db.models import Prefetch, QuerySet, Sum
from django.db.models.expressions import RawSQL
from psycopg import sql

from apps.ledger.models import CreditGrant, Entry, IdempotencyRecord, Transfer, TransferStatus
from creditledger import errors


@dataclass(frozen=True)
class PostedBalance:
    """An account's posted balance after its last entry at or before an instant."""

    balance: int
    #: The sequence of that entry; 0 when there was none yet.
    sequence: int
    #: When that entry was posted; None when there was none yet.
    posted_at: datetime | None


def account_balance_at(*, account_id: UUID, moment: datetime) -> PostedBalance:
    """The balance as the account's grants' times make it (ledger_balance_at: a grant's
    expiry or activation counts from its time, even if booked after), and its last entry at
    or before the instant. Read from the journal itself, so it is exact, in one statement:
    one backward probe of the index on entry (account_id, created_at), and
    ledger_balance_at's (the same probe, and its grants' bookings by account). An account's
    entries are posted under its row lock, each after the previous one committed, so their
    times rise strictly with their sequence: the last by time is the last by sequence."""
    with connection.cursor() as cursor:
        cursor.execute(
            sql.SQL("SELECT {} FROM account a {} WHERE a.id = %(id)s").format(_AT_COLUMNS, _AT_JOIN),
            {"id": account_id, "at": moment},
        )
        row = cursor.fetchone()
    return _posted_balance(row) if row else PostedBalance(balance=0, sequence=0, posted_at=None)


# Account `a`'s balance at %(at)s and its last entry at or before then, as columns and their join.
_AT_COLUMNS = sql.SQL("ledger_balance_at(a.id, %(at)s), latest.sequence, latest.created_at")
_AT_JOIN = sql.SQL("""
      LEFT JOIN LATERAL (SELECT e.sequence, e.created_at FROM entry e
                          WHERE e.account_id = a.id AND e.created_at <= %(at)s
                          ORDER BY e.created_at DESC, e.sequence DESC LIMIT 1) AS latest ON true""")


def _posted_balance(row: tuple) -> PostedBalance:
    balance, sequence, posted_at = row
    return PostedBalance(balance=balance, sequence=sequence or 0, posted_at=posted_at)


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
    #: Who ran it (creditledger/actor.py); None for an expiry, which is not recorded.
    actor: str | None
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
            actor=actor,
        )
        for key, command, actor in IdempotencyRecord.objects.filter(transfer=transfer, command__isnull=False)
        .order_by("created_at")
        .values_list("key", "command", "actor")
    ]
    if transfer.status == TransferStatus.EXPIRED:
        commands.append(
            TransferCommand(
                command="expiry", idempotency_key=None, at=transfer.updated_at, moved={}, released=held, actor=None
            )
        )
    reversals: dict[UUID, dict[str, Any]] = {}
    for row in (
        Entry.objects.filter(transfer__reversal_of=transfer, amount__lt=0)
        .values("transfer_id", "transfer__idempotency_key", "transfer__created_at", "transfer__actor", "currency")
        .annotate(total=-Sum("amount"))
        .order_by("transfer__created_at", "transfer_id", "currency")
    ):
        key, at = row["transfer__idempotency_key"], row["transfer__created_at"]
        reversal = reversals.setdefault(
            row["transfer_id"], {"key": key, "at": at, "actor": row["transfer__actor"], "moved": {}}
        )
        reversal["moved"][row["currency"]] = row["total"]
    return commands + [
        TransferCommand(
            command="reverse",
            idempotency_key=reversal["key"],
            at=reversal["at"],
            moved=reversal["moved"],
            released={},
            actor=reversal["actor"],
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


def ledger_now() -> datetime:
    """The ledger's clock (sql/0015_grants.sql ledger_now): what grants' times are compared with."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT ledger_now()")
        return cursor.fetchone()[0]


@dataclass(frozen=True)
class AccountLiveState:
    """What of an account changes with the clock, read from the ledger at ledger_now(): its
    open, unexpired holds; what its grants' times change that no booking has yet (credits
    taken effect: `unbooked` > 0 and out of the pending credits; remainders past their
    expiry: < 0); and the next expiry of credits still usable."""

    now: datetime
    pending_debits: int
    pending_credits: int
    unbooked: int
    expiring_amount: int | None
    expiring_at: datetime | None


# What account `a`'s holds keep pending now, as the balance counts it (debits, credits), and the
# joins it needs: a hold past its expiry no longer counts, even before the expiry task releases it.
_PENDING_NOW_COLUMNS = sql.SQL(
    "ledger_pending_debits(a.id, n.at), ledger_pending_credits(a.id, n.at) + u.pending_credits"
)
_PENDING_NOW_JOINS = sql.SQL("""
     CROSS JOIN (SELECT ledger_now() AS at) n
     CROSS JOIN LATERAL ledger_grants_unbooked(a.id, n.at) u""")
# What of account `a` changes with the clock (AccountLiveState), as columns and their joins.
_LIVE_COLUMNS = sql.SQL("n.at, {}, u.balance, x.amount, x.expires_at").format(_PENDING_NOW_COLUMNS)
_LIVE_JOINS = sql.SQL("""{}
      LEFT JOIN LATERAL (
           SELECT g.expires_at, sum(g.amount - g.consumed - g.reserved - g.expired - g.voided) AS amount
             FROM credit_grant g
            WHERE g.account_id = a.id AND g.status = 'active' AND g.expires_at > n.at
              AND g.amount - g.consumed - g.reserved - g.expired - g.voided > 0
            GROUP BY g.expires_at ORDER BY g.expires_at LIMIT 1) x ON true""").format(_PENDING_NOW_JOINS)


def account_live_state(*, account_id: UUID) -> AccountLiveState:
    """In one statement, a few index probes by account (none of them on grants it has not)."""
    with connection.cursor() as cursor:
        cursor.execute(
            sql.SQL("SELECT {} FROM account a {} WHERE a.id = %(id)s").format(_LIVE_COLUMNS, _LIVE_JOINS),
            {"id": account_id},
        )
        row = cursor.fetchone()
    if row is None:
        raise errors.AccountNotFound(f"No account {account_id}.")
    return _live_state(row)


def accounts_pending_now(*, account_ids: list[UUID]) -> dict[UUID, tuple[int, int]]:
    """What the accounts' holds keep pending now, as (debits, credits): the balance's figures
    (_PENDING_NOW_COLUMNS), where the account row's totals count a hold past its expiry until
    the expiry task releases it. One statement for a page of accounts."""
    if not account_ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            sql.SQL("SELECT a.id, {} FROM unnest(%s::uuid[]) AS a(id) {}").format(
                _PENDING_NOW_COLUMNS, _PENDING_NOW_JOINS
            ),
            [account_ids],
        )
        return {account_id: (debits, credits) for account_id, debits, credits in cursor.fetchall()}


def _live_state(row: tuple) -> AccountLiveState:
    now, debits, credits, unbooked, expiring_amount, expiring_at = row
    return AccountLiveState(
        now=now,
        pending_debits=debits,
        pending_credits=credits,
        unbooked=unbooked,
        expiring_amount=int(expiring_amount) if expiring_amount is not None else None,
        expiring_at=expiring_at,
    )


@dataclass(frozen=True)
class BalanceNow:
    """An account's currency, overdraft limit, posted balance and latest sequence, with what
    of it changes with the clock now (account_live_state), and what the grants' bookings
    posted after a given sequence changed (booked_after)."""

    currency: str
    overdraft_limit: int | None
    balance: int
    sequence: int
    live: AccountLiveState
    booked_after: int


_ACCOUNT_COLUMNS = sql.SQL("a.currency, a.overdraft_limit, a.balance, a.last_sequence")

# What account `a`'s entries after sequence %(after)s that book its grants' times (a scheduled
# grant's activation, an expiry) changed: the bookings that moved what account_live_state's
# `unbooked` counted into the entries (the three terms of ledger_balance_at, for entries).
_BOOKED_AFTER_COLUMN = sql.SQL("""
       coalesce((SELECT sum(e.amount) FROM entry e
                  WHERE e.account_id = a.id AND e.sequence > %(after)s
                    AND (EXISTS (SELECT 1 FROM credit_grant g
                                  WHERE g.transfer_id = e.transfer_id AND g.account_id = a.id
                                    AND EXISTS (SELECT 1 FROM transfer_hold h WHERE h.transfer_id = g.transfer_id))
                         OR EXISTS (SELECT 1 FROM grant_allocation x WHERE x.entry_id = e.id AND x.kind = 'expire'))),
                0)::bigint""")


def account_balance_now(*, account_id: UUID, booked_after: int) -> BalanceNow:
    """GET /accounts/{id}/balance's ledger part in one statement: the account row,
    account_live_state's probes, and what its grants' bookings after entry `booked_after`
    changed (the read model's balance at that entry lacks them)."""
    with connection.cursor() as cursor:
        cursor.execute(
            sql.SQL("SELECT {}, {}, {} FROM account a {} WHERE a.id = %(id)s").format(
                _ACCOUNT_COLUMNS, _LIVE_COLUMNS, _BOOKED_AFTER_COLUMN, _LIVE_JOINS
            ),
            {"id": account_id, "after": booked_after},
        )
        row = cursor.fetchone()
    if row is None:
        raise errors.AccountNotFound(f"No account {account_id}.")
    currency, limit, balance, sequence, *live, booked = row
    return BalanceNow(
        currency=currency,
        overdraft_limit=limit,
        balance=balance,
        sequence=sequence,
        live=_live_state(tuple(live)),
        booked_after=booked,
    )


@dataclass(frozen=True)
class BalanceAt:
    """An account's balance at an instant (account_balance_at) with what of it changes with
    the clock now (account_live_state), its currency and overdraft limit, and what its holds
    kept pending at that instant."""

    currency: str
    overdraft_limit: int | None
    posted: PostedBalance
    live: AccountLiveState
    pending_debits: int
    pending_credits: int


def account_balance_as_of(*, account_id: UUID, moment: datetime) -> BalanceAt:
    """GET /accounts/{id}/balance?asOf= in one statement: account_balance_at's probes,
    account_live_state's, and the holds pending at the instant (ledger_pending_at); for an
    instant not yet past, the holds pending now."""
    with connection.cursor() as cursor:
        cursor.execute(
            sql.SQL(
                "SELECT a.currency, a.overdraft_limit, {}, {}, held.debits, held.credits "
                "FROM account a {} {} CROSS JOIN LATERAL ledger_pending_at(a.id, %(at)s) held WHERE a.id = %(id)s"
            ).format(_AT_COLUMNS, _LIVE_COLUMNS, _LIVE_JOINS, _AT_JOIN),
            {"id": account_id, "at": moment},
        )
        row = cursor.fetchone()
    if row is None:
        raise errors.AccountNotFound(f"No account {account_id}.")
    currency, limit, *rest = row
    live = _live_state(tuple(rest[3:9]))
    past = moment < live.now
    return BalanceAt(
        currency=currency,
        overdraft_limit=limit,
        posted=_posted_balance(tuple(rest[:3])),
        live=live,
        pending_debits=rest[9] if past else live.pending_debits,
        pending_credits=rest[10] if past else live.pending_credits,
    )


def grant_get(*, grant_id: UUID) -> dict[str, Any]:
    """The grant as the API shows it now, with its history: every allocation, oldest first."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT ledger_grant_document(%s, ledger_now())::text", [grant_id])
        document = cursor.fetchone()[0]
        if document is None:
            raise errors.GrantNotFound(f"No grant {grant_id}.")
        cursor.execute(
            """SELECT a.kind, a.amount, a.transfer_id, a.entry_id, a.created_at, t.description
                 FROM grant_allocation a JOIN transfer t ON t.id = a.transfer_id
                WHERE a.grant_id = %s ORDER BY a.id""",
            [grant_id],
        )
        history = [
            {
                "kind": kind,
                "amount": amount,
                "transferId": transfer_id,
                "entryId": entry_id,
                "createdAt": created_at,
                "description": description,
            }
            for kind, amount, transfer_id, entry_id, created_at, description in cursor.fetchall()
        ]
    return {**orjson.loads(document), "history": history}


def grant_list(*, account_id: UUID, status: str | None = None) -> list[dict[str, Any]]:
    """The account's grants as the API shows them now, in burn order (the order its debits draw
    from them), those it can no longer draw from last; `status` as ledger_grant_status says."""
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT d.doc::text FROM (
                   SELECT ledger_grant_document(g.id, n.at) AS doc, g.priority, g.expires_at, g.created_at, g.id
                     FROM credit_grant g CROSS JOIN (SELECT ledger_now() AS at) n
                    WHERE g.account_id = %(id)s) d
                WHERE %(status)s::text IS NULL OR d.doc->>'status' = %(status)s
                ORDER BY d.doc->>'status' NOT IN ('scheduled', 'active'), d.priority, d.expires_at NULLS LAST,
                         d.created_at, d.id""",
            {"id": account_id, "status": status},
        )
        return [orjson.loads(row[0]) for row in cursor.fetchall()]


def grants_now() -> QuerySet[CreditGrant]:
    """Grants with `status_now` and `remaining_now`: as the API shows them at the ledger's clock
    (ledger_grant_status, ledger_grant_document), so a grant past its expiry reads `expired`
    with nothing remaining even in the moments before its expiry is booked."""
    return CreditGrant.objects.annotate(
        status_now=RawSQL('ledger_grant_status("credit_grant".*, ledger_now())', ()),
        remaining_now=RawSQL(
            """(ledger_grant_document("credit_grant"."id", ledger_now())->>'remaining')::bigint""", ()
        ),
    )
