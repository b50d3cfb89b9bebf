"""Latency of POST /transfers at a low, fixed rate, with group commit off and on (issue 11:
"latency at low load must not rise"; docs/adr/0021-group-commit.md).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \\
        python -m benchmarks.group_commit_latency [--rate 10] [--duration 30] [--rounds 2] [--clients N]

For each round and setting (off, then on), a stack as `make bench` starts it (benchmarks/stack.py:
gunicorn with 2 workers of 4 threads, relay, beat, consumer, production settings) on a fresh
database, two accounts, a short warm-up, then an open-loop load (benchmarks/loadgen.py) of
`rate` transfers/s between the two accounts for `duration` seconds; with `--clients N`, a
closed loop of N clients instead (what the groups buy under concurrency). Prints the HTTP
latency summary and answers/s of each run and the median p50 per setting, as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.measure import latency_summary
from benchmarks.stack import BASE_DIR, PYTHON, PostgresServer, Stack, StackOptions

WORK_DIR = BASE_DIR / "benchmarks" / ".work"


def loadgen(stack: Stack, spec: dict[str, Any]) -> dict[str, Any]:
    spec = {"host": "127.0.0.1", "port": stack.port, "authorization": stack.authorization, **spec}
    with tempfile.TemporaryDirectory(dir=WORK_DIR) as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_path.write_text(json.dumps(spec))
        subprocess.run(
            [PYTHON, "-m", "benchmarks.loadgen", str(spec_path), str(out_path)],
            cwd=BASE_DIR,
            check=True,
            timeout=spec["duration"] + 120,
        )
        return json.loads(out_path.read_text())


def measure(pg: PostgresServer, *, group_commit: str, load: dict[str, Any], name: str) -> dict[str, Any]:
    options = StackOptions(web_workers=2, web_threads=4, extra_env={"LEDGER_GROUP_COMMIT": group_commit})
    stack = Stack(pg, name, options, WORK_DIR)
    try:
        stack.start()
        done = stack.run_python("benchmarks.django_tasks", "accounts", "2", timeout=600)
        requests = {"kind": "transfer", "pattern": "pair", "accounts": json.loads(done.stdout), "currency": "USD"}
        loadgen(stack, {**load, "duration": 5, "requests": {**requests, "key_prefix": "warm"}})
        result = loadgen(stack, {**load, "requests": {**requests, "key_prefix": "m"}})
    finally:
        stack.stop()
        pg.drop(name)
    return {
        "group_commit": group_commit,
        "http_ms": latency_summary(result["ok_latencies_ms"]),
        "errors": len(result["error_latencies_ms"]),
        "answers_per_second": round(len(result["ok_latencies_ms"]) / load["duration"], 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=10.0, help="transfers per second (default 10)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds measured per run (default 30)")
    parser.add_argument("--rounds", type=int, default=2, help="runs per setting, alternating (default 2)")
    parser.add_argument("--clients", type=int, help="a closed loop of this many clients instead of --rate")
    args = parser.parse_args(argv)
    load: dict[str, Any] = (
        {"mode": "closed", "concurrency": args.clients, "duration": args.duration}
        if args.clients
        else {"mode": "open", "rate": args.rate, "duration": args.duration}
    )
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    pg = PostgresServer(os.environ.get("DATABASE_URL") or None, WORK_DIR)
    runs = []
    try:
        for round_index in range(args.rounds):
            for setting in ("off", "on"):
                run = measure(
                    pg,
                    group_commit=setting,
                    load=load,
                    name=f"creditledger_bench_gc_{setting}_{round_index}",
                )
                print(json.dumps(run), flush=True)
                runs.append(run)
    finally:
        pg.close()
    p50 = {
        setting: statistics.median(run["http_ms"]["p50"] for run in runs if run["group_commit"] == setting)
        for setting in ("off", "on")
    }
    print(json.dumps({"load": load, "rounds": args.rounds, "median_p50_ms": p50}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
