"""What the live consumer applied beyond the rebuild, merged into it at the swap, as far as
the ledger confirms it row for row."""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime
from typing import NamedTuple
from uuid import UUID

from django.db import connections
from django.utils import timezone
from psycopg import sql

from apps.projections.ledger_rows import (
    BALANCE_COLUMNS,
    GRANT_COLUMNS,
    LEDGER_ALIAS,
    LINE_COLUMNS,
    TRANSFER_COLUMNS,
    GrantRow,
    LineRow,
    TransferRow,
    column_list,
    grant_rows_sql,
    line_rows_sql,
    transfer_rows_sql,
)
from apps.projections.models import ProjectedBalance, ProjectedGrant, ProjectedStatementLine, ProjectedTransfer
from apps.projections.projector import Tables
from apps.projections.replay.rebuild import REBUILD_SCHEMA

logger = logging.getLogger(__package__)  # one logger for the whole replay: apps.projections.replay


class _BalanceAhead(NamedTuple):
    """A live balance at a later entry than the rebuilt one (or with no rebuilt row)."""

    account_id: UUID
    currency: str
    balance: int
    last_sequence: int
    updated_at: datetime
    rebuilt_sequence: int  # 0 without a rebuilt row


def live_merge(cursor, live: dict[str, str]) -> dict[str, int]:
    """Copy into the rebuild what the live tables (in the schemas `live`) have beyond it, as far
    as the ledger confirms it row for row: accounts whose live balance is at a later entry
    (with those statement lines), and transfers the rebuild lacks. Grants the live consumer
    has at a later change than the rebuild (or only it has) are read again from the ledger,
    whose row for a grant is never behind its events (ledger_rows.grant_rows_sql). Anything
    else in the live tables is drift that the rebuild replaces. Runs under the swap lock, so
    the live tables stand still."""
    balance, line, transfer, grant = (
        sql.Identifier(live[model._meta.db_table], model._meta.db_table)
        for model in (ProjectedBalance, ProjectedStatementLine, ProjectedTransfer, ProjectedGrant)
    )
    rebuilt = Tables(REBUILD_SCHEMA)

    cursor.execute(
        sql.SQL(
            """SELECT l.account_id, l.currency, l.balance, l.last_sequence, l.updated_at, coalesce(r.last_sequence, 0)
             FROM {balance} l LEFT JOIN {rebuilt} r USING (account_id)
            WHERE r.account_id IS NULL OR l.last_sequence > r.last_sequence"""
        ).format(balance=balance, rebuilt=rebuilt.balance)
    )
    ahead = {row.account_id: row for row in map(_BalanceAhead._make, cursor.fetchall())}
    lines: dict[UUID, list[LineRow]] = defaultdict(list)
    lines_beyond = sql.SQL(
        """FROM {line} l JOIN unnest(%s::uuid[], %s::bigint[]) AS c(account_id, after) USING (account_id)
          WHERE l.sequence > c.after"""
    ).format(line=line)
    if ahead:
        cursor.execute(
            sql.SQL("SELECT {columns} {lines_beyond} ORDER BY l.account_id, l.sequence").format(
                columns=column_list(LINE_COLUMNS, "l"), lines_beyond=lines_beyond
            ),
            [list(ahead), [row.rebuilt_sequence for row in ahead.values()]],
        )
        for row in map(LineRow._make, cursor.fetchall()):
            lines[row.account_id].append(row)
    cursor.execute(
        sql.SQL(
            """SELECT {columns}
             FROM {transfer} l LEFT JOIN {rebuilt} r USING (transfer_id) WHERE r.transfer_id IS NULL"""
        ).format(columns=column_list(TRANSFER_COLUMNS, "l"), transfer=transfer, rebuilt=rebuilt.transfer)
    )
    missing_transfers = [TransferRow._make(row) for row in cursor.fetchall()]

    confirmed_accounts = _accounts_confirmed(ahead, lines)
    confirmed_transfers = _transfers_confirmed(missing_transfers)

    merged = {"balances": 0, "statement_lines": 0, "transfers": 0, "grants": 0}
    if confirmed_accounts:
        cursor.execute(
            sql.SQL("""INSERT INTO {rebuilt} ({columns})
                SELECT {columns} FROM {balance} WHERE account_id = ANY(%s::uuid[])
                ON CONFLICT (account_id) DO UPDATE SET {updates}""").format(
                rebuilt=rebuilt.balance,
                columns=column_list(BALANCE_COLUMNS),
                balance=balance,
                updates=sql.SQL(", ").join(
                    sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(column)) for column in BALANCE_COLUMNS[1:]
                ),
            ),
            [confirmed_accounts],
        )
        merged["balances"] = cursor.rowcount
        cursor.execute(
            sql.SQL("INSERT INTO {rebuilt} ({columns}) SELECT {line_columns} {lines_beyond}").format(
                rebuilt=rebuilt.line,
                columns=column_list(LINE_COLUMNS),
                line_columns=column_list(LINE_COLUMNS, "l"),
                lines_beyond=lines_beyond,
            ),
            [confirmed_accounts, [ahead[account_id].rebuilt_sequence for account_id in confirmed_accounts]],
        )
        merged["statement_lines"] = cursor.rowcount
    if confirmed_transfers:
        cursor.execute(
            sql.SQL("""INSERT INTO {rebuilt} ({columns})
                SELECT {columns} FROM {transfer} WHERE transfer_id = ANY(%s::uuid[])""").format(
                rebuilt=rebuilt.transfer, columns=column_list(TRANSFER_COLUMNS), transfer=transfer
            ),
            [confirmed_transfers],
        )
        merged["transfers"] = cursor.rowcount
    grants_ahead, merged["grants"] = _grants_merge(cursor, grant, rebuilt.grant)
    dropped = (
        len(ahead)
        - len(confirmed_accounts)
        + len(missing_transfers)
        - len(confirmed_transfers)
        + grants_ahead
        - merged["grants"]
    )
    if dropped:
        logger.warning("%d live projection rows beyond the rebuild disagree with the ledger: not kept", dropped)
    return merged


def _grants_merge(cursor, live: sql.Identifier, rebuilt: sql.Identifier) -> tuple[int, int]:
    """Write into the rebuild the ledger's row of every grant the `live` table has at a later
    change than the rebuild, or alone; (how many there were, how many the ledger had)."""
    cursor.execute(
        sql.SQL("""SELECT l.grant_id FROM {live} l LEFT JOIN {rebuilt} r USING (grant_id)
            WHERE r.grant_id IS NULL OR l.updated_at > r.updated_at""").format(live=live, rebuilt=rebuilt)
    )
    ahead = [grant_id for (grant_id,) in cursor.fetchall()]
    if not ahead:
        return 0, 0
    with connections[LEDGER_ALIAS].cursor() as ledger:
        ledger.execute(
            grant_rows_sql(where=sql.SQL("g.id = ANY(%(ids)s::uuid[])")), {"applied_at": timezone.now(), "ids": ahead}
        )
        rows = [GrantRow._make(row) for row in ledger.fetchall()]
    if not rows:
        return len(ahead), 0
    cursor.execute(
        sql.SQL("""INSERT INTO {rebuilt} ({columns})
            SELECT * FROM unnest(%s::uuid[], %s::uuid[], %s::text[], %s::jsonb[], %s::timestamptz[], %s::timestamptz[])
            ON CONFLICT (grant_id) DO UPDATE SET {updates}""").format(
            rebuilt=rebuilt,
            columns=column_list(GRANT_COLUMNS),
            updates=sql.SQL(", ").join(
                sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(column)) for column in GRANT_COLUMNS[1:]
            ),
        ),
        [list(column) for column in zip(*rows, strict=True)],
    )
    return len(ahead), cursor.rowcount


def _accounts_confirmed(ahead: dict[UUID, _BalanceAhead], lines: dict[UUID, list[LineRow]]) -> list[UUID]:
    """The accounts of `ahead` whose live balance and lines beyond the rebuild are the ledger's."""
    if not ahead:
        return []
    keys = [(row.account_id, row.sequence) for rows in lines.values() for row in rows]
    with connections[LEDGER_ALIAS].cursor() as cursor:
        cursor.execute("SELECT id, currency FROM account WHERE id = ANY(%s::uuid[])", [list(ahead)])
        currencies = dict(cursor.fetchall())
        ledger_lines: set[LineRow] = set()
        if keys:
            cursor.execute(
                line_rows_sql(
                    where=sql.SQL(
                        "(e.account_id, e.sequence) IN "
                        "(SELECT * FROM unnest(%(accounts)s::uuid[], %(sequences)s::bigint[]))"
                    )
                ),
                {"applied_at": None, "accounts": [k[0] for k in keys], "sequences": [k[1] for k in keys]},
            )
            ledger_lines = set(map(LineRow._make, cursor.fetchall()))
    confirmed = []
    for account_id, live_balance in ahead.items():
        mine = lines.get(account_id, [])
        if currencies.get(account_id) != live_balance.currency:
            continue
        if [row.sequence for row in mine] != list(
            range(live_balance.rebuilt_sequence + 1, live_balance.last_sequence + 1)
        ):
            continue
        if not all(row._replace(applied_at=None) in ledger_lines for row in mine):
            continue
        if mine and (mine[-1].balance_after, mine[-1].created_at) != (live_balance.balance, live_balance.updated_at):
            continue
        if not mine and live_balance.balance != 0:
            continue
        confirmed.append(account_id)
    return confirmed


def _transfers_confirmed(live_rows: list[TransferRow]) -> list[UUID]:
    """The transfers of `live_rows` that the ledger has, identical but for applied_at."""
    if not live_rows:
        return []
    with connections[LEDGER_ALIAS].cursor() as cursor:
        cursor.execute(
            transfer_rows_sql(where=sql.SQL("t.id = ANY(%(ids)s::uuid[])")),
            {"applied_at": None, "ids": [row.transfer_id for row in live_rows]},
        )
        ledger = {row.transfer_id: row for row in map(TransferRow._make, cursor.fetchall())}
    # The JSON columns come back as text on both sides, and equal jsonb values print the same.
    return [row.transfer_id for row in live_rows if ledger.get(row.transfer_id) == row._replace(applied_at=None)]
