"""A large ledger, fast, for scenarios e and f: set-based SQL that writes what the transfer
service writes. `verify_ledger` must pass on the result (the harness runs it after seeding).

Per chunk of transfers, in one transaction:
  * transfers (status posted, the service's request fingerprint: SHA-256 of the same canonical
    JSON orjson writes), their idempotency records;
  * two entries each, with per-account gapless sequences and running balances computed by
    window functions from the account's current position, inserted in time order;
  * the accounts' balance and last_sequence moved to their latest entry.

The chunks run with `session_replication_role = replica` (superuser only), which switches off
every trigger of the tables written: the invariant triggers, the deferred checks and the
foreign keys' own triggers. Row by row, those cost about 25 times what the inserts do (the
deferred checks most, then the foreign keys and the entry chain: 600-800 transfers/s with them
on, 16,000-20,000 off, on 2 shared cores), and this is the application's data written by set
operations, not by the application. So the whole result is checked afterwards, set-based:
every foreign key of the tables written (`foreign_keys_check`), then, by the harness, every
ledger invariant (`verify_ledger`, the audit of exactly what the triggers enforce). CHECK and
unique constraints stay on throughout.

Ids are UUIDv7-shaped (time-ordered), as the application's. Entries are spread over the last
30 days (`span_days`, `ends_days_ago`), in order. Accounts have an unlimited overdraft.

What is not written: outbox rows. This is history: the service would have written them, the
relay published them, and the pruning task deleted them after OUTBOX_RETENTION_HOURS.

Layouts:
  * "spread" (e): `accounts` accounts; transfer i goes between two of them chosen by
    arithmetic, so every account gets about 2 * transfers / accounts entries.
  * "hot" (f): account 0 is on every transfer, against counterparties 1..accounts-1 in turn,
    alternately paying and being paid, so it ends with `transfers` entries.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable

import psycopg
from psycopg import sql

from apps.projections import ledger_rows

# 32 hex digits: 48-bit unix ms, version 7, 12 bits of sub-ms order, variant, 60 random bits.
UUID7_SQL = (
    "(lpad(to_hex((extract(epoch FROM {ts}) * 1000)::bigint), 12, '0') || '7' || "
    "lpad(to_hex(mod({n}, 4096)), 3, '0') || to_hex(8 + mod({n}, 4)) || "
    "substr(md5(({n})::text || '{salt}' || random()::text), 1, 15))::uuid"
)

FINGERPRINT_SQL = (
    'encode(sha256(convert_to(\'{"amount":\' || amount || \',"currency":"\' || currency || '
    '\'","from":"\' || from_id || \'","metadata":{},"to":"\' || to_id || \'"}\', \'UTF8\')), \'hex\')'
)


#: The tables seed_ledger writes, with their triggers off (see the docstring).
SEEDED_TABLES = ("account", "transfer", "idempotency_record", "entry")


def _guard(work, errors: list):
    def run(*args):
        try:
            work(*args)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the caller
            errors.append(exc)

    return run


def seed_ledger(
    conn: psycopg.Connection,
    *,
    layout: str,
    accounts: int,
    transfers: int,
    chunk: int = 50_000,
    currency: str = "USD",
    key_prefix: str = "seed",
    parallel: int = 2,
    span_days: int = 30,
    ends_days_ago: int = 0,
    progress: Callable[[str], None] = print,
) -> dict:
    """Seed the ledger; `parallel` connections load disjoint partitions ("spread" only). The
    entries are spread evenly over `span_days` days ending `ends_days_ago` days ago."""
    started = time.perf_counter()
    errors: list[BaseException] = []
    conn.autocommit = True
    conn.execute("SET synchronous_commit = on")  # stays on: nothing here is weaker than the service
    conn.execute("DROP TABLE IF EXISTS seed_account")
    conn.execute("CREATE TEMP TABLE seed_account (n int PRIMARY KEY, id uuid NOT NULL)")
    conn.execute(
        "SELECT set_config('seed.base', (now() - make_interval(days => %s))::text, false)",
        [span_days + ends_days_ago],
    )
    base = "current_setting('seed.base')::timestamptz"
    with conn.transaction():
        conn.execute(
            f"""INSERT INTO seed_account (n, id)
                SELECT n, {UUID7_SQL.format(ts=base, n="n", salt="a")} FROM generate_series(0, %s - 1) n""",
            [accounts],
        )
        conn.execute(
            f"""INSERT INTO account (id, currency, name, external_ref, metadata, status, overdraft_limit, balance,
                                     pending_debits, pending_credits, last_sequence, created_at, updated_at)
                SELECT id, %s, 'seed-' || n, NULL, '{{}}', 'active', NULL, 0, 0, 0, 0, {base}, {base}
                  FROM seed_account ORDER BY n""",
            [currency],
        )
    if layout == "spread":
        # Partition p owns the accounts n = j * parts + p; transfer i (i mod parts = p) stays inside
        # its partition, so the partitions can be loaded by parallel connections.
        size = accounts // parallel
        local, part = f"(i / {parallel})", f"mod(i, {parallel})"
        first = f"mod({local} * 7919, {size})"
        second = f"mod({first} + 1 + mod({local} * 104729, {size} - 1), {size})"  # never == first
        pair = (f"{first} * {parallel} + {part}", f"{second} * {parallel} + {part}")
    elif layout == "hot":
        parallel = 1
        # Even i: the hot account pays a counterparty; odd i: the counterparty pays it back.
        pair = (
            f"CASE WHEN mod(i, 2) = 0 THEN 0 ELSE 1 + mod(i / 2, {accounts} - 1) END",
            f"CASE WHEN mod(i, 2) = 0 THEN 1 + mod(i / 2, {accounts} - 1) ELSE 0 END",
        )
    else:
        raise ValueError(layout)
    from_n, to_n = pair
    step = f"(interval '{int(span_days)} days' / {max(transfers, 1)})"
    row = conn.execute("SELECT current_setting('seed.base')").fetchone()
    if row is None:
        raise RuntimeError("SELECT current_setting('seed.base') returned no row")
    base_value = row[0]

    def load(part: int) -> None:
        with psycopg.connect(conninfo, autocommit=True) as own:
            own.execute("SELECT set_config('seed.base', %s, false)", [base_value])
            own.execute("CREATE TEMP TABLE seed_account (n int PRIMARY KEY, id uuid NOT NULL)")
            with own.cursor() as cursor:
                rows = conn_accounts
                with cursor.copy("COPY seed_account (n, id) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            own.execute("ANALYZE seed_account")
            for lo in range(0, transfers, chunk):
                hi = min(transfers, lo + chunk)
                t0 = time.perf_counter()
                _chunk(own, lo, hi, part)
                progress(
                    f"seed: part {part}: up to transfer {hi}/{transfers} "
                    f"({(hi - lo) / parallel / (time.perf_counter() - t0):.0f}/s)"
                )

    def _chunk(own: psycopg.Connection, lo: int, hi: int, part: int) -> None:
        with own.transaction():
            own.execute("SET LOCAL session_replication_role = replica")  # checked afterwards: see the docstring
            own.execute(
                f"""CREATE TEMP TABLE seed_tx ON COMMIT DROP AS
                    SELECT x.*, {UUID7_SQL.format(ts="x.created_at", n="x.i", salt="t")} AS id
                      FROM (SELECT i, fa.id AS from_id, ta.id AS to_id, 1 + mod(i * 31337, 10000) AS amount,
                                   %(currency)s::text AS currency, {base} + i * {step} AS created_at
                              FROM generate_series(%(lo)s::bigint, %(hi)s::bigint - 1) i
                              JOIN seed_account fa ON fa.n = {from_n}
                              JOIN seed_account ta ON ta.n = {to_n}
                             WHERE mod(i, %(parts)s) = %(part)s) x""",
                {"lo": lo, "hi": hi, "currency": currency, "parts": parallel, "part": part},
            )
            own.execute(
                f"""CREATE TEMP TABLE seed_entry ON COMMIT DROP AS
                    SELECT {UUID7_SQL.format(ts="s.created_at", n="2 * s.i + s.side", salt="e")} AS id,
                           s.transfer_id, s.account_id, s.counterparty_id, s.currency, s.amount, s.created_at,
                           a.last_sequence + row_number() OVER w AS sequence,
                           a.balance + sum(s.amount) OVER w AS balance_after
                      FROM (SELECT i, 0 AS side, id AS transfer_id, from_id AS account_id, to_id AS counterparty_id,
                                   currency, -amount AS amount, created_at FROM seed_tx
                            UNION ALL
                            SELECT i, 1, id, to_id, from_id, currency, amount, created_at FROM seed_tx) s
                      JOIN account a ON a.id = s.account_id
                    WINDOW w AS (PARTITION BY s.account_id ORDER BY s.i, s.side ROWS UNBOUNDED PRECEDING)"""
            )
            own.execute(
                f"""INSERT INTO transfer (id, idempotency_key, request_fingerprint, from_account_id, to_account_id,
                                          amount, currency, status, metadata, created_at, updated_at)
                    SELECT id, %(prefix)s || '-' || i, {FINGERPRINT_SQL}, from_id, to_id, amount, currency, 'posted',
                           '{{}}', created_at, created_at
                      FROM seed_tx ORDER BY i""",
                {"prefix": key_prefix},
            )
            own.execute(
                f"""INSERT INTO idempotency_record (key, request_fingerprint, transfer_id, error, created_at)
                    SELECT %(prefix)s || '-' || i, {FINGERPRINT_SQL}, id, NULL, created_at FROM seed_tx ORDER BY i""",
                {"prefix": key_prefix},
            )
            own.execute(
                """INSERT INTO entry (id, transfer_id, account_id, counterparty_id, currency, amount, sequence,
                                      balance_after, created_at)
                   SELECT id, transfer_id, account_id, counterparty_id, currency, amount, sequence, balance_after,
                          created_at
                     FROM seed_entry ORDER BY created_at, amount"""
            )
            own.execute(
                """UPDATE account a SET balance = l.balance_after, last_sequence = l.sequence, updated_at = l.created_at
                     FROM (SELECT DISTINCT ON (account_id) account_id, sequence, balance_after, created_at
                             FROM seed_entry ORDER BY account_id, sequence DESC) l
                    WHERE a.id = l.account_id"""
            )

    conninfo = conn.info.dsn
    if conn.info.password:
        conninfo += f" password={conn.info.password}"
    conn_accounts = conn.execute("SELECT n, id FROM seed_account ORDER BY n").fetchall()
    threads = [threading.Thread(target=_guard(load, errors), args=(part,)) for part in range(parallel)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    checked = foreign_keys_check(conn, SEEDED_TABLES)
    # As autovacuum would leave them (hint bits set, visibility map, statistics), so that the
    # runs copying this database do not each pay for that on their first reads.
    for table in SEEDED_TABLES:
        conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(table)))
    hot = conn.execute("SELECT id FROM seed_account WHERE n = 0").fetchone()
    if hot is None:
        raise ValueError("no account was seeded")
    hot_id = hot[0]
    return {
        "layout": layout,
        "accounts": accounts,
        "transfers": transfers,
        "entries": 2 * transfers,
        "first_account": str(hot_id),
        "foreign_keys_checked": checked,
        "seconds": round(time.perf_counter() - started, 1),
    }


def foreign_keys_check(conn: psycopg.Connection, tables: tuple[str, ...]) -> int:
    """Check every foreign key of `tables` over all their rows, as ALTER TABLE ... VALIDATE
    CONSTRAINT would (MATCH SIMPLE: a row with a NULL in the key is not checked), and raise on
    the first that a row breaks. Returns how many foreign keys were checked."""
    keys = conn.execute(
        """SELECT c.conname, child.relname, parent.relname,
                  array_agg(ca.attname ORDER BY k.i), array_agg(pa.attname ORDER BY k.i)
             FROM pg_constraint c
             JOIN pg_class child ON child.oid = c.conrelid
             JOIN pg_class parent ON parent.oid = c.confrelid
            CROSS JOIN LATERAL unnest(c.conkey, c.confkey) WITH ORDINALITY AS k(attnum, parent_attnum, i)
             JOIN pg_attribute ca ON ca.attrelid = c.conrelid AND ca.attnum = k.attnum
             JOIN pg_attribute pa ON pa.attrelid = c.confrelid AND pa.attnum = k.parent_attnum
            WHERE c.contype = 'f' AND child.relname = ANY(%s) AND child.relnamespace = 'public'::regnamespace
            GROUP BY c.oid, c.conname, child.relname, parent.relname
            ORDER BY child.relname, c.conname""",
        [list(tables)],
    ).fetchall()
    for name, table, parent, columns, parent_columns in keys:
        present = sql.SQL(" AND ").join(
            sql.SQL("c.{} IS NOT NULL").format(sql.Identifier(column)) for column in columns
        )
        match = sql.SQL(" AND ").join(
            sql.SQL("p.{} = c.{}").format(sql.Identifier(key), sql.Identifier(column))
            for column, key in zip(columns, parent_columns, strict=True)
        )
        query = sql.SQL("SELECT count(*) FROM {} c WHERE {} AND NOT EXISTS (SELECT 1 FROM {} p WHERE {})").format(
            sql.Identifier(table), present, sql.Identifier(parent), match
        )
        row = conn.execute(query).fetchone()
        if row is None or row[0]:
            raise RuntimeError(f"{table}: {row[0] if row else '?'} rows break foreign key {name}")
    return len(keys)


def projections_build_direct(conn: psycopg.Connection) -> None:
    """Fill the projection tables from the ledger with the rows the consumer would have written:
    the SELECTs of apps/projections/ledger_rows.py, which the replay and the audit use too. For
    scenario f, which only reads."""
    tables = (
        ("projection_balance", ledger_rows.BALANCE_COLUMNS, ledger_rows.balance_rows_sql()),
        ("projection_statement_line", ledger_rows.LINE_COLUMNS, ledger_rows.line_rows_sql()),
        ("projection_transfer", ledger_rows.TRANSFER_COLUMNS, ledger_rows.transfer_rows_sql()),
    )
    with conn.transaction():
        conn.execute("TRUNCATE projection_balance, projection_statement_line, projection_transfer")
        for table, columns, rows in tables:
            conn.execute(
                sql.SQL("INSERT INTO {} ({}) ").format(sql.Identifier(table), ledger_rows.column_list(columns)) + rows,
                {"applied_at": dt.datetime.now(tz=dt.UTC)},
            )
    for table in ("projection_balance", "projection_statement_line", "projection_transfer"):
        conn.execute(f"VACUUM ANALYZE {table}")
