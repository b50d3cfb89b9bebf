"""Why an account has the balance it has (GET /accounts/{id}/explain): its balance at an
instant split into its grants and its unrestricted part, every change since another instant
with the grants each debit drew from, and a few sentences a support agent can read out.

Read from the ledger, exactly. Changes are placed when their effect happened (_ENTRIES_SQL:
a grant's expiry at its expiresAt even if booked a moment later), and what is due but not
booked yet appears as it will be booked, so the balance at `since` plus the changes is always
the balance at `asOf` (ledger_balance_at)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.db import connection

from apps.accounts.selectors import account_get
from apps.ledger.selectors import ledger_now
from creditledger import errors

#: How far back the changes go when `since` is not given.
DEFAULT_WINDOW = timedelta(days=30)
#: At most how many entries one explanation goes through, by default and at most.
DEFAULT_CHANGES = 100
MAX_CHANGES = 1000


@dataclass(frozen=True)
class GrantPart:
    grant_id: UUID
    description: str | None
    priority: int
    effective_at: datetime
    expires_at: datetime | None
    status: str
    granted: int
    consumed: int
    reserved: int
    expired: int
    voided: int
    remaining: int

    @property
    def in_balance(self) -> int:
        """What of the balance is this grant's: its remainder and what holds reserve of it."""
        return 0 if self.status == "scheduled" else self.remaining + self.reserved


@dataclass(frozen=True)
class Change:
    at: datetime
    kind: str
    amount: int
    balance_after: int
    transfer_id: UUID
    description: str | None
    #: For a debit, the grants it drew from ({grantId, description, amount}); for a reversal's
    #: credit, those it restored.
    grants: list[dict[str, Any]] = field(default_factory=list)
    #: For a hold and its void or expiry: what it reserved (-) or released (+); the balance is unchanged.
    held: int = 0
    #: False for a grant's activation or expiry that is due but not booked yet (_unbooked): its
    #: `transfer_id` is then the grant's own funding transfer, as no booking exists yet.
    booked: bool = True


@dataclass(frozen=True)
class Explanation:
    account_id: UUID
    currency: str
    since: datetime
    as_of: datetime
    opening_balance: int
    balance: int
    grants: list[GrantPart]
    unrestricted: int
    changes: list[Change]
    summary: list[str]
    expiring_amount: int | None = None
    expiring_at: datetime | None = None
    #: More changes happened since the `since` asked for than the limit: `since` was moved up.
    limited: bool = False


def account_explanation(
    *,
    account_id: UUID,
    since: datetime | None = None,
    as_of: datetime | None = None,
    limit: int = DEFAULT_CHANGES,
) -> Explanation:
    """The explanation of the balance at `as_of` (default now) since `since` (default
    DEFAULT_WINDOW before). With more than `limit` entries in that window, it covers the
    latest `limit`: `since` moves to just before them (`limited`), so that it still
    reconciles; asking again with asOf at that `since` gives the ones before."""
    account = account_get(account_id=account_id)
    as_of_is_now = as_of is None
    as_of = as_of or ledger_now()
    since = since or as_of - DEFAULT_WINDOW
    if since > as_of:
        raise errors.InvalidRequest("since must not be later than asOf.", field="since")
    with connection.cursor() as cursor:
        cursor.execute(_WINDOW_START_SQL, {"id": account.id, "since": since, "as_of": as_of, "limit": limit})
        start = cursor.fetchone()
        limited = start is not None
        if limited:
            since = start[0]
        cursor.execute(
            "SELECT ledger_balance_at(%(id)s, %(since)s), ledger_balance_at(%(id)s, %(as_of)s)",
            {"id": account.id, "since": since, "as_of": as_of},
        )
        opening, closing = cursor.fetchone()
        grants = _grants_at(cursor, account.id, as_of)
        changes = _changes(
            cursor,
            account.id,
            since,
            as_of,
            {grant.grant_id: grant for grant in grants},
            opening,
            as_of_is_now=as_of_is_now,
        )
    upcoming = [g for g in grants if g.status == "active" and g.expires_at and g.remaining > 0]
    next_expiry = min((g.expires_at for g in upcoming if g.expires_at), default=None)
    explanation = Explanation(
        account_id=account.id,
        currency=account.currency_id,
        since=since,
        as_of=as_of,
        opening_balance=opening,
        balance=closing,
        grants=grants,
        unrestricted=closing - sum(grant.in_balance for grant in grants),
        changes=changes,
        summary=[],
        expiring_amount=sum(g.remaining for g in upcoming if g.expires_at == next_expiry) if next_expiry else None,
        expiring_at=next_expiry,
        limited=limited,
    )
    explanation.summary.extend(_summary(explanation, as_of_is_now=as_of_is_now))
    return explanation


def _grants_at(cursor, account_id: UUID, as_of: datetime) -> list[GrantPart]:
    """Each grant created by `as_of`, as its allocations up to then make it (an expiry booked
    later but due by then counts as expired)."""
    # A grant not changed since `as_of` is as its counters say; only one changed since is
    # recomputed from its allocations up to then (placed at their effective times).
    cursor.execute(
        """SELECT g.id, g.description, g.priority, g.effective_at, g.expires_at, g.status, g.amount, g.updated_at,
                  c.consumed, c.reserved, c.expired, c.voided,
                  CASE WHEN g.status = 'voided' THEN
                      (SELECT min(v.created_at) FROM grant_allocation v WHERE v.grant_id = g.id AND v.kind = 'void')
                  END
             FROM credit_grant g
            CROSS JOIN LATERAL (
                  SELECT g.consumed, g.reserved, g.expired, g.voided WHERE g.updated_at <= %(as_of)s
                  UNION ALL
                  SELECT coalesce(sum(x.amount) FILTER (WHERE x.kind IN ('draw', 'post')), 0)
                           - coalesce(sum(x.amount) FILTER (WHERE x.kind = 'restore'), 0),
                         coalesce(sum(x.amount) FILTER (WHERE x.kind = 'reserve'), 0)
                           - coalesce(sum(x.amount) FILTER (WHERE x.kind IN ('post', 'release')), 0),
                         coalesce(sum(x.amount) FILTER (WHERE x.kind = 'expire'), 0),
                         coalesce(sum(x.amount) FILTER (WHERE x.kind = 'void'), 0)
                    FROM grant_allocation x JOIN transfer t ON t.id = x.transfer_id
                   WHERE x.grant_id = g.id
                     AND coalesce(CASE WHEN t.request_fingerprint = 'ledger'
                                       THEN (t.metadata->>'effectiveAt')::timestamptz END, x.created_at) <= %(as_of)s
                  HAVING g.updated_at > %(as_of)s
             ) c
            WHERE g.account_id = %(id)s AND g.created_at <= %(as_of)s
            ORDER BY g.priority, g.expires_at NULLS LAST, g.created_at, g.id""",
        {"id": account_id, "as_of": as_of},
    )
    parts = []
    for (
        grant_id,
        description,
        priority,
        effective_at,
        expires_at,
        status,
        amount,
        updated_at,
        consumed,
        reserved,
        booked_expired,
        booked_voided,
        first_void,
    ) in cursor.fetchall():
        voided_at = first_void or (updated_at if status == "voided" else None)
        remaining = amount - consumed - reserved - booked_expired - booked_voided
        expired, voided = booked_expired, booked_voided
        if voided_at is not None and voided_at <= as_of:
            # What was left went back (a grant voided before it took effect: all of it).
            state, voided, remaining = "voided", amount - consumed - reserved - booked_expired, 0
        elif effective_at > as_of:
            state = "scheduled"
        elif (
            expires_at is not None
            and expires_at <= as_of
            and (remaining + reserved > 0 or booked_expired > 0 or status == "expired")
        ):
            state, expired, remaining = "expired", booked_expired + remaining, 0
        elif remaining + reserved == 0:
            # Used up, also past its expiry with nothing to expire: as ledger_grant_status says.
            state = "exhausted"
        else:
            state = "active"
        parts.append(
            GrantPart(
                grant_id,
                description,
                priority,
                effective_at,
                expires_at,
                state,
                amount,
                consumed,
                reserved,
                expired,
                voided,
                remaining,
            )
        )
    return parts


# When an entry's effect happened, which is where balances at an instant (ledger_balance_at)
# and the explanation place it: on a grant's account, a scheduled grant's activation at its
# effectiveAt and a grant's expiry at its expiresAt (the booking's `effectiveAt`), although
# booked by the first command or beat run after, since no other entry of the account can come
# in between (that command books them first). Every other entry: when it was posted.
_ENTRIES_SQL = """
    SELECT e.id, e.transfer_id, e.amount, e.sequence,
           CASE WHEN g.id IS NOT NULL AND held.any THEN least(g.effective_at, e.created_at)
                WHEN t.request_fingerprint = 'ledger' AND e.amount < 0 AND t.metadata ? 'effectiveAt'
                     THEN least((t.metadata->>'effectiveAt')::timestamptz, e.created_at)
                ELSE e.created_at
           END,
           t.description, t.reversal_of IS NOT NULL, held.any
      FROM entry e JOIN transfer t ON t.id = e.transfer_id
      LEFT JOIN credit_grant g ON g.transfer_id = e.transfer_id AND g.account_id = e.account_id
     CROSS JOIN LATERAL (SELECT EXISTS (SELECT 1 FROM transfer_hold h WHERE h.transfer_id = t.id) AS any) held
     WHERE e.account_id = %(id)s
       AND (e.created_at > %(since)s AND e.created_at <= %(as_of)s
            OR %(past)s AND e.created_at > %(as_of)s AND e.id IN (
                SELECT x.id FROM credit_grant g JOIN entry x ON x.transfer_id = g.transfer_id
                 WHERE g.account_id = %(id)s AND x.account_id = %(id)s
                UNION
                SELECT a.entry_id FROM grant_allocation a JOIN credit_grant g ON g.id = a.grant_id
                 WHERE g.account_id = %(id)s AND a.kind = 'expire'))
     ORDER BY e.sequence
"""

#: The entry just before the `limit` latest of the window, if the window has more.
_WINDOW_START_SQL = """
    SELECT e.created_at FROM entry e
     WHERE e.account_id = %(id)s AND e.created_at > %(since)s AND e.created_at <= %(as_of)s
     ORDER BY e.created_at DESC OFFSET %(limit)s LIMIT 1
"""


def _changes(
    cursor,
    account_id: UUID,
    since: datetime,
    as_of: datetime,
    grants: dict[UUID, GrantPart],
    opening: int,
    *,
    as_of_is_now: bool,
) -> list[Change]:
    # Only an instant in the past can have bookings posted after it whose effect came before.
    cursor.execute(_ENTRIES_SQL, {"id": account_id, "since": since, "as_of": as_of, "past": not as_of_is_now})
    rows = [row for row in cursor.fetchall() if since < row[4] <= as_of]
    transfer_ids = sorted({row[1] for row in rows})
    cursor.execute(
        """SELECT a.transfer_id, a.entry_id, a.kind, a.amount, g.id, g.description, g.account_id
             FROM grant_allocation a JOIN credit_grant g ON g.id = a.grant_id
            WHERE a.transfer_id = ANY(%s) AND a.entry_id IS NOT NULL ORDER BY a.id""",
        [transfer_ids],
    )
    allocations: dict[UUID, list[tuple]] = defaultdict(list)
    booking_kind: dict[UUID, str] = {}
    for transfer_id, entry_id, kind, amount, grant_id, description, _ in cursor.fetchall():
        allocations[entry_id].append((kind, amount, grant_id, description))
        if kind in ("expire", "void"):
            booking_kind[transfer_id] = "expiry" if kind == "expire" else "void"
    cursor.execute("SELECT transfer_id FROM credit_grant WHERE transfer_id = ANY(%s)", [transfer_ids])
    funding = {row[0] for row in cursor.fetchall()}

    timeline: list[tuple[datetime, int, Change]] = []
    for entry_id, transfer_id, amount, sequence, at, description, is_reversal, was_hold in rows:
        if transfer_id in funding:
            kind = "grant"
        elif transfer_id in booking_kind:
            kind = booking_kind[transfer_id]
        elif is_reversal:
            kind = "reversal"
        elif was_hold:
            kind = "post"
        else:
            kind = "usage" if amount < 0 else "transfer"
        drawn = [
            {"grantId": grant_id, "description": grant_description, "amount": drawn_amount}
            for _, drawn_amount, grant_id, grant_description in allocations.get(entry_id, [])
        ]
        timeline.append((at, sequence, Change(at, kind, amount, 0, transfer_id, description, drawn)))
    timeline.extend(_unbooked(cursor, account_id, since, as_of, grants))
    timeline.extend(_holds(cursor, account_id, since, as_of))
    timeline.sort(key=lambda item: (item[0], item[1]))
    changes = []
    balance = opening
    for _, _, change in timeline:
        balance += change.amount
        changes.append(
            Change(
                change.at,
                change.kind,
                change.amount,
                balance,
                change.transfer_id,
                change.description,
                change.grants,
                change.held,
                change.booked,
            )
        )
    return changes


def _unbooked(
    cursor, account_id: UUID, since: datetime, as_of: datetime, grants: dict[UUID, GrantPart]
) -> list[tuple[datetime, int, Change]]:
    """Grant activations and expiries due in the window and not booked yet, as they will be."""
    cursor.execute(
        """SELECT g.id, g.transfer_id, g.status, g.effective_at, g.expires_at, g.amount,
                  g.amount - g.consumed - g.reserved - g.expired - g.voided, g.description
             FROM credit_grant g
            WHERE g.account_id = %(id)s AND g.status IN ('scheduled', 'active')
              AND (g.status = 'scheduled' AND g.effective_at <= %(as_of)s OR g.expires_at <= %(as_of)s)""",
        {"id": account_id, "as_of": as_of},
    )
    found = []
    # Sort after booked entries at the same instant; activation before expiry.
    for grant_id, transfer_id, status, effective_at, expires_at, amount, remaining, description in cursor.fetchall():
        if status == "scheduled" and since < effective_at <= as_of:
            found.append(
                (effective_at, 2**62, Change(effective_at, "grant", amount, 0, transfer_id, description, booked=False))
            )
        if expires_at is not None and since < expires_at <= as_of:
            left = amount if status == "scheduled" else remaining
            if left:
                found.append(
                    (
                        expires_at,
                        2**62 + 1,
                        Change(
                            expires_at,
                            "expiry",
                            -left,
                            0,
                            transfer_id,
                            _expiry_description(description, grant_id),
                            [{"grantId": grant_id, "description": description, "amount": left}],
                            booked=False,
                        ),
                    )
                )
    return found


def _holds(cursor, account_id: UUID, since: datetime, as_of: datetime) -> list[tuple[datetime, int, Change]]:
    """Holds debiting the account, placed, voided or expired in the window: they move no balance."""
    cursor.execute(
        """SELECT t.id, t.created_at, t.status, t.updated_at, t.expires_at, t.description, sum(h.amount)
             FROM transfer_hold h JOIN transfer t ON t.id = h.transfer_id
            WHERE h.from_account_id = %(id)s
              AND NOT EXISTS (SELECT 1 FROM credit_grant g WHERE g.transfer_id = t.id)
              AND (t.created_at > %(since)s AND t.created_at <= %(as_of)s
                   OR t.status IN ('voided', 'expired') AND t.updated_at > %(since)s)
            GROUP BY t.id""",
        {"id": account_id, "since": since, "as_of": as_of},
    )
    found = []
    for transfer_id, created_at, status, updated_at, expires_at, description, held in cursor.fetchall():
        if since < created_at <= as_of:
            found.append((created_at, -1, Change(created_at, "hold", 0, 0, transfer_id, description, held=-held)))
        ended_at = min(updated_at, expires_at) if status == "expired" and expires_at else updated_at
        if status in ("voided", "expired") and since < ended_at <= as_of:
            found.append(
                (
                    ended_at,
                    -1,
                    Change(
                        ended_at, "void" if status == "voided" else "expiry", 0, 0, transfer_id, description, held=held
                    ),
                )
            )
    return found


def _expiry_description(description: str | None, grant_id: UUID) -> str:
    """As ledger_grant_book describes an expiry transfer."""
    return f'Expiry of grant "{description or grant_id}"'


def _summary(explanation: Explanation, *, as_of_is_now: bool) -> list[str]:
    """Sentences a support agent can read out: the change from `since` to `asOf`, one part per
    kind and description of change (grouped, with how many and when, and for debits the
    grants they drew from), then what the balance is made of."""
    unit = explanation.currency
    end = "now" if as_of_is_now else f"on {_day(explanation.as_of)}"
    groups: dict[tuple[str, str | None], list[Change]] = defaultdict(list)
    for change in explanation.changes:
        if change.amount:
            groups[(change.kind, _subject(change))].append(change)
    parts = [_summary_part(kind, subject, changes) for (kind, subject), changes in groups.items()]
    sentences = [
        f"{explanation.opening_balance} {unit} on {_day(explanation.since)} → {explanation.balance} {unit} {end}"
        + (f": {'; '.join(parts)}." if parts else ": no change.")
    ]
    live = [grant for grant in explanation.grants if grant.in_balance]
    if live:
        held = [
            f'{grant.remaining} of "{grant.description or grant.grant_id}"'
            + (f" (expires {_day(grant.expires_at)})" if grant.expires_at and grant.status == "active" else "")
            + (f" and {grant.reserved} held" if grant.reserved else "")
            for grant in live
        ]
        sentences.append(f"The balance is {', '.join(held)}, and {explanation.unrestricted} unrestricted.")
    if explanation.expiring_at is not None:
        sentences.append(f"Next expiry: {explanation.expiring_amount} on {_day(explanation.expiring_at)}.")
    return sentences


def _subject(change: Change) -> str | None:
    """What a change is about: the grant that expired, was voided or granted, else its description."""
    if change.kind in ("expiry", "void") and change.grants:
        return change.grants[0]["description"] or str(change.grants[0]["grantId"])
    return change.description


def _summary_part(kind: str, subject: str | None, changes: list[Change]) -> str:
    total = sum(change.amount for change in changes)
    label = (
        f'"{subject}"'
        if subject
        else {"usage": "usage", "transfer": "transfer in", "post": "posted hold"}.get(kind, kind)
    )
    verb = {"expiry": " expired", "void": " voided", "grant": " granted", "reversal": " reversed"}.get(kind, "")
    when = (
        f"on {_day(changes[0].at)}"
        if len(changes) == 1
        else f"in {len(changes)} changes, {_day(changes[0].at)}–{_day(changes[-1].at)}"
    )
    sources: dict[str, int] = defaultdict(int)
    if total < 0 and kind not in ("expiry", "void"):
        for change in changes:
            for drawn in change.grants:
                sources[f'"{drawn["description"] or drawn["grantId"]}"'] += drawn["amount"]
            unrestricted = -change.amount - sum(drawn["amount"] for drawn in change.grants)
            if unrestricted > 0:
                sources["unrestricted"] += unrestricted
    if len(sources) == 1:
        source = f" (from {next(iter(sources))})"
    elif sources:
        source = f" (from {', '.join(f'{name} {amount}' for name, amount in sources.items())})"
    else:
        source = ""
    return f"{total:+d} {label}{verb} {when}{source}".replace("+-", "-")


def _day(moment: datetime) -> str:
    return f"{moment:%b} {moment.day}"
