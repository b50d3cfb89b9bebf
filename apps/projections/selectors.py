"""Reads served from the projections (CQRS read model)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast
from uuid import UUID

from django.conf import settings
from django.db import connections
from psycopg import sql

from apps.accounts.selectors import account_get
from apps.projections.models import ConsumerOffset, ProjectedBalance, ProjectedTransfer
from apps.projections.routers import READ_ALIAS
from creditledger import errors
from creditledger.pagination import Page, keyset_page, page_of


@dataclass(frozen=True)
class Balance:
    account_id: UUID
    currency: str
    balance: int
    overdraft_limit: int | None
    #: Sequence of the latest entry the projection has applied.
    projected_sequence: int
    #: Sequence of the account's latest entry in the ledger when this was read.
    ledger_sequence: int
    updated_at: datetime | None
    #: What the account's open, unexpired holds reserve, read from the ledger when this was read.
    pending_debits: int
    pending_credits: int
    #: The ledger's posted balance when this was read: the one the overdraft rule checks.
    ledger_balance: int
    #: The next expiry of usable grant credits (apps.ledger.selectors.account_live_state).
    expiring_amount: int | None = field(default=None, kw_only=True)
    expiring_at: datetime | None = field(default=None, kw_only=True)

    @property
    def available(self) -> int | None:
        """What may still be debited, exactly as the overdraft rule sees it now: from the
        ledger's balance and pending debits, never from a read model still catching up (which
        could overstate it); None when the overdraft is unlimited. Once the projection is up
        to date, it is balance - pendingDebits + overdraftLimit."""
        if self.overdraft_limit is None:
            return None
        return self.ledger_balance - self.pending_debits + self.overdraft_limit

    @property
    def up_to_date(self) -> bool:
        return self.projected_sequence >= self.ledger_sequence


def projection_wait(*, account_id: UUID, sequence: int | None) -> None:
    """Return once the projection has applied the account's entry `sequence`; wait at most
    PROJECTIONS['CONSISTENCY_WAIT_SECONDS'], then raise ProjectionNotReady."""
    if not sequence:
        return
    deadline = time.monotonic() + settings.PROJECTIONS["CONSISTENCY_WAIT_SECONDS"]
    pause = 0.005
    while True:
        reached = (
            ProjectedBalance.objects.filter(account_id=account_id).values_list("last_sequence", flat=True).first() or 0
        )
        if reached >= sequence:
            return
        if time.monotonic() >= deadline:
            raise errors.ProjectionNotReady(
                f"The read model has reached entry {reached} of account {account_id}, not yet {sequence}.",
                retryAfter=1,
                projectedSequence=reached,
                requiredSequence=sequence,
            )
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


@dataclass(frozen=True)
class ProjectedPosition:
    """Where the read model has got on an account: its balance after its entry `sequence`."""

    balance: int
    sequence: int
    updated_at: datetime | None


def projected_position(*, account_id: UUID) -> ProjectedPosition:
    with connections[READ_ALIAS].cursor() as cursor:
        cursor.execute(
            "SELECT balance, last_sequence, updated_at FROM projection_balance WHERE account_id = %s", [account_id]
        )
        row = cursor.fetchone()
    balance, sequence, updated_at = row or (0, 0, None)
    return ProjectedPosition(balance=balance, sequence=sequence, updated_at=updated_at if sequence else None)


def projected_balance(
    *,
    account_id: UUID,
    projected: ProjectedPosition,
    currency: str,
    overdraft_limit: int | None,
    ledger_balance: int,
    ledger_sequence: int,
    pending_debits: int,
    pending_credits: int,
    unbooked: int = 0,
    booked_after: int = 0,
    expiring_amount: int | None = None,
    expiring_at: datetime | None = None,
) -> Balance:
    """The posted balance from the read model (`projected`, read first), with what the caller
    then read from the ledger in one statement (apps.ledger.selectors.account_balance_now): the
    account's currency, limit, balance and sequence, and the pending totals of its open holds,
    which are current, as a hold writes no entry a consistency token could wait for.
    `unbooked`: what grants' times change that no booking has yet, added to both balances so
    that no read counts credits past their expiry or before they take effect; `booked_after`:
    what the bookings of those times posted since the read model's entry changed, added to its
    balance, which lacks them while it catches up (an expiry booked, then still counted)."""
    return Balance(
        account_id=account_id,
        currency=currency,
        balance=projected.balance + booked_after + unbooked,
        overdraft_limit=overdraft_limit,
        projected_sequence=projected.sequence,
        ledger_sequence=ledger_sequence,
        updated_at=projected.updated_at,
        pending_debits=pending_debits,
        pending_credits=pending_credits,
        ledger_balance=ledger_balance + unbooked,
        expiring_amount=expiring_amount,
        expiring_at=expiring_at,
    )


@dataclass(frozen=True)
class StatementLine:
    entry_id: UUID
    transfer_id: UUID
    sequence: int
    #: Signed: negative for a debit.
    amount: int
    balance_after: int
    counterparty_id: UUID
    #: Its transfer's description; None until that transfer's TransferPosted is projected.
    description: str | None
    created_at: datetime

    @property
    def side(self) -> str:
        return "credit" if self.amount > 0 else "debit"


def projected_statement_lines(
    *,
    account_id: UUID,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    after_sequence: int | None = None,
    limit: int,
) -> Page[StatementLine]:
    """An account's entries in sequence order, each with its running balance and its
    transfer's description.

    One account's entries are posted under its lock, so their times rise with their
    sequence: a time range is the sequence range between the first entry at or after each
    bound, found with two index probes, and the page is a primary-key range scan whatever
    the depth or width of the range. (The time filter stays on as well.) Plain SQL: a page is
    read on every statement request, and the ORM's query building and model instances cost
    more CPU than the read itself."""
    conditions: list[sql.Composable] = []
    if created_from is not None:
        conditions.append(_STATEMENT_FROM)
    if created_to is not None:
        conditions.append(_STATEMENT_TO)
    if after_sequence is not None:
        conditions.append(sql.SQL("l.sequence > %(after)s"))
    query = _STATEMENT_PAGE.format(sql.SQL("").join(sql.SQL(" AND ") + condition for condition in conditions))
    parameters = {
        "account": account_id,
        "from": created_from,
        "to": created_to,
        "after": after_sequence,
        "limit": limit + 1,
    }
    with connections[READ_ALIAS].cursor() as cursor:
        cursor.execute(query, parameters)
        rows = [StatementLine(*row) for row in cursor.fetchall()]
    return page_of(rows, field="sequence", limit=limit)


_STATEMENT_PAGE = sql.SQL("""
    SELECT l.entry_id, l.transfer_id, l.sequence, l.amount, l.balance_after, l.counterparty_id,
           (SELECT t.description FROM projection_transfer t WHERE t.transfer_id = l.transfer_id), l.created_at
      FROM projection_statement_line l
     WHERE l.account_id = %(account)s{}
     ORDER BY l.sequence
     LIMIT %(limit)s""")


def _first_sequence_at(bound: str) -> sql.Composable:
    """The sequence of the account's first line at or after the instant %(bound)s; past the
    last line when there is none."""
    return sql.SQL("""COALESCE((SELECT f.sequence FROM projection_statement_line f
                                 WHERE f.account_id = %(account)s AND f.created_at >= {bound}
                                 ORDER BY f.created_at, f.sequence LIMIT 1), 9223372036854775807)""").format(
        bound=sql.Placeholder(bound)
    )


_STATEMENT_FROM = sql.SQL("l.created_at >= %(from)s AND l.sequence >= {}").format(_first_sequence_at("from"))
_STATEMENT_TO = sql.SQL("l.created_at < %(to)s AND l.sequence < {}").format(_first_sequence_at("to"))


def projected_transfer_list(
    *,
    account_id: UUID | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    status: str | None = None,
    currency: str | None = None,
    actor: str | None = None,
    after: UUID | None = None,
    limit: int,
) -> Page[ProjectedTransfer]:
    """Transfers, newest first. `created_from` is inclusive, `created_to` exclusive; `account_id`
    and `currency` match any of a transfer's postings; `actor` is who created it."""
    queryset = ProjectedTransfer.objects.all()
    if account_id is not None:
        account_get(account_id=account_id)
        queryset = queryset.filter(account_ids__contains=[str(account_id)])
    if created_from is not None:
        queryset = queryset.filter(created_at__gte=created_from)
    if created_to is not None:
        queryset = queryset.filter(created_at__lt=created_to)
    if status:
        queryset = queryset.filter(status=status)
    if currency:
        queryset = queryset.filter(postings__contains=[{"currency": currency}])
    if actor:
        queryset = queryset.filter(actor=actor)
    return keyset_page(queryset, field="transfer_id", after=after, limit=limit, descending=True)


def projection_applied_positions(*, consumer_group: str, topics: Iterable[str]) -> dict[str, dict[str, int]]:
    """The relay position of the last message `consumer_group` applied from each partition of
    `topics`, as JSON holds it: {topic: {partition: position}}. A partition it has applied
    nothing from (with a position) is left out."""
    positions: dict[str, dict[str, int]] = {}
    rows = ConsumerOffset.objects.filter(
        consumer_group=consumer_group, topic__in=list(topics), relay_position__isnull=False
    ).values_list("topic", "partition", "relay_position")
    for topic, partition, position in rows:
        positions.setdefault(topic, {})[str(partition)] = cast(int, position)  # relay_position__isnull=False
    return positions
