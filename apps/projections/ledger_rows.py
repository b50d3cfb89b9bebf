"""The projection rows recomputed from the ledger, the source of truth: one SELECT per
projection, shared by the replay (replay.py), the audit (verification.py) and the
consumer's gap healing (projector.py). Each takes the parameter `%(applied_at)s`."""

from __future__ import annotations

BALANCE_COLUMNS = ("account_id", "currency", "balance", "last_sequence", "updated_at", "applied_at")
LINE_COLUMNS = ("account_id", "sequence", "entry_id", "transfer_id", "counterparty_id", "currency", "amount",
                "balance_after", "created_at", "applied_at")
TRANSFER_COLUMNS = ("transfer_id", "from_account_id", "to_account_id", "amount", "currency", "status",
                    "idempotency_key", "metadata", "entries", "created_at", "applied_at")


def balance_rows_sql(where: str = "TRUE") -> str:
    """projection_balance rows (BALANCE_COLUMNS) of the ledger's accounts `a` matching `where`.
    An account without entries has no posting time: it gets its own updated_at."""
    return f"""
        SELECT a.id, a.currency, a.balance, a.last_sequence, coalesce(e.created_at, a.updated_at),
               %(applied_at)s::timestamptz
          FROM account a
          LEFT JOIN entry e ON e.account_id = a.id AND e.sequence = a.last_sequence
         WHERE {where}"""


def line_rows_sql(where: str = "TRUE") -> str:
    """projection_statement_line rows (LINE_COLUMNS) of the ledger's entries `e` matching `where`."""
    return f"""
        SELECT e.account_id, e.sequence, e.id, e.transfer_id, e.counterparty_id, e.currency, e.amount,
               e.balance_after, e.created_at, %(applied_at)s::timestamptz
          FROM entry e
         WHERE {where}"""


def transfer_rows_sql(where: str = "TRUE") -> str:
    """projection_transfer rows (TRANSFER_COLUMNS) of the ledger's transfers `t` matching `where`.

    The entries are the array the TransferPosted event carries, debit first, each entry as
    ledger_entry_event_data() writes it (apps/ledger/sql/0004_post_transfer.sql): the same
    jsonb value. Not by calling that function: PostgreSQL cannot inline it (it is IMMUTABLE
    around STABLE calls), and a row to jsonb is cheaper than jsonb_build_object; this halves
    the cost of the largest table. test_replay checks the two stay equal.
    """
    return f"""
        SELECT t.id, t.from_account_id, t.to_account_id, t.amount, t.currency, t.status, t.idempotency_key,
               t.metadata,
               coalesce((SELECT jsonb_agg(to_jsonb(posted) ORDER BY posted.amount)
                           FROM (SELECT e.id AS "entryId", e.transfer_id AS "transferId", e.account_id AS "accountId",
                                        e.counterparty_id AS "counterpartyId", e.currency, e.amount, e.sequence,
                                        e.balance_after AS "balanceAfter", ledger_iso(e.created_at) AS "createdAt"
                                   FROM entry e WHERE e.transfer_id = t.id) posted), '[]'::jsonb),
               t.created_at, %(applied_at)s::timestamptz
          FROM transfer t
         WHERE {where}"""
