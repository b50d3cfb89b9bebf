"""The measurement behind docs/adr/0012-web-server.md: scenario c's ramp (no pgbench) for each
web-server configuration, in interleaved rounds so that a busy moment of a shared machine does
not land on one configuration only.

    python -m benchmarks.web_server_sweep [--rounds 2] [--duration 10] [--steps 8,16,32]
    python -m benchmarks.web_server_sweep --table benchmarks/results/web-server   # table only

granian is not a project dependency: `.venv/bin/pip install granian` before a sweep that
includes it (or leave it out with --configs).

Writes benchmarks/results/web-server/<date>-c-<config>-r<round>.json and prints a table of the
medians over rounds: best end-to-end transfers/s, HTTP latency at that step, and the CPU each
transfer cost (web processes, and the whole stack): the CPU cost is the number that a busy
machine disturbs least.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
BASE_DIR = BENCH_DIR.parent

CONFIGS = {
    "gunicorn-sync-2": ["--server", "gunicorn", "--web-workers", "2", "--web-threads", "1"],
    "gunicorn-sync-3": ["--server", "gunicorn", "--web-workers", "3", "--web-threads", "1"],
    "gunicorn-sync-4": ["--server", "gunicorn", "--web-workers", "4", "--web-threads", "1"],
    "gunicorn-sync-6": ["--server", "gunicorn", "--web-workers", "6", "--web-threads", "1"],
    "gunicorn-gthread-2x4": ["--server", "gunicorn", "--web-workers", "2", "--web-threads", "4"],
    "gunicorn-gthread-3x4": ["--server", "gunicorn", "--web-workers", "3", "--web-threads", "4"],
    "granian-2x4": ["--server", "granian", "--web-workers", "2", "--web-threads", "4"],
}

OURS = ("web", "postgres", "worker", "consumer", "kafka", "beat", "redis (celery broker, shared)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--first-round", type=int, default=1, help="number of the first round (to add rounds)")
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--steps", default="8,16,32")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--results-dir", default=str(BENCH_DIR / "results" / "web-server"))
    args = parser.parse_args()
    results_dir = Path(args.results_dir)
    names = args.configs.split(",")
    for round_ in range(args.first_round, args.first_round + args.rounds):
        for name in names:
            print(f"--- round {round_}: {name}", flush=True)
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.run",
                    "--scenario",
                    "c",
                    "--repeat",
                    "1",
                    "--pgbench-seconds",
                    "0",
                    "--steps",
                    args.steps,
                    "--duration",
                    str(args.duration),
                    "--results-dir",
                    str(results_dir),
                    f"--tag=-{name}-r{round_}",
                    *CONFIGS[name],
                ],
                cwd=BASE_DIR,
                env=os.environ,
                check=True,
            )
    print(table(results_dir, names))
    return 0


def table(results_dir: Path, names: list[str]) -> str:
    rows = [
        (
            "| configuration | rounds | best transfers/s e2e (each round) | at clients | HTTP p50 / p95 ms | "
            "web CPU ms/transfer | stack CPU ms/transfer | not-ours CPU, cores |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        runs = [json.loads(p.read_text()) for p in sorted(results_dir.glob(f"*-c-{name}-r*.json"))]
        if not runs:
            continue
        best = [r["repeats"][0] for r in runs]
        tps = [b["e2e_tps"] for b in best]
        p50 = statistics.median(b["http_latency_ms"]["p50"] for b in best)
        p95 = statistics.median(b["http_latency_ms"]["p95"] for b in best)
        web = statistics.median(b["cpu_ms_per_transfer"].get("web", 0) for b in best)
        stack = statistics.median(sum(b["cpu_ms_per_transfer"].get(c, 0) for c in OURS) for b in best)
        other = statistics.median(b["cpu"]["components"].get("other (not ours)", {}).get("cores", 0) for b in best)
        clients = [b["best_concurrency"] for b in best]
        rows.append(
            f"| {name} | {len(runs)} | {statistics.median(tps):.0f} ({', '.join(f'{t:.0f}' for t in tps)}) "
            f"| {clients} | {p50:.0f} / {p95:.0f} | {web:.2f} | {stack:.2f} | {other:.2f} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--table":
        print(table(Path(sys.argv[2]), list(CONFIGS)))
        sys.exit(0)
    sys.exit(main())
