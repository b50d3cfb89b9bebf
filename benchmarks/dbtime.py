"""Database time of one ledger call, for scenarios h and j, and the recent history of the
account that scenario i explains. Runs with the scenario's environment (the harness starts it
with Stack.run_python), reads a JSON spec and prints JSON:

    python -m benchmarks.dbtime grant-debits SPEC.json     # h: debits drawing from 10 of 1,000 grants
    python -m benchmarks.dbtime plain-v5-v6 SPEC.json      # j: a transfer without grants, v6 against v5
    python -m benchmarks.dbtime explain-history SPEC.json  # i: grants and usage over the last 30 days

How a call is timed: in its own transaction on a connection of its own (BEGIN, the SELECT the
service sends, COMMIT: three round trips on loopback), from before BEGIN to after COMMIT, so
the deferred checks that fire at COMMIT count. The arguments are built by the service's own
code before the clock starts; nothing else runs on that connection, and the set-up between
calls (choosing the amount, replacing exhausted grants) runs on others. The backend's CPU
(psutil on its pid) is read over each whole loop and divided by the calls: one call is shorter
than the kernel's tick. The empty transaction (BEGIN, SELECT 1, COMMIT) is timed the same way
as the floor of the method.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
import psutil
import psycopg

from benchmarks.measure import CpuMeter, latency_summary

V5_FILE = Path(__file__).resolve().parent.parent / "apps/ledger/sql/functions/ledger_post_transfer.v5.sql"
V5_NAME = "ledger_post_transfer_v5"


def _connect() -> psycopg.Connection:
    """A connection of its own to the scenario's database, with Django's settings for it: the
    embedded server's DATABASE_URL names its socket directory in a form libpq does not read."""
    from django.db import connection

    settings = connection.settings_dict
    params = {
        "dbname": settings["NAME"],
        "host": settings["HOST"],
        "port": settings["PORT"],
        "user": settings["USER"],
        "password": settings["PASSWORD"],
    }
    return psycopg.connect(**{name: value for name, value in params.items() if value}, autocommit=True)


class TimedConnection:
    """A connection whose backend runs only the calls being timed."""

    def __init__(self) -> None:
        self.conn = _connect()
        row = self.conn.execute("SELECT pg_backend_pid()").fetchone()
        if row is None:
            raise RuntimeError("SELECT pg_backend_pid() returned no row")
        self.backend = psutil.Process(row[0])

    def cpu_s(self) -> float:
        times = self.backend.cpu_times()
        return times.user + times.system

    def call(self, statement: str, arguments: list[Any]) -> tuple[float, dict[str, Any]]:
        """One call in its own transaction: (milliseconds from BEGIN to the end of COMMIT, outcome)."""
        started = time.perf_counter()
        with self.conn.transaction():
            row = self.conn.execute(statement, arguments).fetchone()
        elapsed = (time.perf_counter() - started) * 1000.0
        if row is None:
            raise RuntimeError(f"{statement} returned no row")
        return elapsed, orjson.loads(row[0])

    def empty_transactions(self, count: int) -> dict[str, Any]:
        """The floor of the method: BEGIN, SELECT 1, COMMIT."""
        times = []
        for _ in range(count):
            started = time.perf_counter()
            with self.conn.transaction():
                self.conn.execute("SELECT 1").fetchone()
            times.append((time.perf_counter() - started) * 1000.0)
        return latency_summary(times)


def _post_arguments(key: str, from_id: str, to_id: str, amount: int, description: str) -> list[Any]:
    """The arguments transfer_create sends for a posted transfer of `amount` USD."""
    from apps.ledger import services

    request = services.transfer_request_single(
        idempotency_key=key,
        from_account_id=UUID(from_id),
        to_account_id=UUID(to_id),
        amount=amount,
        currency="USD",
        description=description,
    )
    return services._transfer_post_arguments(request)


def _posted(outcome: dict[str, Any]) -> str:
    if outcome.get("outcome") != "posted":
        raise RuntimeError(f"expected a posted transfer, got {outcome}")
    return outcome["transfer"]["transferId"]


def _loop(
    timed: dict[str, TimedConnection], body: Callable[[], None], other_pids: list[int]
) -> tuple[dict[str, float], dict[str, Any]]:
    """Run `body` with the CPU of the timed backends and of the machine measured around it."""
    meter = CpuMeter(
        {f"postgres ({name})": [t.backend.pid] for name, t in timed.items()}
        | {"postgres (set-up backends)": other_pids}
    ).start()
    before = {name: t.cpu_s() for name, t in timed.items()}
    body()
    cpu = {name: t.cpu_s() - before[name] for name, t in timed.items()}
    return cpu, meter.stop()


# -- h: a debit drawing from 10 of 1,000 active grants ---------------------------------------


BURN_ORDER_SQL = """
    SELECT amount - consumed - reserved - expired - voided FROM credit_grant
     WHERE account_id = %(id)s AND status = 'active' AND effective_at <= ledger_now()
       AND (expires_at IS NULL OR expires_at > ledger_now())
       AND amount - consumed - reserved - expired - voided > 0
     ORDER BY priority, expires_at NULLS LAST, created_at, id
     LIMIT %(n)s"""

LIVE_GRANTS_SQL = """
    SELECT count(*) FROM credit_grant
     WHERE account_id = %s AND status = 'active' AND amount - consumed - reserved - expired - voided > 0"""


def grant_debits(spec: dict[str, Any]) -> dict[str, Any]:
    """An account with spec['grants'] active grants (priorities 0-100, a fifth never expiring,
    the others expiring in 30 to 365 days, 50-150 each); each measured debit takes the
    remainders of the first spec['draw'] - 1 grants in burn order and half of the next one's, so
    it draws from exactly spec['draw'] grants, and the grants it exhausted are replaced before
    the next one (not timed)."""
    from apps.ledger import services
    from apps.ledger.services import POST_TRANSFER_SQL
    from benchmarks.django_tasks import accounts

    rng = random.Random(spec.get("seed", 7))
    holder, issuer, sink = accounts(3)
    aux = _connect()
    now = aux.execute("SELECT ledger_now()").fetchone()[0]  # type: ignore[index]
    made = 0

    def grants_add(count: int) -> None:
        nonlocal made
        for _ in range(count):
            made += 1
            expires = None if rng.random() < 0.2 else now + timedelta(days=rng.uniform(30, 365))
            services.grant_create(
                account_id=UUID(holder),
                funding_account_id=UUID(issuer),
                amount=rng.randint(50, 150),
                idempotency_key=f"bench-grant-{made}",
                expires_at=expires,
                priority=rng.randint(0, 100),
                description=f"bench grant {made}",
            )

    def live() -> int:
        return aux.execute(LIVE_GRANTS_SQL, [holder]).fetchone()[0]  # type: ignore[index]

    started = time.perf_counter()
    grants_add(spec["grants"])
    seeding_s = time.perf_counter() - started
    timed = TimedConnection()
    from django.db import connection

    connection.ensure_connection()
    django_pid = connection.connection.info.backend_pid
    debits_made = 0

    def debit() -> tuple[float, str, int, int]:
        nonlocal debits_made
        remainders = [r[0] for r in aux.execute(BURN_ORDER_SQL, {"id": holder, "n": spec["draw"]}).fetchall()]
        if len(remainders) < spec["draw"]:
            raise RuntimeError(f"fewer than {spec['draw']} grants to draw from: {remainders}")
        # All of the first draw - 1, and half of the last (at least 1): exactly `draw` grants.
        amount = sum(remainders[:-1]) + max(1, remainders[-1] // 2)
        live_before = live()
        debits_made += 1
        arguments = _post_arguments(f"bench-debit-{debits_made}", holder, sink, amount, "API usage")
        elapsed, outcome = timed.call(POST_TRANSFER_SQL, arguments)
        return elapsed, _posted(outcome), live_before, amount

    for _ in range(spec["warmup"]):
        debit()
        grants_add(spec["grants"] - live())
    # The planner's statistics of the seeded tables, as autovacuum keeps them in production (a
    # fresh database has none, and plans for empty tables); nothing is vacuumed meanwhile.
    aux.execute("ANALYZE credit_grant, grant_allocation, entry, transfer, account")
    repeats = []
    for _ in range(spec["repeats"]):
        times: list[float] = []
        transfers: list[str] = []
        live_counts: list[int] = []

        def body() -> None:
            for _ in range(spec["debits"]):
                elapsed, transfer_id, live_before, _ = debit()
                times.append(elapsed)  # noqa: B023
                transfers.append(transfer_id)  # noqa: B023
                live_counts.append(live_before)  # noqa: B023
                grants_add(spec["grants"] - live())

        cpu, meter = _loop({"timed backend": timed}, body, [django_pid, aux.info.backend_pid])
        drawn = aux.execute(
            """SELECT count(DISTINCT a.grant_id) FROM unnest(%s::uuid[]) t(id)
                 LEFT JOIN grant_allocation a ON a.transfer_id = t.id AND a.kind = 'draw'
                GROUP BY t.id""",
            [transfers],
        ).fetchall()
        grants_per_debit = sorted(row[0] for row in drawn)
        if grants_per_debit[0] != spec["draw"] or grants_per_debit[-1] != spec["draw"]:
            raise RuntimeError(
                f"a debit drew from {grants_per_debit[0]}-{grants_per_debit[-1]} grants, not {spec['draw']}"
            )
        repeats.append(
            {
                "debit_ms": latency_summary(times),
                "backend_cpu_ms_per_debit": round(1000 * cpu["timed backend"] / len(times), 3),
                "grants_per_debit": {"min": grants_per_debit[0], "max": grants_per_debit[-1]},
                "active_grants_before_each_debit": {"min": min(live_counts), "max": max(live_counts)},
                "empty_transaction_ms": timed.empty_transactions(200),
                "cpu": meter,
            }
        )
    grant_rows = aux.execute(
        "SELECT status, count(*) FROM credit_grant WHERE account_id = %s GROUP BY status", [holder]
    ).fetchall()
    return {
        "account": holder,
        "grants_created": made,
        "grants_by_status_at_end": dict(grant_rows),
        "seeding_seconds": round(seeding_s, 1),
        "repeats": repeats,
    }


# -- j: a transfer without grants, ledger_post_transfer v6 against v5 -------------------------


def plain_v5_v6(spec: dict[str, Any]) -> dict[str, Any]:
    """Transfers between random pairs of spec['accounts'] accounts without grants, through the
    current ledger_post_transfer (v6) and through version 5 (before grants, created here under
    another name from its file), alternating blocks of spec['per_block'] calls, each variant on
    a connection of its own. The helpers both call are the same: 0015 changed no other function
    a plain posted transfer runs."""
    from apps.ledger.services import POST_TRANSFER_SQL
    from benchmarks.django_tasks import accounts

    source = V5_FILE.read_text()
    head = "CREATE OR REPLACE FUNCTION ledger_post_transfer("
    if source.count(head) != 1:
        raise RuntimeError(f"{V5_FILE} does not define ledger_post_transfer once")
    aux = _connect()
    # The body of version 5 as the migration ran it, under another name; the text is the
    # repository's own file (no value goes into it).
    aux.execute(source.replace(head, f"CREATE OR REPLACE FUNCTION {V5_NAME}("))
    # With the settings the migrations gave ledger_post_transfer (0017: generic plans), so that
    # the two differ by their bodies alone.
    row = aux.execute("SELECT proconfig FROM pg_proc WHERE proname = 'ledger_post_transfer'").fetchone()
    for setting in (row[0] if row else None) or []:
        name, value = setting.split("=", 1)
        aux.execute(f"ALTER FUNCTION {V5_NAME} SET {name} = '{value}'")
    statements = {"v6": POST_TRANSFER_SQL, "v5": POST_TRANSFER_SQL.replace("ledger_post_transfer(", f"{V5_NAME}(")}
    ids = accounts(spec["accounts"])
    rng = random.Random(spec.get("seed", 7))
    timed = {name: TimedConnection() for name in statements}
    made = 0

    def block(name: str, count: int, sink: list[float]) -> None:
        nonlocal made
        for _ in range(count):
            made += 1
            from_id, to_id = rng.sample(ids, 2)
            arguments = _post_arguments(f"bench-plain-{made}", from_id, to_id, rng.randint(1, 10_000), "plain")
            elapsed, outcome = timed[name].call(statements[name], arguments)
            _posted(outcome)
            sink.append(elapsed)

    for name in statements:
        block(name, spec["warmup"], [])
    repeats = []
    for _ in range(spec["repeats"]):
        times: dict[str, list[float]] = {name: [] for name in statements}

        def body() -> None:
            for index in range(spec["blocks"]):
                order = ("v5", "v6") if index % 2 == 0 else ("v6", "v5")
                for name in order:
                    block(name, spec["per_block"], times[name])  # noqa: B023 - called right here

        cpu, meter = _loop(timed, body, [aux.info.backend_pid])
        repeats.append(
            {
                name: {
                    "transfer_ms": latency_summary(times[name]),
                    "backend_cpu_ms_per_transfer": round(1000 * cpu[name] / len(times[name]), 3),
                }
                for name in statements
            }
            | {"empty_transaction_ms": timed["v6"].empty_transactions(200), "cpu": meter}
        )
    grants = aux.execute("SELECT count(*) FROM credit_grant").fetchone()[0]  # type: ignore[index]
    if grants:
        raise RuntimeError(f"{grants} grants exist: this scenario is about accounts without grants")
    return {"accounts": len(ids), "transfers_made": made, "repeats": repeats}


# -- i: the last 30 days of the explained account ---------------------------------------------


def explain_history(spec: dict[str, Any]) -> dict[str, Any]:
    """What a monthly plan makes of the account's last 30 days, through the services with the
    ledger's clock moved back (ledger.clock_offset, as the tests move it): a plan grant that
    expires before now, a purchased top-up that never expires, a promotion every 5 days at a
    higher priority that expires 7 days later, and spec['debits'] usage debits spread evenly,
    drawing from them. The expiries are booked by the next command after them, as in
    production."""
    from django.db import connection

    from apps.ledger import services

    account, issuer, sink = spec["account"], spec["issuer"], spec["sink"]
    rng = random.Random(spec.get("seed", 7))
    days = 30
    aux = _connect()
    now = aux.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
    start = now - timedelta(days=days)

    def clock(at) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('ledger.clock_offset', %s, false)", [f"{(at - now).total_seconds()} s"])

    grants = 0

    def grant(at, amount: int, priority: int, expires_at, description: str) -> None:
        nonlocal grants
        grants += 1
        clock(at)
        services.grant_create(
            account_id=UUID(account),
            funding_account_id=UUID(issuer),
            amount=amount,
            idempotency_key=f"bench-explain-grant-{grants}",
            expires_at=expires_at,
            priority=priority,
            description=description,
        )

    started = time.perf_counter()
    grant(start, 300_000, 50, now - timedelta(days=1), "Monthly plan")
    grant(start + timedelta(minutes=1), 100_000, 90, None, "Top-up")
    step = timedelta(days=days) / (spec["debits"] + 1)
    promotions = iter(range(1, days // 5 + 1))
    next_promotion = start + timedelta(days=1)
    for n in range(1, spec["debits"] + 1):
        at = start + step * n
        if at >= next_promotion and next(promotions, None) is not None:
            grant(at, 20_000, 10, at + timedelta(days=7), f"Promotion {at:%b %d}")
            next_promotion += timedelta(days=5)
        clock(at + timedelta(seconds=1))
        services.transfer_create(
            idempotency_key=f"bench-explain-usage-{n}",
            from_account_id=UUID(account),
            to_account_id=UUID(sink),
            amount=rng.randint(50, 250),
            currency="USD",
            description="API usage",
        )
    clock(now)
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('ledger.clock_offset', '', false)")
    # History, as f's: its events were published long ago (the stack's relay must not send them).
    aux.execute("UPDATE outbox_event SET published_at = now() WHERE published_at IS NULL")
    counts = aux.execute(
        """SELECT (SELECT count(*) FROM credit_grant WHERE account_id = %(id)s),
                  (SELECT count(*) FROM grant_allocation a JOIN credit_grant g ON g.id = a.grant_id
                    WHERE g.account_id = %(id)s),
                  (SELECT last_sequence FROM account WHERE id = %(id)s)""",
        {"id": account},
    ).fetchone()
    if counts is None:
        raise RuntimeError("the account's counts returned no row")
    return {
        "grants": counts[0],
        "allocations": counts[1],
        "account_entries": counts[2],
        "debits": spec["debits"],
        "history_from": start.isoformat(),
        "history_to": now.isoformat(),
        "seconds": round(time.perf_counter() - started, 1),
    }


COMMANDS = {"grant-debits": grant_debits, "plain-v5-v6": plain_v5_v6, "explain-history": explain_history}


def main(argv: list[str]) -> int:
    import django

    django.setup()
    command, spec_path = argv[1], argv[2]
    if command not in COMMANDS:
        raise SystemExit(f"unknown command {command}")
    print(json.dumps(COMMANDS[command](json.loads(Path(spec_path).read_text())), default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
