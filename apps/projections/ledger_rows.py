"""The projection rows recomputed from the ledger, the source of truth: one SELECT per
projection, shared by the replay (replay/), the audit (verification.py) and the consumer's
gap healing (projector.py). Each takes the parameter `%(applied_at)s`."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple
from uuid import UUID

from psycopg import sql

#: The database alias of the ledger, where these rows are read.
LEDGER_ALIAS = "default"


class BalanceRow(NamedTuple):
    account_id: UUID
    currency: str
    balance: int
    last_sequence: int
    updated_at: datetime
    applied_at: datetime | None


class LineRow(NamedTuple):
    account_id: UUID
    sequence: int
    entry_id: UUID
    transfer_id: UUID
    counterparty_id: UUID
    currency: str
    amount: int
    balance_after: int
    created_at: datetime
    applied_at: datetime | None


class TransferRow(NamedTuple):
    transfer_id: UUID
    from_account_id: UUID | None  # these four are NULL for a transfer of several postings
    to_account_id: UUID | None
    amount: int | None
    currency: str | None
    status: str
    idempotency_key: str
    metadata: Any  # JSON, as text
    description: str | None
    reversal_of: UUID | None
    reversed_amount: Decimal
    postings: Any  # JSON, as text
    entries: Any  # JSON, as text
    actor: str
    created_at: datetime
    applied_at: datetime | None


class GrantRow(NamedTuple):
    grant_id: UUID
    account_id: UUID
    status: str
    document: Any  # JSON, as text
    updated_at: datetime
    applied_at: datetime | None


BALANCE_COLUMNS = BalanceRow._fields
LINE_COLUMNS = LineRow._fields
TRANSFER_COLUMNS = TransferRow._fields
GRANT_COLUMNS = GrantRow._fields
#: Fields of a grant event's document that describe the event, not the grant (docs/events.md):
#: the ledger's row has none of them, and nothing compares them.
GRANT_EVENT_FIELDS = ("expiredAmount", "voidedAmount")

_EVERY_ROW = sql.SQL("TRUE")


def column_list(columns: tuple[str, ...], table: str | None = None) -> sql.Composed:
    """`a, b, c` or, with `table`, `t.a, t.b, t.c`, each name quoted."""
    return sql.SQL(", ").join(sql.Identifier(*((table, column) if table else (column,))) for column in columns)


def balance_rows_sql(where: sql.Composable = _EVERY_ROW) -> sql.Composed:
    """projection_balance rows (BALANCE_COLUMNS) of the ledger's accounts `a` matching `where`.
    An account without entries has no posting time: it gets its own updated_at."""
    return sql.SQL("""
        SELECT a.id, a.currency, a.balance, a.last_sequence, coalesce(e.created_at, a.updated_at),
               %(applied_at)s::timestamptz
          FROM account a
          LEFT JOIN entry e ON e.account_id = a.id AND e.sequence = a.last_sequence
         WHERE {where}""").format(where=where)


def line_rows_sql(where: sql.Composable = _EVERY_ROW) -> sql.Composed:
    """projection_statement_line rows (LINE_COLUMNS) of the ledger's entries `e` matching `where`."""
    return sql.SQL("""
        SELECT e.account_id, e.sequence, e.id, e.transfer_id, e.counterparty_id, e.currency, e.amount,
               e.balance_after, e.created_at, %(applied_at)s::timestamptz
          FROM entry e
         WHERE {where}""").format(where=where)


def transfer_rows_sql(where: sql.Composable = _EVERY_ROW) -> sql.Composed:
    """projection_transfer rows (TRANSFER_COLUMNS) of the ledger's transfers `t` matching `where`.

    The postings and the entries are the arrays the TransferPosted event carries: postings in
    order, each from its debit entry (for a hold not posted, as held: as its TransferPending,
    TransferVoided or TransferExpired carries them; the amount likewise); entries posting by
    posting, debit first, each as ledger_entry_event_data() writes it (apps/ledger/sql/0004_post_transfer.sql): the same
    jsonb value. Not by calling that function: PostgreSQL cannot inline it (it is IMMUTABLE
    around STABLE calls), and a row to jsonb is cheaper than jsonb_build_object; this halves
    the cost of the largest table. test_replay checks the two stay equal.
    """
    return sql.SQL("""
        SELECT t.id, t.from_account_id, t.to_account_id,
               CASE WHEN t.posting_count = 1
                    THEN coalesce((SELECT -e.amount FROM entry e WHERE e.transfer_id = t.id AND e.amount < 0), t.amount)
               END,
               t.currency, t.status, t.idempotency_key, t.metadata, t.description,
               t.reversal_of, t.reversed_amount,
               coalesce((SELECT jsonb_agg(jsonb_build_object('from', e.account_id, 'to', e.counterparty_id,
                                                             'amount', -e.amount, 'currency', e.currency)
                                          ORDER BY e.posting_index)
                           FROM entry e WHERE e.transfer_id = t.id AND e.amount < 0),
                        (SELECT jsonb_agg(jsonb_build_object('from', h.from_account_id, 'to', h.to_account_id,
                                                             'amount', h.amount, 'currency', h.currency)
                                          ORDER BY h.posting_index)
                           FROM transfer_hold h WHERE h.transfer_id = t.id), '[]'::jsonb),
               coalesce((SELECT jsonb_agg(to_jsonb(posted) - 'postingIndex'
                                          ORDER BY posted."postingIndex", posted.amount)
                           FROM (SELECT e.id AS "entryId", e.transfer_id AS "transferId", e.account_id AS "accountId",
                                        e.counterparty_id AS "counterpartyId", e.currency, e.amount, e.sequence,
                                        e.balance_after AS "balanceAfter", ledger_iso(e.created_at) AS "createdAt",
                                        e.posting_index AS "postingIndex"
                                   FROM entry e WHERE e.transfer_id = t.id) posted), '[]'::jsonb),
               t.actor, t.created_at, %(applied_at)s::timestamptz
          FROM transfer t
         WHERE {where}""").format(where=where)


def grant_rows_sql(where: sql.Composable = _EVERY_ROW) -> sql.Composed:
    """projection_grant rows (GRANT_COLUMNS) of the ledger's grants `g` matching `where`: each
    grant as it was booked at its latest change, the document a Grant* event written then
    carries (ledger_grant_document at the grant's updated_at, without the event's own
    GRANT_EVENT_FIELDS). Read at the grant's own updated_at, not now, the document (status,
    remaining, expired) does not move with the clock: an expiry not booked yet is not in it,
    as it is in no event yet.

    The Grant* events come with the grant's lifecycle changes only (created, activated,
    expired, voided); a draw, a hold's reservation, its post or release, or a reversal's
    restore changes the counters (and active/exhausted) without one. For a grant changed so
    since its latest event, this row is ahead of what the consumer built: verification.py
    compares such a pair on what the events keep current.
    """
    return sql.SQL("""
        SELECT g.id, g.account_id, d.document->>'status', d.document, g.updated_at, %(applied_at)s::timestamptz
          FROM credit_grant g
         CROSS JOIN LATERAL (SELECT ledger_grant_document(g.id, g.updated_at) AS document) d
         WHERE {where}""").format(where=where)
