"""pgbench's built-in tpcb-like script against the same PostgreSQL server: per transaction one
commit that updates three balances and inserts a history row, the machine's ceiling for
"one durable commit per transfer". Same server, same settings (synchronous_commit on)."""

from __future__ import annotations

import os
import re
import subprocess
from typing import Any

from benchmarks.measure import CpuMeter
from benchmarks.stack import PostgresServer

TPS = re.compile(
    r"^tps = ([0-9.]+) \((?:without initial connection time|excluding connections establishing)\)", re.MULTILINE
)
LATENCY = re.compile(r"^latency average = ([0-9.]+) ms", re.MULTILINE)
FAILED = re.compile(r"^number of failed transactions: (\d+)", re.MULTILINE)


def _args(pg: PostgresServer) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ)
    if pg.password:
        env["PGPASSWORD"] = pg.password
    return ["-h", pg.host, "-p", str(pg.port), "-U", pg.user], env


def pgbench_init(pg: PostgresServer, database: str, *, scale: int) -> dict[str, Any]:
    pg.recreate(database)
    common, env = _args(pg)
    binary = pg.pgbench_binary()
    done = subprocess.run(
        [binary, "-i", "-s", str(scale), "-q", *common, database], env=env, capture_output=True, text=True, check=True
    )
    return {"binary": binary, "scale": scale, "init_output_tail": done.stderr.strip().splitlines()[-1:]}


def pgbench_run(pg: PostgresServer, database: str, *, clients: int, seconds: int, threads: int = 2) -> dict[str, Any]:
    common, env = _args(pg)
    binary = pg.pgbench_binary()
    threads = max(1, min(threads, clients))
    cmd = [binary, "-c", str(clients), "-j", str(threads), "-T", str(seconds), "-b", "tpcb-like", *common, database]
    meter = CpuMeter({}, pg=pg, databases={database}).start()
    process = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    meter.roots["pgbench"] = [process.pid]
    out, err = process.communicate()
    cpu = meter.stop()
    if process.returncode != 0:
        raise RuntimeError(f"pgbench failed ({process.returncode}): {err[-2000:]}")
    tps = TPS.search(out)
    latency = LATENCY.search(out)
    failed = FAILED.search(out)
    return {
        "command": " ".join(cmd),
        "clients": clients,
        "threads": threads,
        "seconds": seconds,
        "tps": float(tps.group(1)) if tps else None,
        "latency_avg_ms": float(latency.group(1)) if latency else None,
        "failed_transactions": int(failed.group(1)) if failed else 0,
        "cpu": cpu,
    }
