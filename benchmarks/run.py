"""Credit Ledger benchmark harness (`make bench`; benchmarks/README.md explains the numbers).

    python -m benchmarks.run --scenario all            # every scenario, medians of repeats
    python -m benchmarks.run --scenario c --repeat 1   # one scenario
    python -m benchmarks.run --smoke                   # tiny sizes, a few seconds (the test suite)

Every scenario starts its own stack in production mode (benchmarks/stack.py) on a database of
its own, drives it from a separate load-generator process (benchmarks/loadgen.py), and writes
benchmarks/results/<date>-<scenario>.json. A transfer counts only once it is committed AND
visible in the projection (its projection_transfer row and both statement lines). It exits 1
when a run at full size misses a target; smoke sizes are not judged.

Scenarios:
  a  the seed's: 20 clients, 2 accounts, a transfer each then 10 ms think time (closed loop)
  b  open loop, 400 transfers/s across 10,000 accounts, 60 s
  c  maximum sustained throughput across 10,000 accounts: closed loop at 8, 16, 32, 64
     clients, the best end-to-end rate; at 60 % of that rate, the CPU per transfer with API keys
     and rate limits against a web without them; then pgbench tpcb-like on the same server
  d  hot account: 64 clients, each paying one shared account from an account of its own
  e  replay_projections over 1,000,000 entries
  f  balance (now and at random instants) and statement reads of an account with 1,000,000 entries
  g  POST /transfers/batch of 100 and of 1,000 transfers, atomic and not
  h  database time of a debit drawing from 10 of an account's 1,000 active grants
  i  GET /accounts/{id}/explain of an account with 100,000 entries
  j  database time of a transfer between accounts without grants: ledger_post_transfer v6 against v5
  k  the pipeline alone: the outbox relay with 1 and 2 shards, the consumer with 1 and 2 processes
     (benchmarks/pipeline.py, events/s and CPU per event)

a-d also run against a second web server with group commit off (LEDGER_GROUP_COMMIT=off), in
the same run, unless --no-group-commit-off.

h and j time single calls of the posting function on an otherwise idle database (no stack;
benchmarks/dbtime.py says how).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python benchmarks/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from psycopg import sql

from benchmarks import pipeline
from benchmarks import seed as seeding
from benchmarks.measure import CpuMeter, OutboxSampler, latency_summary, machine_info, spread
from benchmarks.pgbench import pgbench_init, pgbench_run
from benchmarks.stack import BASE_DIR, PYTHON, PostgresServer, Stack, StackOptions

BENCH_DIR = Path(__file__).resolve().parent
#: The web server without group commit that a–d also run against (unless --no-group-commit-off).
GROUP_COMMIT_OFF = "web-group-commit-off"
#: Each web's part of the idempotency keys of its phases: none is the start of another, so that
#: a phase's `LIKE 'prefix-%'` never counts another's transfers.
LABELS = {"web": "gc-on", GROUP_COMMIT_OFF: "gc-off"}
# Chosen by measurement: docs/adr/0012-web-server.md.
DEFAULT_WEB_WORKERS = 2
DEFAULT_WEB_THREADS = 4

TITLES = {
    "a": "seed: 20 clients, 2 accounts, 10 ms think time",
    "b": "open loop 400 transfers/s, 10,000 accounts",
    "c": "maximum sustained throughput, 10,000 accounts",
    "d": "hot account: 64 clients paying one account",
    "e": "replay_projections over 1,000,000 entries",
    "f": "reads of an account with 1,000,000 entries",
    "g": "batches: POST /transfers/batch of 100 and 1,000 transfers, 10,000 accounts",
    "h": "database time of a debit drawing from 10 of 1,000 active grants",
    "i": "explanation of an account with 100,000 entries",
    "j": "database time of a transfer without grants: ledger_post_transfer v6 against v5",
    "k": pipeline.TITLE,
}

# Normal and smoke sizes. --duration overrides the load seconds of a, b, d and of each step of c.
SIZES: dict[bool, dict[str, Any]] = {
    False: {
        "a": {"clients": 20, "think_ms": 10, "duration": 30},
        "b": {"rate": 400, "accounts": 10_000, "duration": 60},
        "c": {
            "steps": [8, 16, 32, 64],
            "accounts": 10_000,
            "duration": 15,
            "auth_pairs": 2,
            "pgbench_seconds": 30,
            "pgbench_scale": 10,
        },
        "d": {"clients": 64, "duration": 30},
        "e": {"accounts": 10_000, "transfers": 500_000},
        "f": {"counterparties": 1_000, "transfers": 1_000_000, "clients": 2, "duration": 10, "deep_after": 900_000},
        "g": {"accounts": 10_000, "batch_sizes": [100, 1_000], "clients": 4, "duration": 15},
        "h": {"grants": 1_000, "draw": 10, "debits": 200, "warmup": 20},
        "i": {"counterparties": 100, "entries": 100_000, "debits": 3_000, "clients": 2, "duration": 10},
        "j": {"accounts": 100, "blocks": 20, "per_block": 25, "warmup": 50},
        "warmup": 3,
    },
    True: {
        "a": {"clients": 4, "think_ms": 10, "duration": 2},
        "b": {"rate": 50, "accounts": 100, "duration": 2},
        "c": {"steps": [4], "accounts": 100, "duration": 2, "auth_pairs": 1, "pgbench_seconds": 2, "pgbench_scale": 1},
        "d": {"clients": 8, "duration": 2},
        "e": {"accounts": 100, "transfers": 2_000},
        "f": {"counterparties": 10, "transfers": 2_000, "clients": 2, "duration": 1, "deep_after": 1_500},
        "g": {"accounts": 100, "batch_sizes": [5, 20], "clients": 2, "duration": 2},
        "h": {"grants": 30, "draw": 10, "debits": 5, "warmup": 1},
        "i": {"counterparties": 5, "entries": 600, "debits": 30, "clients": 1, "duration": 1},
        "j": {"accounts": 5, "blocks": 2, "per_block": 3, "warmup": 2},
        "warmup": 0.5,
    },
}

TARGETS = {
    "b": [("http_p95_ms", "<", 20.0), ("c2p_p95_ms", "<", 250.0), ("outbox_max_backlog", "<", 100)],
    # Issue 12: API keys and rate limits cost under 5 % of the CPU per transfer (auth_cost).
    "c": [("e2e_tps", ">=", 800.0), ("pgbench_ratio", ">=", 0.4), ("auth_cpu_share_pct", "<", 5.0)],
    "d": [("e2e_vs_c", ">=", 0.5), ("errors", "==", 0), ("deadlocks", "==", 0)],
    "e": [("replay_seconds", "<=", 60.0)],
    # Issue 4: every read under 10 ms p95; issue 9: the point-in-time balance, from the ledger.
    "f": [("read_p95_ms", "<", 10.0), ("balance_as_of_p95_ms", "<", 10.0)],
    "h": [("debit_p95_ms", "<", 5.0)],
    "i": [("explain_default_p95_ms", "<", 50.0)],
    # "Nothing measurable": v6's median within 5 % of v5's, the noise of interleaved repeats here.
    "j": [("v6_over_v5_median", "<=", 1.05)],
}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- one load phase ----------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, pg: PostgresServer) -> None:
        self.args = args
        self.pg = pg
        self.smoke = args.smoke
        self.sizes = SIZES[args.smoke]
        self.workdir = Path(args.work_dir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.run_id = uuid.uuid4().hex[:6]
        self.options = StackOptions(
            server=args.server,
            web_workers=args.web_workers,
            web_threads=args.web_threads,
            redis_db=args.redis_db,
            kafka_bootstrap=os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or None,
            celery_broker=args.broker,
        )

    def size(self, scenario: str, key: str) -> Any:
        value = self.sizes[scenario][key]
        if key == "duration" and self.args.duration and scenario in "abcdg":
            return self.args.duration
        if key == "steps" and self.args.steps:
            return [int(x) for x in self.args.steps.split(",")]
        if key == "pgbench_seconds" and self.args.pgbench_seconds is not None:
            return self.args.pgbench_seconds
        return value

    def db_name(self, scenario: str) -> str:
        return f"{self.args.db_prefix}_{scenario}"

    # The harness's own connection for polling and queries; its backend is not "the stack".
    def monitor(self, stack: Stack):
        conn = stack.connect()
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        if row is None:
            raise RuntimeError("SELECT pg_backend_pid() returned no row")
        return conn, row[0]

    def loadgen(self, stack: Stack, spec: dict[str, Any], meter: CpuMeter | None = None) -> dict[str, Any]:
        spec = {"host": "127.0.0.1", "port": stack.port, "authorization": stack.authorization, **spec}
        with tempfile.TemporaryDirectory(dir=self.workdir) as tmp:
            spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "out.json"
            spec_path.write_text(json.dumps(spec))
            process = subprocess.Popen(
                [PYTHON, "-m", "benchmarks.loadgen", str(spec_path), str(out_path)], cwd=BASE_DIR
            )
            if meter is not None:
                meter.roots["loadgen"] = [process.pid]
            limit = float(spec.get("duration", 60)) + float(spec.get("timeout", 30)) + 120
            try:
                process.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                process.kill()
                raise
            if process.returncode != 0:
                raise RuntimeError(f"load generator failed with {process.returncode}")
            return json.loads(out_path.read_text())

    def wait_visible(self, conn, prefix: str, since: float, timeout: float = 180.0) -> tuple[int, float]:
        """Wait until every committed transfer with `prefix` has its projection_transfer row and
        both statement lines: (committed transfers, seconds waited)."""
        started = time.perf_counter()
        since_ts = dt.datetime.fromtimestamp(since - 5, tz=dt.UTC)
        while True:
            committed, projected, lines_missing = conn.execute(
                """SELECT count(*), count(p.transfer_id),
                          (SELECT count(*) FROM entry e JOIN transfer t2 ON t2.id = e.transfer_id
                             LEFT JOIN projection_statement_line l
                                    ON l.account_id = e.account_id AND l.sequence = e.sequence
                            WHERE t2.created_at >= %(since)s AND t2.idempotency_key LIKE %(like)s
                              AND l.account_id IS NULL)
                     FROM transfer t LEFT JOIN projection_transfer p ON p.transfer_id = t.id
                    WHERE t.created_at >= %(since)s AND t.idempotency_key LIKE %(like)s""",
                {"since": since_ts, "like": prefix + "-%"},
            ).fetchone()
            if projected == committed and lines_missing == 0:
                break
            if time.perf_counter() - started > timeout:
                log(f"  timeout: {committed - projected} transfers and {lines_missing} lines not projected")
                break
            time.sleep(0.1)
        return committed, time.perf_counter() - started

    def visibility(self, conn, prefix: str, since: float) -> list[tuple[float, float | None]]:
        """Per committed transfer: (created_at, visible_at) epochs; visible_at None if not fully projected."""
        since_ts = dt.datetime.fromtimestamp(since - 5, tz=dt.UTC)
        return conn.execute(
            """SELECT extract(epoch FROM t.created_at)::float8,
                      CASE WHEN p.applied_at IS NOT NULL AND count(l.account_id) = 2
                           THEN extract(epoch FROM greatest(p.applied_at, max(l.applied_at)))::float8 END
                 FROM transfer t
                 LEFT JOIN projection_transfer p ON p.transfer_id = t.id
                 LEFT JOIN entry e ON e.transfer_id = t.id
                 LEFT JOIN projection_statement_line l ON l.account_id = e.account_id AND l.sequence = e.sequence
                WHERE t.created_at >= %(since)s AND t.idempotency_key LIKE %(like)s
                GROUP BY t.id, t.created_at, p.applied_at""",
            {"since": since_ts, "like": prefix + "-%"},
        ).fetchall()

    def wait_idle(self, stack: Stack, conn, timeout: float = 120.0) -> None:
        """Until the outbox is drained and the consumer has applied what was relayed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            stack.check_alive()
            backlog = conn.execute("SELECT count(*) FROM outbox_event WHERE published_at IS NULL").fetchone()[0]
            if backlog == 0:
                return
            time.sleep(0.2)
        raise RuntimeError("the outbox did not drain")

    def retries_logged(self, stack: Stack, offset: int) -> tuple[dict[str, int], int]:
        path = stack.logdir / "web.log"
        counts: dict[str, int] = {}
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
        for line in data.decode(errors="replace").splitlines():
            if "retrying transaction after" in line:
                code = line.split("retrying transaction after", 1)[1].split()[0]
                counts[code] = counts.get(code, 0) + 1
        return counts, offset + len(data)

    def phase(self, stack: Stack, spec: dict[str, Any], prefix: str, web: str = "web") -> dict[str, Any]:
        """One measured run of the load generator against the web server `web` (its CPU is the
        component "web"); the end-to-end numbers come from the database."""
        conn, monitor_pid = self.monitor(stack)
        try:
            log_offset = (stack.logdir / "web.log").stat().st_size
            sampler = OutboxSampler(stack.connect).start()
            meter = CpuMeter(
                stack.component_pids(web),
                pg=self.pg,
                databases={stack.database},
                harness_pids={monitor_pid, sampler.backend_pid},
            ).start()
            started = time.time()
            profiler = None
            if self.args.py_spy:
                from benchmarks.profile import Profiler

                profiler = Profiler(
                    Path(self.args.py_spy), prefix, stack.component_pids(web), float(spec.get("duration", 10))
                )
            result = self.loadgen(stack, spec, meter)
            load_end = time.time()
            profiles = profiler.stop() if profiler else None
            committed, drain_s = self.wait_visible(conn, prefix, started)
            cpu = meter.stop()
            outbox = sampler.stop()
            stack.check_alive()
            rows = self.visibility(conn, prefix, started)
            retries, _ = self.retries_logged(stack, log_offset)
        finally:
            conn.close()
        first_send = result["first_send"] or started
        visible_at = [v for _, v in rows if v is not None]
        c2p = [(v - c) * 1000.0 for c, v in rows if v is not None]
        last_visible = max(visible_at) if visible_at else None
        window = (last_visible - first_send) if last_visible else None
        http_window = (result["last_answer"] - first_send) if result["last_answer"] else None
        transfers_per_request = int(spec["requests"].get("size", 1))  # a batch carries several
        errors = {k: v for k, v in result["outcomes"].items() if k not in ("200", "201")}
        http = latency_summary(result["ok_latencies_ms"])
        http_all = latency_summary(result["ok_latencies_ms"] + result["error_latencies_ms"])
        c2p_summary = latency_summary(c2p)
        phase = {
            "prefix": prefix,
            "load": {k: spec[k] for k in ("mode", "duration", "concurrency", "think_ms", "rate") if k in spec},
            "requests": result["requests"],
            "http_ok": result["ok"],
            "committed": committed,
            "visible": len(visible_at),
            "e2e_tps": round(len(visible_at) / window, 1) if window else 0.0,
            "http_tps": round(result["ok"] * transfers_per_request / http_window, 1) if http_window else 0.0,
            "transfers_per_request": transfers_per_request,
            "offered_tps": spec.get("rate"),
            "load_seconds": round(load_end - started, 2),
            "drain_after_load_s": round(drain_s, 2),
            "first_send_to_last_visible_s": round(window, 3) if window else None,
            "http_latency_ms": http,
            "http_latency_all_ms": http_all,
            "commit_to_projection_ms": c2p_summary,
            "outbox": outbox,
            "errors": errors,
            "errors_total": sum(errors.values()),
            "transaction_retries_logged": retries,
            "cpu": cpu,
            # CPU milliseconds each visible transfer cost, by component: robust to a busy machine.
            "cpu_ms_per_transfer": {
                name: round(1000 * c["cpu_s"] / len(visible_at), 3) for name, c in cpu["components"].items()
            }
            if visible_at
            else {},
            "loadgen_cpu_cores": round(result["cpu_share_of_one_core"], 3),
            "answers_per_second": result["answers_per_second"],
            **(
                {
                    "py_spy": {
                        name: {"samples": p["samples"], "own_top10": p["own"][:10]} for name, p in profiles.items()
                    }
                }
                if profiles
                else {}
            ),
        }
        log(
            f"  {prefix}: e2e {phase['e2e_tps']}/s, http {phase['http_tps']}/s, http p95 {http['p95']} ms, "
            f"c2p p95 {c2p_summary['p95']} ms, backlog max {outbox['max_backlog']}, errors {phase['errors_total']}, "
            f"loadgen {phase['loadgen_cpu_cores']} cores"
        )
        return phase

    # -- scenarios ---------------------------------------------------------------------------

    def accounts(self, stack: Stack, count: int) -> list[str]:
        done = stack.run_python("benchmarks.django_tasks", "accounts", str(count), timeout=600)
        ids = json.loads(done.stdout)
        conn, _ = self.monitor(stack)
        try:
            self.wait_idle(stack, conn)
            deadline = time.monotonic() + 120
            while conn.execute("SELECT count(*) FROM projection_balance").fetchone()[0] < count:
                if time.monotonic() > deadline:
                    raise RuntimeError("the accounts did not reach the projection")
                stack.check_alive()
                time.sleep(0.2)
        finally:
            conn.close()
        return ids

    def warmup(self, stack: Stack, requests: dict[str, Any], concurrency: int, web: str = "web") -> None:
        seconds = self.sizes["warmup"]
        if not seconds:
            return
        prefix = f"warm-{self.run_id}-{uuid.uuid4().hex[:4]}"
        self.loadgen(
            stack,
            {
                "mode": "closed",
                "duration": seconds,
                "concurrency": concurrency,
                "port": stack.web_ports[web],
                "requests": {**requests, "key_prefix": prefix},
            },
        )
        conn, _ = self.monitor(stack)
        try:
            self.wait_visible(conn, prefix, time.time() - seconds - 10, timeout=60)
        finally:
            conn.close()

    def repeats(self, scenario: str) -> int:
        if self.args.repeat is not None:
            return self.args.repeat
        return 1 if (self.smoke or scenario in "efi") else 3

    def load_scenario(self, scenario: str) -> dict[str, Any]:
        sizes = self.sizes[scenario]
        stack = Stack(self.pg, self.db_name(scenario), self.options, self.workdir)
        out: dict[str, Any] = {"repeats": []}
        try:
            stack.start()
            out["settings"] = stack.settings_summary()
            if scenario == "a":
                ids = self.accounts(stack, 2)
                requests = {"kind": "transfer", "pattern": "pair", "accounts": ids}
                spec = {
                    "mode": "closed",
                    "concurrency": sizes["clients"],
                    "think_ms": sizes["think_ms"],
                    "duration": self.size("a", "duration"),
                }
                concurrency = sizes["clients"]
            elif scenario in "bc":
                ids = self.accounts(stack, sizes["accounts"])
                requests = {"kind": "transfer", "pattern": "random", "accounts": ids}
                # c ramps up with specs of its own.
                spec = (
                    {"mode": "open", "rate": sizes["rate"], "duration": self.size("b", "duration")}
                    if scenario == "b"
                    else {}
                )
                concurrency = 16
            elif scenario == "d":
                clients = sizes["clients"]
                ids = self.accounts(stack, clients + 1)
                requests = {"kind": "transfer", "pattern": "hot", "hot": ids[0], "sources": ids[1:]}
                spec = {"mode": "closed", "concurrency": clients, "duration": self.size("d", "duration")}
                concurrency = clients
            out["scenario_settings"] = {
                **sizes,
                "accounts_created": len(ids),
                "duration": self.size(scenario, "duration"),
            }
            self.warmup(stack, requests, concurrency)
            if self.args.group_commit_off:
                stack.start_web(GROUP_COMMIT_OFF, {"LEDGER_GROUP_COMMIT": "off"})
                self.warmup(stack, requests, concurrency, web=GROUP_COMMIT_OFF)
            if scenario == "c" and self.size("c", "pgbench_seconds"):
                out["pgbench_init"] = pgbench_init(
                    self.pg, self.args.db_prefix + "_pgbench", scale=sizes["pgbench_scale"]
                )
            for repeat in range(1, self.repeats(scenario) + 1):
                log(f"scenario {scenario} repeat {repeat}")
                # With group commit off too: the same load against a web without it, in an
                # order that alternates with the repeat.
                webs = ["web", GROUP_COMMIT_OFF] if self.args.group_commit_off else ["web"]
                runs: dict[str, dict[str, Any]] = {}
                for web in webs if repeat % 2 else reversed(webs):
                    if scenario == "c":
                        runs[web] = self.ramp(stack, requests, repeat, web=web)
                    else:
                        prefix = f"{scenario}-{self.run_id}-r{repeat}-{LABELS[web]}"
                        runs[web] = self.phase(
                            stack,
                            {
                                **spec,
                                "port": stack.web_ports[web],
                                "requests": {**requests, "key_prefix": prefix},
                            },
                            prefix,
                            web=web,
                        )
                out["repeats"].append(
                    {**runs["web"], **({"group_commit_off": runs[GROUP_COMMIT_OFF]} if len(runs) > 1 else {})}
                )
        finally:
            stack.stop()
            out["deadlocks"] = self.deadlocks(stack.database)
            if not self.args.keep_db:
                self.pg.drop(stack.database)
        return out

    def deadlocks(self, database: str) -> int | None:
        with self.pg.connect("postgres") as conn:
            conn.execute("SELECT pg_stat_clear_snapshot()")
            row = conn.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = %s", [database]).fetchone()
        return int(row[0]) if row else None

    def ramp(self, stack: Stack, requests: dict[str, Any], repeat: int, web: str = "web") -> dict[str, Any]:
        """c's steps against the web server `web`, and the best; against the stack's own web,
        then what API keys cost at that concurrency and pgbench with the same clients."""
        steps = []
        for concurrency in self.size("c", "steps"):
            prefix = f"c-{self.run_id}-r{repeat}-{LABELS[web]}-c{concurrency}"
            spec = {
                "mode": "closed",
                "concurrency": concurrency,
                "duration": self.size("c", "duration"),
                "port": stack.web_ports[web],
                "requests": {**requests, "key_prefix": prefix},
            }
            steps.append(self.phase(stack, spec, prefix, web=web))
        best = max(steps, key=lambda s: s["e2e_tps"])
        clients = best["load"]["concurrency"]
        if web != "web":
            return {**best, "best_concurrency": clients, "steps": steps}
        auth = self.auth_cost(stack, requests, max(1, round(AUTH_LOAD_SHARE * best["e2e_tps"])), repeat)
        seconds = self.size("c", "pgbench_seconds")
        if not seconds:
            return {
                **best,
                "best_concurrency": clients,
                "steps": steps,
                "auth": auth,
                "pgbench": {"tps": None},
                "pgbench_ratio": None,
            }
        log(f"  pgbench tpcb-like, {clients} clients, {seconds} s")
        bench = pgbench_run(self.pg, self.args.db_prefix + "_pgbench", clients=clients, seconds=seconds)
        log(f"  pgbench: {bench['tps']:.0f} tps; ratio {best['e2e_tps'] / bench['tps']:.2f}")
        return {
            **best,
            "best_concurrency": clients,
            "steps": steps,
            "auth": auth,
            "pgbench": bench,
            "pgbench_ratio": round(best["e2e_tps"] / bench["tps"], 3) if bench["tps"] else None,
        }

    def auth_cost(self, stack: Stack, requests: dict[str, Any], rate: int, repeat: int) -> dict[str, Any]:
        """What API keys and rate limits cost (issue 12: under 5 % of c's CPU per transfer):
        pairs of phases, one against the stack's web (keys required, every request counted) and
        one against a second web without keys (benchmarks/settings_auth_off.py), in an order
        that alternates, against the same workers and database. Both send the same requests,
        Authorization header included, at the same fixed `rate` (open loop, below capacity), so
        that what every component spends per second whatever the load (polling, timers) is
        shared by as many transfers in both: closed-loop phases at capacity, whose rates
        differ, moved the CPU per transfer by ±10 % between phases of one variant.

        The cost is the difference in the components that authentication and rate limits run
        in (AUTH_COMPONENTS: the web, PostgreSQL reading keys, Redis counting), over the CPU per
        transfer of the whole stack with keys; the difference over the whole stack is reported
        too, with the noise of components they do not touch (the relay, the broker, the consumer)."""
        webs = {"required": "web", "off": "web-auth-off"}
        if webs["off"] not in stack.web_ports:
            stack.start_web(webs["off"], {"DJANGO_SETTINGS_MODULE": "benchmarks.settings_auth_off"})
            self.warmup(stack, requests, 16, web=webs["off"])
        pairs = []
        for pair in range(self.size("c", "auth_pairs")):
            order = list(webs) if (repeat + pair) % 2 else list(reversed(webs))
            phases = {}
            for mode in order:
                prefix = f"c-{self.run_id}-r{repeat}-auth{pair}-{mode}"
                spec = {
                    "mode": "open",
                    "rate": rate,
                    "duration": self.size("c", "duration"),
                    "port": stack.web_ports[webs[mode]],
                    "requests": {**requests, "key_prefix": prefix},
                }
                phases[mode] = self.phase(stack, spec, prefix, web=webs[mode])
            ours = {mode: _ours_per_transfer(phase) for mode, phase in phases.items()}
            touched = {mode: _ours_per_transfer(phase, AUTH_COMPONENTS) for mode, phase in phases.items()}
            share = share_all = None
            with_keys, without, touched_with, touched_without = (
                ours["required"],
                ours["off"],
                touched["required"],
                touched["off"],
            )
            if with_keys and without and touched_with and touched_without:
                share = round(100 * (touched_with - touched_without) / with_keys, 2)
                share_all = round(100 * (with_keys - without) / with_keys, 2)
            log(
                f"  auth: {ours['required']} ms of CPU per transfer with keys, {ours['off']} without; "
                f"web, postgres and redis {touched['required']} against {touched['off']}: "
                f"{share} % ({share_all} % in all)"
            )
            pairs.append(
                {
                    "order": order,
                    "phases": phases,
                    "cpu_ms_per_transfer": ours,
                    "touched_cpu_ms_per_transfer": touched,
                    "share_pct": share,
                    "share_all_pct": share_all,
                }
            )
        return {"rate": rate, "components": list(AUTH_COMPONENTS), "pairs": pairs}

    # -- e: replay -----------------------------------------------------------------------------

    def template_name(self, scenario: str) -> str:
        import hashlib

        digest = hashlib.sha256()
        for path in sorted(BASE_DIR.glob("apps/*/migrations/*.py")) + sorted(BASE_DIR.glob("apps/*/sql/**/*.sql")):
            digest.update(path.read_bytes())
        digest.update((BENCH_DIR / "seed.py").read_bytes())
        seed_sizes = {
            k: v
            for k, v in self.sizes[scenario].items()
            if k in ("accounts", "counterparties", "transfers", "entries", "debits")
        }
        digest.update(json.dumps(seed_sizes, sort_keys=True).encode())
        if scenario == "i":  # its history ends now: the default window of the explanation is the last 30 days
            digest.update((BENCH_DIR / "dbtime.py").read_bytes())
            digest.update(dt.datetime.now(tz=dt.UTC).date().isoformat().encode())
        return f"{self.template_family(scenario)}{digest.hexdigest()[:10]}"

    def template_family(self, scenario: str) -> str:
        return f"{self.args.db_prefix}_seed{'smoke' if self.smoke else ''}_{scenario}_"

    def template(self, scenario: str, build) -> str:
        """A seeded database kept between runs (seeding is slow and not what is measured), keyed by
        the migrations, the seeder and the sizes; a scenario copies it with CREATE DATABASE ...
        TEMPLATE."""
        name = self.template_name(scenario)
        if self.pg.exists(name) and not self.args.reseed:
            log(f"seeded template {name} reused")
            return name
        for stale in self.pg.databases(self.template_family(scenario)):
            self.pg.drop(stale)
        log(f"seeding template {name} (not timed)")
        stack = Stack(self.pg, name + "_tmp", self.options, self.workdir)
        stack.prepare_database()
        stack.env = stack.build_env()
        stack.logdir.mkdir(parents=True, exist_ok=True)
        stack.run_manage("migrate", "--no-input")
        started = time.perf_counter()
        with self.pg.connect(name + "_tmp") as conn:
            info = build(conn, stack)
        info["build_seconds"] = round(time.perf_counter() - started, 1)
        started = time.perf_counter()
        verified = stack.run_manage("verify_ledger", "--json", capture=True, timeout=1800)
        report = json.loads(verified.stdout)
        if not report["ok"]:
            raise RuntimeError(f"the seeded ledger does not verify: {report}")
        info["verify_ledger"] = {
            k: report[k] for k in ("ok", "accounts", "entries", "transfers", "idempotency_records")
        }
        info["verify_seconds"] = round(time.perf_counter() - started, 1)
        log(
            f"seeded in {info['seconds']} s, with the projections {info['build_seconds']} s; "
            f"verify_ledger passed in {info['verify_seconds']} s: {info['verify_ledger']}"
        )
        with self.pg.connect(name + "_tmp") as conn:
            conn.execute("CREATE TABLE bench_seed_info (info jsonb)")
            conn.execute("INSERT INTO bench_seed_info VALUES (%s)", [json.dumps(info)])
            conn.execute("CHECKPOINT")
        with self.pg.connect("postgres") as conn:
            conn.execute(f'ALTER DATABASE "{name}_tmp" RENAME TO "{name}"')
        return name

    def seed_info(self, stack: Stack) -> dict[str, Any]:
        with stack.connect() as conn:
            row = conn.execute("SELECT info FROM bench_seed_info").fetchone()
        if row is None:
            raise RuntimeError(f"{stack.database} has no bench_seed_info: not made from a seeded template")
        return row[0]

    def scenario_e(self) -> dict[str, Any]:
        sizes = self.sizes["e"]

        def build(conn, _stack):
            info = seeding.seed_ledger(
                conn, layout="spread", accounts=sizes["accounts"], transfers=sizes["transfers"], progress=log
            )
            seeding.projections_build_direct(conn)
            return info

        template = self.template("e", build)
        stack = Stack(self.pg, self.db_name("e"), self.options, self.workdir, template=template)
        out: dict[str, Any] = {"repeats": []}
        try:
            stack.start()
            out["settings"] = stack.settings_summary()
            info = self.seed_info(stack)
            out["scenario_settings"] = {**sizes, "seed": info}
            command = BASE_DIR / "apps/projections/management/commands/replay_projections.py"
            for repeat in range(1, self.repeats("e") + 1):
                log(f"scenario e repeat {repeat}: replay over {info['entries']} entries")
                conn, monitor_pid = self.monitor(stack)
                meter = CpuMeter(
                    stack.component_pids(), pg=self.pg, databases={stack.database}, harness_pids={monitor_pid}
                ).start()
                started = time.perf_counter()
                if command.exists():
                    how = "manage.py replay_projections"
                    process = subprocess.Popen(
                        [PYTHON, "manage.py", "replay_projections"],
                        cwd=BASE_DIR,
                        env=stack.env,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT,
                        text=True,
                    )
                else:
                    how = "apps.projections.replay.projections_replay() (the command is not there yet)"
                    code = (
                        "import django; django.setup(); "
                        "from apps.projections.replay import projections_replay as r; print(r())"
                    )
                    process = subprocess.Popen(
                        [PYTHON, "-c", code],
                        cwd=BASE_DIR,
                        env=stack.env,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT,
                        text=True,
                    )
                meter.roots["replay"] = [process.pid]
                output, _ = process.communicate()
                seconds = time.perf_counter() - started
                cpu = meter.stop()
                if process.returncode != 0:
                    conn.close()
                    raise RuntimeError(f"replay failed ({process.returncode}): {output[-3000:]}")
                check = self.projection_check(conn)
                conn.close()
                log(f"  replay: {seconds:.1f} s via {how}; projection matches ledger: {check['matches']}")
                out["repeats"].append(
                    {
                        "replay_seconds": round(seconds, 2),
                        "how": how,
                        "output_tail": output[-1500:],
                        "entries": info["entries"],
                        "entries_per_s": round(info["entries"] / seconds),
                        "projection_check": check,
                        "cpu": cpu,
                    }
                )
        finally:
            stack.stop()
            if not self.args.keep_db:
                self.pg.drop(stack.database)
        return out

    def projection_check(self, conn) -> dict[str, Any]:
        row = conn.execute(
            """SELECT (SELECT count(*) FROM entry), (SELECT count(*) FROM projection_statement_line),
                      (SELECT count(*) FROM transfer), (SELECT count(*) FROM projection_transfer),
                      (SELECT count(*) FROM account a JOIN projection_balance b ON b.account_id = a.id
                        WHERE b.balance = a.balance AND b.last_sequence = a.last_sequence),
                      (SELECT count(*) FROM account)"""
        ).fetchone()
        entries, lines, transfers, projected, balances_ok, accounts = row
        return {
            "entries": entries,
            "statement_lines": lines,
            "transfers": transfers,
            "projected_transfers": projected,
            "balances_matching": balances_ok,
            "accounts": accounts,
            "matches": entries == lines and transfers == projected and balances_ok == accounts,
        }

    # -- f: reads ------------------------------------------------------------------------------

    def scenario_f(self) -> dict[str, Any]:
        sizes = self.sizes["f"]

        def build(conn, _stack):
            info = seeding.seed_ledger(
                conn, layout="hot", accounts=sizes["counterparties"] + 1, transfers=sizes["transfers"], progress=log
            )
            seeding.projections_build_direct(conn)
            return info

        template = self.template("f", build)
        stack = Stack(self.pg, self.db_name("f"), self.options, self.workdir, template=template)
        out: dict[str, Any] = {"repeats": []}
        try:
            stack.start()
            out["settings"] = stack.settings_summary()
            info = self.seed_info(stack)
            account = info["first_account"]
            with stack.connect() as conn:
                row = conn.execute("SELECT last_sequence FROM account WHERE id = %s", [account]).fetchone()
                if row is None:
                    raise RuntimeError(f"the seeded account {account} is missing")
                entries = row[0]
                row = conn.execute(
                    "SELECT created_at FROM entry WHERE account_id = %s AND sequence = %s", [account, entries // 2]
                ).fetchone()
                if row is None:
                    raise RuntimeError(f"entry {entries // 2} of the seeded account {account} is missing")
                middle = row[0]
                row = conn.execute(
                    "SELECT min(created_at), max(created_at) FROM entry WHERE account_id = %s AND sequence IN (1, %s)",
                    [account, entries],
                ).fetchone()
                if row is None or row[0] is None:
                    raise RuntimeError(f"the entries of the seeded account {account} are missing")
                first_at, last_at = row
            start = middle.astimezone(dt.UTC)
            end = start + dt.timedelta(days=1)
            fmt = "%Y-%m-%dT%H:%M:%S.%fZ"
            cursor = (
                base64.urlsafe_b64encode(json.dumps({"after": sizes["deep_after"]}, separators=(",", ":")).encode())
                .decode()
                .rstrip("=")
            )
            # Instants drawn uniformly over the account's history, the same ones in every repeat.
            rng = random.Random(7)
            span = (last_at - first_at).total_seconds()
            as_of_paths = [
                f"/accounts/{account}/balance?asOf="
                + (first_at + dt.timedelta(seconds=rng.uniform(0, span))).astimezone(dt.UTC).strftime(fmt)
                for _ in range(1_000)
            ]
            kinds: dict[str, str | list[str]] = {
                "balance": f"/accounts/{account}/balance",
                "balance_as_of": as_of_paths,
                "statement_first_page": f"/accounts/{account}/statements?limit=50",
                "statement_deep_cursor": f"/accounts/{account}/statements?limit=50&cursor={cursor}",
                "statement_time_range": (
                    f"/accounts/{account}/statements?limit=50&from={start.strftime(fmt)}&to={end.strftime(fmt)}"
                ),
            }
            out["scenario_settings"] = {
                **sizes,
                "account": account,
                "account_entries": entries,
                "paths": {kind: paths for kind, paths in kinds.items() if isinstance(paths, str)},
                "as_of_instants": {"count": len(as_of_paths), "from": first_at, "to": last_at},
                "seed": info,
            }
            for paths in kinds.values():  # warm-up, and a check that each answers 200 with data
                self.loadgen(
                    stack,
                    {
                        "mode": "closed",
                        "concurrency": 1,
                        "duration": 5,
                        "max_requests": 3,
                        "requests": {"kind": "get", "paths": _paths(paths)},
                    },
                )
            self.check_reads(stack, kinds)
            for repeat in range(1, self.repeats("f") + 1):
                log(f"scenario f repeat {repeat}")
                out["repeats"].append(self.read_repeat(stack, kinds, sizes["clients"], sizes["duration"]))
        finally:
            stack.stop()
            if not self.args.keep_db:
                self.pg.drop(stack.database)
        return out

    def read_repeat(
        self, stack: Stack, kinds: dict[str, str | list[str]], clients: int, duration: float
    ) -> dict[str, Any]:
        """One repeat of f's and i's reads: each kind in turn, `clients` in a closed loop for `duration` s."""
        per_kind = {}
        all_latencies: list[float] = []
        for kind, paths in kinds.items():
            meter = CpuMeter(stack.component_pids(), pg=self.pg, databases={stack.database}).start()
            result = self.loadgen(
                stack,
                {
                    "mode": "closed",
                    "concurrency": clients,
                    "duration": duration,
                    "requests": {"kind": "get", "paths": _paths(paths)},
                },
                meter,
            )
            cpu = meter.stop()
            summary = latency_summary(result["ok_latencies_ms"])
            all_latencies += result["ok_latencies_ms"]
            per_kind[kind] = {
                "latency_ms": summary,
                "requests": result["requests"],
                "ok": result["ok"],
                "rps": round(result["ok"] / result["elapsed_s"], 1),
                "errors": {k: v for k, v in result["outcomes"].items() if k != "200"},
                "loadgen_cpu_cores": round(result["cpu_share_of_one_core"], 3),
                "cpu": cpu,
            }
            log(
                f"  {kind}: p50 {summary['p50']} p95 {summary['p95']} p99 {summary['p99']} ms, "
                f"{per_kind[kind]['rps']} req/s"
            )
        return {
            "kinds": per_kind,
            "all": latency_summary(all_latencies),
            "read_p95_ms": max(k["latency_ms"]["p95"] for k in per_kind.values()),
            "errors_total": sum(sum(k["errors"].values()) for k in per_kind.values()),
        }

    # -- g: batches -----------------------------------------------------------------------------

    def scenario_g(self) -> dict[str, Any]:
        """Closed loop of POST /transfers/batch, one phase per batch size and atomicity. A
        transfer counts as in a-d: once committed and visible in the projection."""
        sizes = self.sizes["g"]
        stack = Stack(self.pg, self.db_name("g"), self.options, self.workdir)
        out: dict[str, Any] = {"repeats": []}
        try:
            stack.start()
            out["settings"] = stack.settings_summary()
            ids = self.accounts(stack, sizes["accounts"])
            duration = self.size("g", "duration")
            out["scenario_settings"] = {**sizes, "accounts_created": len(ids), "duration": duration}
            requests = {"kind": "batch", "pattern": "random", "accounts": ids}
            self.warmup(stack, {**requests, "size": sizes["batch_sizes"][0], "atomic": False}, sizes["clients"])
            for repeat in range(1, self.repeats("g") + 1):
                log(f"scenario g repeat {repeat}")
                variants = {}
                for size in sizes["batch_sizes"]:
                    for atomic in (False, True):
                        prefix = f"g-{self.run_id}-r{repeat}-{size}{'a' if atomic else 'n'}"
                        spec = {
                            "mode": "closed",
                            "concurrency": sizes["clients"],
                            "duration": duration,
                            "requests": {**requests, "size": size, "atomic": atomic, "key_prefix": prefix},
                        }
                        variants[batch_variant(size, atomic)] = self.phase(stack, spec, prefix)
                out["repeats"].append({"variants": variants})
        finally:
            stack.stop()
            out["deadlocks"] = self.deadlocks(stack.database)
            if not self.args.keep_db:
                self.pg.drop(stack.database)
        return out

    # -- h and j: database time of single calls -------------------------------------------------

    def db_time_scenario(self, scenario: str) -> dict[str, Any]:
        """h and j: benchmarks/dbtime.py on a freshly migrated database, no stack running."""
        command = {"h": "grant-debits", "j": "plain-v5-v6"}[scenario]
        stack = Stack(self.pg, self.db_name(scenario), self.options, self.workdir)
        out: dict[str, Any] = {}
        try:
            stack.prepare_database()
            stack.env = stack.build_env()
            stack.logdir.mkdir(parents=True, exist_ok=True)
            stack.run_manage("migrate", "--no-input")
            spec = {**self.sizes[scenario], "repeats": self.repeats(scenario)}
            out["settings"] = {"postgres": {"version": self.pg.version, **self.pg.settings}, "stack": "none"}
            out["scenario_settings"] = spec
            log(f"  benchmarks.dbtime {command}: {spec}")
            with tempfile.NamedTemporaryFile("w", suffix=".json", dir=self.workdir) as spec_file:
                spec_file.write(json.dumps(spec))
                spec_file.flush()
                done = stack.run_python("benchmarks.dbtime", command, spec_file.name, timeout=3600)
            result = json.loads(done.stdout)
            out["repeats"] = result.pop("repeats")
            out["scenario_settings"]["measured"] = result
            for number, rep in enumerate(out["repeats"], 1):
                log(f"  repeat {number}: {_db_time_line(scenario, rep)}")
        finally:
            if not self.args.keep_db:
                self.pg.drop(stack.database)
        return out

    # -- i: the explanation --------------------------------------------------------------------

    def scenario_i(self) -> dict[str, Any]:
        """GET /accounts/{id}/explain of an account with `entries` entries: a year of plain
        transfers seeded set-based (as f's, ending 30 days ago), then the last 30 days through the
        services with the ledger's clock moved (benchmarks/dbtime.py explain-history): grants,
        usage debits drawing from them, expiries."""
        sizes = self.sizes["i"]

        def build(conn, stack: Stack):
            accounts = sizes["counterparties"] + 1
            # The real history adds the debits, 2 + 6 grants and their expiries to the account.
            seeded = sizes["entries"] - sizes["debits"] - 14
            info = seeding.seed_ledger(
                conn,
                layout="hot",
                accounts=accounts,
                transfers=seeded,
                span_days=365,
                ends_days_ago=30,
                progress=log,
            )
            rows = conn.execute("SELECT name, id FROM account WHERE name IN ('seed-1', 'seed-2')").fetchall()
            named = {name: str(account_id) for name, account_id in rows}
            spec = {"account": info["first_account"], "issuer": named["seed-1"], "sink": named["seed-2"], **sizes}
            with tempfile.NamedTemporaryFile("w", suffix=".json", dir=self.workdir) as spec_file:
                spec_file.write(json.dumps(spec))
                spec_file.flush()
                done = stack.run_python("benchmarks.dbtime", "explain-history", spec_file.name, timeout=3600)
            info["recent_history"] = json.loads(done.stdout)
            for table in ("entry", "transfer", "credit_grant", "grant_allocation", "idempotency_record"):
                conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(table)))
            log(f"  recent history: {info['recent_history']}")
            return info

        template = self.template("i", build)
        stack = Stack(self.pg, self.db_name("i"), self.options, self.workdir, template=template)
        out: dict[str, Any] = {"repeats": []}
        try:
            stack.start()
            out["settings"] = stack.settings_summary()
            info = self.seed_info(stack)
            account = info["first_account"]
            fmt = "%Y-%m-%dT%H:%M:%S.%fZ"
            with stack.connect() as conn:
                row = conn.execute(
                    "SELECT last_sequence, (SELECT min(created_at) FROM entry WHERE account_id = a.id), now() "
                    "FROM account a WHERE id = %s",
                    [account],
                ).fetchone()
                if row is None:
                    raise RuntimeError(f"the seeded account {account} is missing")
                entries, first_at, now = row
            last_day = (now - dt.timedelta(days=1)).astimezone(dt.UTC)
            before_all = (first_at - dt.timedelta(seconds=1)).astimezone(dt.UTC)
            # The default window (the last 30 days, what a support agent sees first), the last
            # day, and the whole history: each answer explains at most the latest 100 entries of
            # its window (the explanation's default limit), so the three differ in what they scan.
            kinds: dict[str, str | list[str]] = {
                "explain_default": f"/accounts/{account}/explain",
                "explain_last_day": f"/accounts/{account}/explain?since={last_day:{fmt}}",
                "explain_all": f"/accounts/{account}/explain?since={before_all:{fmt}}",
            }
            changes = self.explain_changes(stack, kinds)
            out["scenario_settings"] = {
                **sizes,
                "account": account,
                "account_entries": entries,
                "paths": kinds,
                "changes_per_kind": changes,
                "seed": info,
            }
            log(f"  account {account}: {entries} entries; changes per window: {changes}")
            for paths in kinds.values():  # warm-up
                self.loadgen(
                    stack,
                    {
                        "mode": "closed",
                        "concurrency": 1,
                        "duration": 5,
                        "max_requests": 3,
                        "requests": {"kind": "get", "paths": _paths(paths)},
                    },
                )
            for repeat in range(1, self.repeats("i") + 1):
                log(f"scenario i repeat {repeat}")
                out["repeats"].append(self.read_repeat(stack, kinds, sizes["clients"], sizes["duration"]))
        finally:
            stack.stop()
            if not self.args.keep_db:
                self.pg.drop(stack.database)
        return out

    def explain_changes(self, stack: Stack, kinds: dict[str, str | list[str]]) -> dict[str, Any]:
        """Each explanation answers 200, reconciles, and has this many changes and grants."""
        import urllib.request

        found = {}
        for kind, path in kinds.items():
            started = time.perf_counter()
            request = urllib.request.Request(
                stack.base_url + _paths(path)[0], headers={"Authorization": stack.authorization}
            )
            with urllib.request.urlopen(request, timeout=120) as response:
                raw = response.read()
            seconds = time.perf_counter() - started
            body = json.loads(raw)
            if body["openingBalance"] + sum(c["amount"] for c in body["changes"]) != body["balance"]:
                raise RuntimeError(f"{kind}: the explanation does not reconcile")
            found[kind] = {
                "changes": len(body["changes"]),
                "grants": len(body["grants"]),
                "bytes": len(raw),
                "first_answer_ms": round(seconds * 1000, 1),
            }
        return found

    def check_reads(self, stack: Stack, kinds: dict[str, str | list[str]]) -> None:
        import urllib.request

        for kind, paths in kinds.items():
            for path in _paths(paths)[:3]:
                request = urllib.request.Request(stack.base_url + path, headers={"Authorization": stack.authorization})
                with urllib.request.urlopen(request, timeout=30) as response:
                    body = json.loads(response.read())
                if kind == "balance_as_of" and "asOf" not in body:
                    raise RuntimeError(f"{kind}: expected a point-in-time balance, got {body}")
                if kind.startswith("statement") and len(body["data"]) != 50:
                    raise RuntimeError(f"{kind}: expected a full page of 50 lines, got {len(body['data'])}")


def _db_time_line(scenario: str, rep: dict[str, Any]) -> str:
    if scenario == "h":
        d = rep["debit_ms"]
        return (
            f"debit p50 {d['p50']} p95 {d['p95']} ms, backend CPU {rep['backend_cpu_ms_per_debit']} ms/debit, "
            f"grants per debit {rep['grants_per_debit']}, empty transaction p50 {rep['empty_transaction_ms']['p50']} ms"
        )
    return "; ".join(
        f"{name} p50 {rep[name]['transfer_ms']['p50']} p95 {rep[name]['transfer_ms']['p95']} ms, "
        f"backend CPU {rep[name]['backend_cpu_ms_per_transfer']} ms"
        for name in ("v5", "v6")
    )


def _paths(paths: str | list[str]) -> list[str]:
    return [paths] if isinstance(paths, str) else paths


# -- summarising -------------------------------------------------------------------------------


def batch_variant(size: int, atomic: bool) -> str:
    return f"batch{size}_{'atomic' if atomic else 'independent'}"


OURS = ("web", "postgres", "worker", "consumer", "kafka", "beat", "redis (celery broker, shared)")


#: The share of c's best rate at which what API keys cost is measured (auth_cost).
AUTH_LOAD_SHARE = 0.6
#: Where API keys and rate limits run: the web, PostgreSQL (a key's row), Redis (the counters).
AUTH_COMPONENTS = ("web", "postgres", "redis (celery broker, shared)")


def _ours_per_transfer(phase: dict[str, Any], components: tuple[str, ...] = OURS) -> float | None:
    """CPU milliseconds per transfer of these components (default: the whole stack), or None."""
    per = phase["cpu_ms_per_transfer"]
    return round(sum(per.get(c) or 0 for c in components), 3) if per else None


def _group_commit_summary(phases: list[dict[str, Any]]) -> dict[str, Any]:
    """What the group commit comparison shows of a–d's phases (or c's best steps)."""
    return {
        "e2e_tps": spread([phase["e2e_tps"] for phase in phases]),
        **{f"http_{q}_ms": spread([phase["http_latency_ms"][q] for phase in phases]) for q in ("p50", "p95")},
        "cpu_ms_per_transfer_ours": spread([_ours_per_transfer(phase) for phase in phases]),
        "errors": sum(phase["errors_total"] for phase in phases),
    }


def summarise(scenario: str, out: dict[str, Any], c_median: float | None) -> dict[str, Any]:
    reps = out["repeats"]
    s: dict[str, Any] = {}
    if scenario in "abcd":

        def pick(path):
            values = []
            for rep in reps:
                value: Any = rep
                for key in path:
                    value = value.get(key) if isinstance(value, dict) else None
                values.append(value)
            return spread(values)

        s["e2e_tps"] = pick(["e2e_tps"])
        s["http_tps"] = pick(["http_tps"])
        for q in ("p50", "p95", "p99"):
            s[f"http_{q}_ms"] = pick(["http_latency_ms", q])
        for q in ("p50", "p95", "p99"):
            s[f"c2p_{q}_ms"] = pick(["commit_to_projection_ms", q])
        s["outbox_max_backlog"] = pick(["outbox", "max_backlog"])
        s["outbox_max_age_s"] = pick(["outbox", "max_oldest_unpublished_age_s"])
        s["errors"] = pick(["errors_total"])
        s["loadgen_cpu_cores"] = pick(["loadgen_cpu_cores"])
        components = sorted({name for rep in reps for name in rep["cpu"]["components"]})
        s["cpu_cores"] = {
            name: spread([rep["cpu"]["components"].get(name, {}).get("cores") for rep in reps])["median"]
            for name in components
        }
        s["cpu_ms_per_transfer"] = {
            name: spread([rep["cpu_ms_per_transfer"].get(name) for rep in reps])["median"] for name in components
        }
        s["machine_busy_pct"] = pick(["cpu", "machine_busy_pct"])
        errors: dict[str, int] = {}
        for rep in reps:
            for k, v in rep["errors"].items():
                errors[k] = errors.get(k, 0) + v
        s["errors_by_class"] = errors
        s["deadlocks"] = out.get("deadlocks")
        if scenario == "c":
            s["pgbench_tps"] = spread([rep["pgbench"]["tps"] for rep in reps])
            s["pgbench_ratio"] = spread([rep["pgbench_ratio"] for rep in reps])
            s["best_concurrency"] = [rep["best_concurrency"] for rep in reps]
            pairs = [pair for rep in reps for pair in (rep.get("auth") or {}).get("pairs", [])]
            s["auth_pairs"] = len(pairs)
            s["auth_cpu_share_pct"] = spread([pair["share_pct"] for pair in pairs])
            s["auth_cpu_share_all_pct"] = spread([pair["share_all_pct"] for pair in pairs])
            for mode in ("required", "off"):
                s[f"auth_{mode}_cpu_ms_per_transfer"] = spread([pair["cpu_ms_per_transfer"][mode] for pair in pairs])
                s[f"auth_{mode}_touched_cpu_ms_per_transfer"] = spread(
                    [pair["touched_cpu_ms_per_transfer"][mode] for pair in pairs]
                )
        if scenario == "d":
            s["c_median_e2e_tps"] = c_median
            s["e2e_vs_c"] = round(s["e2e_tps"]["median"] / c_median, 3) if c_median else None
        off = [rep["group_commit_off"] for rep in reps if rep.get("group_commit_off")]
        if off:
            s["group_commit_off"] = _group_commit_summary(off)
            s["group_commit_on"] = _group_commit_summary(reps)
    elif scenario == "e":
        s["replay_seconds"] = spread([rep["replay_seconds"] for rep in reps])
        s["entries_per_s"] = spread([rep["entries_per_s"] for rep in reps])
        s["projection_matches"] = all(rep["projection_check"]["matches"] for rep in reps)
    elif scenario == "f":
        kinds = reps[0]["kinds"].keys() if reps else []
        for kind in kinds:
            for q in ("p50", "p95", "p99"):
                s[f"{kind}_{q}_ms"] = spread([rep["kinds"][kind]["latency_ms"][q] for rep in reps])
            s[f"{kind}_rps"] = spread([rep["kinds"][kind]["rps"] for rep in reps])
        s["read_p95_ms"] = spread([rep["read_p95_ms"] for rep in reps])
        s["errors"] = spread([rep["errors_total"] for rep in reps])
    elif scenario == "g":
        variants = reps[0]["variants"].keys() if reps else []
        s["variants"] = {}
        for name in variants:
            phases = [rep["variants"][name] for rep in reps]
            per_transfer = [_ours_per_transfer(phase) for phase in phases]
            s["variants"][name] = {
                "e2e_tps": spread([phase["e2e_tps"] for phase in phases]),
                "http_tps": spread([phase["http_tps"] for phase in phases]),
                **{
                    f"batch_http_{q}_ms": spread([phase["http_latency_ms"][q] for phase in phases])
                    for q in ("p50", "p95", "p99")
                },
                "c2p_p95_ms": spread([phase["commit_to_projection_ms"]["p95"] for phase in phases]),
                "outbox_max_backlog": spread([phase["outbox"]["max_backlog"] for phase in phases]),
                "cpu_ms_per_transfer_ours": spread(per_transfer),
                "cpu_ms_per_transfer_web": spread([phase["cpu_ms_per_transfer"].get("web") for phase in phases]),
                "cpu_ms_per_transfer_postgres": spread(
                    [phase["cpu_ms_per_transfer"].get("postgres") for phase in phases]
                ),
                "errors": sum(phase["errors_total"] for phase in phases),
            }
        s["deadlocks"] = out.get("deadlocks")
    elif scenario == "h":
        for q in ("p50", "p95", "p99"):
            s[f"debit_{q}_ms"] = spread([rep["debit_ms"][q] for rep in reps])
        s["backend_cpu_ms_per_debit"] = spread([rep["backend_cpu_ms_per_debit"] for rep in reps])
        s["empty_transaction_p50_ms"] = spread([rep["empty_transaction_ms"]["p50"] for rep in reps])
        s["other_cores"] = spread([_other_cores(rep["cpu"]) for rep in reps])
        s["machine_busy_pct"] = spread([rep["cpu"]["machine_busy_pct"] for rep in reps])
        s["grants_per_debit"] = {
            "min": min(rep["grants_per_debit"]["min"] for rep in reps),
            "max": max(rep["grants_per_debit"]["max"] for rep in reps),
        }
    elif scenario == "i":
        kinds = reps[0]["kinds"].keys() if reps else []
        for kind in kinds:
            for q in ("p50", "p95", "p99"):
                s[f"{kind}_{q}_ms"] = spread([rep["kinds"][kind]["latency_ms"][q] for rep in reps])
            s[f"{kind}_rps"] = spread([rep["kinds"][kind]["rps"] for rep in reps])
        s["errors"] = spread([rep["errors_total"] for rep in reps])
    elif scenario == "j":
        for name in ("v5", "v6"):
            for q in ("p50", "p95", "p99"):
                s[f"{name}_{q}_ms"] = spread([rep[name]["transfer_ms"][q] for rep in reps])
            s[f"{name}_backend_cpu_ms"] = spread([rep[name]["backend_cpu_ms_per_transfer"] for rep in reps])
        s["empty_transaction_p50_ms"] = spread([rep["empty_transaction_ms"]["p50"] for rep in reps])
        s["other_cores"] = spread([_other_cores(rep["cpu"]) for rep in reps])
        s["machine_busy_pct"] = spread([rep["cpu"]["machine_busy_pct"] for rep in reps])
        v5, v6 = s["v5_p50_ms"]["median"], s["v6_p50_ms"]["median"]
        s["v6_over_v5_median"] = round(v6 / v5, 3) if v5 and v6 else None
        cpu5, cpu6 = s["v5_backend_cpu_ms"]["median"], s["v6_backend_cpu_ms"]["median"]
        s["v6_over_v5_backend_cpu"] = round(cpu6 / cpu5, 3) if cpu5 and cpu6 else None
    return s


def _other_cores(cpu: dict[str, Any]) -> float | None:
    other = cpu["components"].get("other (not ours)")
    return round(other["cpu_s"] / cpu["wall_s"], 3) if other and cpu["wall_s"] else None


def evaluate(scenario: str, summary: dict[str, Any]) -> list[dict[str, Any]]:
    checks = []
    for metric, op, threshold in TARGETS.get(scenario, []):
        value = summary.get(metric)
        if isinstance(value, dict):
            value = value.get("median")
        if metric == "errors" and scenario == "d":
            value = sum(summary["errors_by_class"].values())
        passed = None
        if value is not None:
            passed = {
                "<": value < threshold,
                "<=": value <= threshold,
                ">=": value >= threshold,
                "==": value == threshold,
            }[op]
        checks.append({"metric": metric, "target": f"{op} {threshold}", "value": value, "pass": passed})
    return checks


def latest_c_median(results_dir: Path) -> float | None:
    files = sorted(results_dir.glob("*-c.json"))
    if not files:
        return None
    data = json.loads(files[-1].read_text())
    return data["summary"]["e2e_tps"]["median"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    parser.add_argument("--scenario", default="all", help="a to k, a comma list, or all")
    parser.add_argument(
        "--repeat", type=int, default=None, help="repeats (default 3 for a-d, g, h and j, 1 for e, f and i)"
    )
    parser.add_argument(
        "--duration", type=float, default=None, help="load seconds of a, b, d, of each step of c and each phase of g"
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds per scenario")
    parser.add_argument(
        "--web-workers", type=int, default=int(os.environ.get("BENCH_WEB_WORKERS", DEFAULT_WEB_WORKERS))
    )
    parser.add_argument("--web-threads", type=int, default=DEFAULT_WEB_THREADS)
    parser.add_argument(
        "--server",
        choices=["gunicorn", "granian"],
        default="gunicorn",
        help="web server; granian is not a project dependency: .venv/bin/pip install granian",
    )
    parser.add_argument("--redis-db", type=int, default=13, help="Redis database number of the Celery broker")
    parser.add_argument(
        "--broker",
        choices=["auto", "redis", "database"],
        default="auto",
        help="Celery broker: Redis if it answers (auto), else kombu's SQLAlchemy transport on the "
        "scenario's PostgreSQL database, as make run",
    )
    parser.add_argument(
        "--no-group-commit-off",
        dest="group_commit_off",
        action="store_false",
        help="a-d against the stack's web only, not also against one with LEDGER_GROUP_COMMIT=off",
    )
    parser.add_argument("--steps", default=None, help="client counts of c's ramp, e.g. 8,16,32,64")
    parser.add_argument("--pgbench-seconds", type=int, default=None, help="pgbench run length in c (0: skip pgbench)")
    parser.add_argument("--db-prefix", default="creditledger_bench", help="prefix of the databases the harness owns")
    parser.add_argument("--results-dir", default=str(BENCH_DIR / "results"))
    parser.add_argument("--work-dir", default=str(BENCH_DIR / ".work"), help="logs, embedded PostgreSQL, temp files")
    parser.add_argument("--keep-db", action="store_true", help="keep each scenario's database afterwards")
    parser.add_argument("--reseed", action="store_true", help="rebuild the seeded templates of e, f and i")
    parser.add_argument(
        "--py-spy",
        default=None,
        metavar="DIR",
        help="profile web, worker and consumer with py-spy during each load phase, into DIR",
    )
    parser.add_argument("--tag", default="", help="added to the result file names: <date>-<scenario><tag>.json")
    args = parser.parse_args(argv)

    selected = list(TITLES) if args.scenario == "all" else [s.strip() for s in args.scenario.split(",")]
    for scenario in selected:
        if scenario not in TITLES:
            parser.error(f"unknown scenario {scenario}")
    results_dir = Path(args.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    pg = PostgresServer(os.environ.get("DATABASE_URL") or None, Path(args.work_dir))
    bench = Bench(args, pg)
    machine = machine_info(pg)
    failures = 0
    c_median = None
    try:
        for scenario in selected:
            log(f"=== scenario {scenario}: {TITLES[scenario]}")
            started = time.time()
            if scenario == "k":  # its own sizes and result file: benchmarks/pipeline.py
                pipeline.pipeline_run(
                    base_url=pg.url("postgres"), smoke=args.smoke, db_prefix=args.db_prefix, results_dir=results_dir
                )
                continue
            if scenario in "abcd":
                out = bench.load_scenario(scenario)
            elif scenario == "e":
                out = bench.scenario_e()
            elif scenario == "f":
                out = bench.scenario_f()
            elif scenario == "g":
                out = bench.scenario_g()
            elif scenario == "i":
                out = bench.scenario_i()
            else:
                out = bench.db_time_scenario(scenario)
            if scenario == "d" and c_median is None:
                c_median = latest_c_median(results_dir)
            summary = summarise(scenario, out, c_median)
            if scenario == "c":
                c_median = summary["e2e_tps"]["median"]
            checks = evaluate(scenario, summary)
            result = {
                "scenario": scenario,
                "title": TITLES[scenario],
                "date": dt.datetime.now(tz=dt.UTC).date().isoformat(),
                "started_at": dt.datetime.fromtimestamp(started, tz=dt.UTC).isoformat(),
                "wall_seconds": round(time.time() - started, 1),
                "smoke": args.smoke,
                "machine": machine,
                "settings": out.get("settings"),
                "scenario_settings": out.get("scenario_settings"),
                "repeats_requested": bench.repeats(scenario),
                "summary": summary,
                "targets": checks,
                "repeats": out["repeats"],
                **({"pgbench_init": out["pgbench_init"]} if "pgbench_init" in out else {}),
            }
            path = results_dir / f"{dt.datetime.now(tz=dt.UTC).date().isoformat()}-{scenario}{args.tag}.json"
            path.write_text(json.dumps(result, indent=1, default=str))
            log(f"wrote {path}")
            for check in checks:
                log(
                    f"  target {check['metric']} {check['target']}: {check['value']} -> "
                    f"{'PASS' if check['pass'] else 'FAIL' if check['pass'] is False else 'n/a'}"
                )
            failures += sum(1 for check in checks if check["pass"] is False)
    finally:
        if not args.keep_db:
            pg.drop(args.db_prefix + "_pgbench")
            if args.smoke:  # reseeded in a second or two: not worth keeping on a shared server
                for template in pg.databases(f"{args.db_prefix}_seedsmoke_"):
                    pg.drop(template)
        pg.close()
    log(f"done; {failures} target(s) missed")
    # Smoke sizes only check that every scenario runs: their targets are not judged.
    return 1 if failures and not args.smoke else 0


if __name__ == "__main__":
    sys.exit(main())
