"""Compare the projections (the read model) with the ledger, the source of truth.

Each projection row is recomputed from the ledger with the replay's own SQL (ledger_rows.py) and
compared with what the projection holds, one set-based FULL JOIN per table:
  * balances: currency, balance, last_sequence, and updated_at once the account has entries.
    An account without entries may have no row: the consumer creates it on AccountCreated,
    the replay always;
  * statement lines against the entries, by (account, sequence);
  * transfers, entries JSON included, by id;
  * grants, by id. The Grant* events carry the grant at its lifecycle changes only (created,
    activated, expired, voided), not at a draw, a hold's reservation, post or release, or a
    reversal's restore. So a projected grant at the ledger's latest change of it (the same
    updated_at) is compared whole; one at an earlier change, on what the events keep
    current: its account, its terms (the document but its counters, status and updatedAt)
    and its lifecycle status (exhausted counting as active). A projected grant later than
    the ledger's is different. The fields that describe an event, not the grant
    (expiredAmount, voidedAmount), are never compared.
`applied_at` is the projection's own and never compared.

Both sides are read in one snapshot when the projections are in the ledger's database; when
they have a database of their own, the recomputed rows are first copied next to them (from
one snapshot of the ledger), so the comparison stays in SQL. Either way a projection that is
merely behind the ledger (consumer lag) shows as drift: `wait` retries until it is clean.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import orjson
from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone
from psycopg import sql

from apps.projections.ledger_rows import (
    BALANCE_COLUMNS,
    GRANT_COLUMNS,
    GRANT_EVENT_FIELDS,
    LEDGER_ALIAS,
    LINE_COLUMNS,
    TRANSFER_COLUMNS,
    balance_rows_sql,
    column_list,
    grant_rows_sql,
    line_rows_sql,
    transfer_rows_sql,
)
from apps.projections.routers import READ_ALIAS

DEFAULT_LIMIT = 20
#: The longest value a drift example shows whole.
_SHOWN = 200
_ABSENT = object()
KINDS = ("missing", "extra", "different")
LAG_NOTE = (
    "A projection that is only behind the ledger (consumer lag) shows as drift too: "
    "--wait SECONDS retries until it is clean."
)


@dataclass(frozen=True)
class _Check:
    projection: str
    table: str
    rows_sql: Callable[[], sql.Composed]
    columns: tuple[str, ...]
    keys: tuple[str, ...]
    #: column: the SQL condition (on the ledger row `l` and the projection row `p`) under which it is compared
    compared: dict[str, sql.Composable]
    #: when a ledger row may have no projection row
    missing_ok: sql.SQL
    #: column: what is compared of it, given the row (`l` or `p`); default: the column itself
    values: dict[str, Callable[[sql.Identifier], sql.Composable]] = field(default_factory=dict)

    def value(self, column: str, row: str) -> sql.Composable:
        if column in self.values:
            return self.values[column](sql.Identifier(row))
        return sql.SQL("{}.{}").format(sql.Identifier(row), sql.Identifier(column))


_ALWAYS, _NEVER = sql.SQL("TRUE"), sql.SQL("FALSE")
#: A projected grant at the ledger's latest change of it, compared whole (see the module docstring).
_GRANT_LATEST = sql.SQL("l.updated_at = p.updated_at")
#: What of a grant's document changes without an event.
_GRANT_COUNTERS = ("remaining", "consumed", "reserved", "expired", "voided", "status", "updatedAt")


def _text_array(values: tuple[str, ...]) -> sql.Composed:
    return sql.SQL("ARRAY[{}]::text[]").format(sql.SQL(", ").join(map(sql.Literal, values)))


def _grant_status(row: sql.Identifier) -> sql.Composed:
    """The status, or at an earlier change than the ledger's its lifecycle: exhausted is active."""
    return sql.SQL("CASE WHEN {latest} OR {row}.status <> 'exhausted' THEN {row}.status ELSE 'active' END").format(
        latest=_GRANT_LATEST, row=row
    )


def _grant_document(row: sql.Identifier) -> sql.Composed:
    """The document but the event's own fields, or at an earlier change than the ledger's its terms."""
    return sql.SQL("{row}.document - CASE WHEN {latest} THEN {event_fields} ELSE {all_fields} END").format(
        row=row,
        latest=_GRANT_LATEST,
        event_fields=_text_array(GRANT_EVENT_FIELDS),
        all_fields=_text_array(GRANT_EVENT_FIELDS + _GRANT_COUNTERS),
    )


_CHECKS = (
    _Check(
        "balance",
        "projection_balance",
        balance_rows_sql,
        BALANCE_COLUMNS,
        ("account_id",),
        {
            "currency": _ALWAYS,
            "balance": _ALWAYS,
            "last_sequence": _ALWAYS,
            "updated_at": sql.SQL("l.last_sequence > 0"),
        },
        missing_ok=sql.SQL("l.last_sequence = 0"),
    ),
    _Check(
        "statement line",
        "projection_statement_line",
        line_rows_sql,
        LINE_COLUMNS,
        ("account_id", "sequence"),
        dict.fromkeys(LINE_COLUMNS[2:-1], _ALWAYS),
        missing_ok=_NEVER,
    ),
    _Check(
        "transfer",
        "projection_transfer",
        transfer_rows_sql,
        TRANSFER_COLUMNS,
        ("transfer_id",),
        dict.fromkeys(TRANSFER_COLUMNS[1:-1], _ALWAYS),
        missing_ok=_NEVER,
    ),
    _Check(
        "grant",
        "projection_grant",
        grant_rows_sql,
        GRANT_COLUMNS,
        ("grant_id",),
        {
            "account_id": _ALWAYS,
            "status": _ALWAYS,
            "document": _ALWAYS,
            "updated_at": sql.SQL("p.updated_at > l.updated_at"),
        },
        missing_ok=_NEVER,
        values={"status": _grant_status, "document": _grant_document},
    ),
)


@dataclass(frozen=True)
class Drift:
    """One projection row that disagrees with the ledger."""

    projection: str  # "balance", "statement line", "transfer" or "grant"
    kind: str  # "missing": not projected; "extra": not in the ledger; "different"
    key: str
    detail: str

    def __str__(self) -> str:
        return f"{self.projection} {self.key}: {self.detail}"


@dataclass(frozen=True)
class ProjectionReport:
    accounts: int
    entries: int
    transfers: int
    grants: int
    #: projection -> kind -> how many rows
    drift: dict[str, dict[str, int]]
    #: the first few, per projection
    examples: list[Drift] = field(default_factory=list)
    #: how many comparisons it took (more than one with `wait`)
    attempts: int = 1

    @property
    def drift_count(self) -> int:
        return sum(sum(kinds.values()) for kinds in self.drift.values())

    @property
    def ok(self) -> bool:
        return self.drift_count == 0

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "drift_count": self.drift_count, **asdict(self)}

    def summary_lines(self) -> list[str]:
        lines = [
            f"accounts checked: {self.accounts}",
            f"entries checked: {self.entries}",
            f"transfers checked: {self.transfers}",
            f"grants checked: {self.grants}",
        ]
        lines += [
            f"{projection}s: " + ", ".join(f"{count} {kind}" for kind, count in kinds.items())
            for projection, kinds in self.drift.items()
        ]
        lines.append(f"drift found: {self.drift_count}")
        lines += [f"  {example}" for example in self.examples]
        if self.drift_count > len(self.examples):
            lines.append(f"  ... and {self.drift_count - len(self.examples)} more")
        return lines


def projections_verify(
    *, limit: int = DEFAULT_LIMIT, wait: float = 0.0, ledger_copy: bool | None = None
) -> ProjectionReport:
    """Compare every projection row with the ledger; list at most `limit` drifted rows per
    projection. With `wait`, compare again (about every second) until clean or `wait`
    seconds have passed, and return the last report."""
    copy = (not settings.READ_DATABASE_IS_DEFAULT) if ledger_copy is None else ledger_copy
    deadline = time.monotonic() + wait
    attempts = 0
    while True:
        attempts += 1
        report = _compare(limit, copy)
        if report.ok or time.monotonic() >= deadline:
            return replace(report, attempts=attempts)
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


def _compare(limit: int, copy: bool) -> ProjectionReport:
    if connections[READ_ALIAS].in_atomic_block:
        raise RuntimeError("projections_verify reads its own snapshot: call it outside a transaction")
    with transaction.atomic(using=READ_ALIAS), connections[READ_ALIAS].cursor() as cursor:
        ledger_rows: Mapping[str, sql.Composable]
        if copy:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            ledger_rows = _ledger_rows_copy(cursor)
        else:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            ledger_rows = {check.table: sql.SQL("({})").format(check.rows_sql()) for check in _CHECKS}
        drift: dict[str, dict[str, int]] = {}
        examples: list[Drift] = []
        counted: dict[str, int] = {}
        for check in _CHECKS:
            joined = _joined_sql(check, ledger_rows[check.table])
            counted[check.projection], drift[check.projection] = _counts(cursor, joined)
            if sum(drift[check.projection].values()):
                examples += _examples(cursor, check, joined, limit)
    return ProjectionReport(
        accounts=counted["balance"],
        entries=counted["statement line"],
        transfers=counted["transfer"],
        grants=counted["grant"],
        drift=drift,
        examples=examples,
    )


def _joined_sql(check: _Check, ledger_rows: sql.Composable) -> sql.Composed:
    """The ledger's rows `l` FULL JOIN the projection's `p`, with what is wrong with each pair,
    and the values compared on each side (JSON objects)."""
    keys = [sql.Identifier(key) for key in check.keys]
    fields = sql.SQL(", ").join(
        sql.SQL("CASE WHEN ({condition}) AND {ledger} IS DISTINCT FROM {projected} THEN {name} END").format(
            condition=condition,
            ledger=check.value(column, "l"),
            projected=check.value(column, "p"),
            name=sql.Literal(column),
        )
        for column, condition in check.compared.items()
    )

    def values(row: str) -> sql.Composed:
        return sql.SQL("jsonb_build_object({})").format(
            sql.SQL(", ").join(
                sql.SQL("{}, {}").format(sql.Literal(column), check.value(column, row)) for column in check.compared
            )
        )

    return sql.SQL("""
        SELECT {keys},
               l.{first} IS NOT NULL AS in_ledger,
               CASE WHEN l.{first} IS NULL THEN 'extra'
                    WHEN p.{first} IS NULL THEN CASE WHEN {missing_ok} THEN NULL ELSE 'missing' END
                    WHEN cardinality(array_remove(ARRAY[{fields}], NULL)) > 0 THEN 'different'
               END AS kind,
               array_remove(ARRAY[{fields}], NULL) AS fields,
               {ledger_values} AS ledger_values, {projected_values} AS projected_values
          FROM {ledger_rows} AS l({columns})
          FULL JOIN {table} p ON {on}""").format(
        keys=sql.SQL(", ").join(sql.SQL("coalesce(l.{0}, p.{0}) AS {0}").format(key) for key in keys),
        first=keys[0],
        missing_ok=check.missing_ok,
        fields=fields,
        ledger_values=values("l"),
        projected_values=values("p"),
        ledger_rows=ledger_rows,
        columns=column_list(check.columns),
        table=sql.Identifier(check.table),
        on=sql.SQL(" AND ").join(sql.SQL("p.{0} = l.{0}").format(key) for key in keys),
    )


def _counts(cursor, joined: sql.Composed) -> tuple[int, dict[str, int]]:
    kinds = sql.SQL(", ").join(sql.SQL("count(*) FILTER (WHERE kind = {})").format(sql.Literal(kind)) for kind in KINDS)
    cursor.execute(
        sql.SQL("SELECT count(*) FILTER (WHERE in_ledger), {} FROM ({}) joined").format(kinds, joined),
        {"applied_at": None},
    )
    checked, *counts = cursor.fetchone()
    return checked, dict(zip(KINDS, counts, strict=True))


def _examples(cursor, check: _Check, joined: sql.Composed, limit: int) -> list[Drift]:
    keys = column_list(check.keys)
    cursor.execute(
        sql.SQL("""SELECT {keys}, kind, fields, ledger_values, projected_values FROM ({joined}) joined
                    WHERE kind IS NOT NULL ORDER BY {keys} LIMIT %(limit)s""").format(keys=keys, joined=joined),
        {"applied_at": None, "limit": limit},
    )
    examples = []
    for *key, kind, fields, ledger_row, projection_row in cursor.fetchall():
        if kind == "missing":
            detail = "in the ledger, not in the projection"
        elif kind == "extra":
            detail = "in the projection, not in the ledger"
        else:
            ledger_values, projected = orjson.loads(ledger_row), orjson.loads(projection_row)
            detail = "; ".join(_difference(name, ledger_values[name], projected[name]) for name in fields)
        examples.append(Drift(check.projection, kind, "#".join(str(part) for part in key), detail))
    return examples


def _difference(name: str, ledger: Any, projected: Any) -> str:
    """`name` with both values; two JSON objects too long to show whole, by the keys that differ."""
    if isinstance(ledger, dict) and isinstance(projected, dict) and len(orjson.dumps(ledger)) > _SHOWN:
        return "; ".join(
            _difference(f"{name}.{key}", ledger.get(key), projected.get(key))
            for key in sorted(ledger.keys() | projected.keys())
            if ledger.get(key, _ABSENT) != projected.get(key, _ABSENT)
        )
    return f"{name} {_short(ledger)} in the ledger, {_short(projected)} in the projection"


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def _ledger_rows_copy(cursor) -> dict[str, sql.Composed]:
    """The projection rows recomputed on the ledger's database, from one snapshot of it,
    streamed into temporary tables of this transaction (shaped like the projection tables),
    each selected by its check's columns: a table the migrations grew has its columns in
    another order than a table created from the model."""
    copies = {}
    applied_at = timezone.now()  # never compared; the columns are NOT NULL
    with transaction.atomic(using=LEDGER_ALIAS), connections[LEDGER_ALIAS].cursor() as source:
        source.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        for check in _CHECKS:
            copy = sql.Identifier("pg_temp", f"ledger_{check.table}")
            copies[check.table] = sql.SQL("(SELECT {} FROM {})").format(column_list(check.columns), copy)
            cursor.execute(
                sql.SQL("CREATE TEMPORARY TABLE {} (LIKE {}) ON COMMIT DROP").format(
                    sql.Identifier(f"ledger_{check.table}"), sql.Identifier(check.table)
                )
            )
            with (
                source.cursor.copy(
                    sql.SQL("COPY ({}) TO STDOUT (FORMAT BINARY)").format(check.rows_sql()), {"applied_at": applied_at}
                ) as rows_out,
                cursor.cursor.copy(
                    sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(copy, column_list(check.columns))
                ) as rows_in,
            ):
                for data in rows_out:
                    rows_in.write(data)
            cursor.execute(sql.SQL("ANALYZE {}").format(copy))
    return copies
