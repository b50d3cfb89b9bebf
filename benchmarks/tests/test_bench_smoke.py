"""Keeps the benchmark harness from rotting: one tiny scenario end to end, with a stack of its
own (gunicorn, Celery worker and beat, consumer, Tansu), in a few seconds. The real numbers
come from `make bench` (benchmarks/README.md), never from the test suite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from apps.ledger.explanation import DEFAULT_CHANGES

BASE_DIR = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_smoke_run_writes_a_complete_result(tmp_path: Path) -> None:
    env = dict(os.environ)
    # Brokers of its own: the suite's Kafka topics and Redis queue are shared with other tests
    # (the Celery broker is then kombu's SQLAlchemy transport in the smoke run's own database).
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    results = tmp_path / "results"
    prefix = f"cl_bench_smoke_{os.getpid()}"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.run",
            "--smoke",
            "--scenario",
            "a",
            "--repeat",
            "1",
            "--broker",
            "database",
            "--db-prefix",
            prefix,
            "--results-dir",
            str(results),
            "--work-dir",
            str(tmp_path / "work"),
        ],
        check=False,
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]

    files = list(results.glob("*-a.json"))
    assert len(files) == 1
    result = json.loads(files[0].read_text())
    assert result["scenario"] == "a"
    assert result["smoke"] is True
    assert {"cpu_model", "cpus", "ram_gb", "kernel", "python", "postgres"} <= result["machine"].keys()
    settings = result["settings"]
    assert settings["django_settings"] == "config.settings.production"
    assert settings["debug"] is False
    assert settings["web_server"] == "gunicorn"
    assert settings["web_workers"] >= 1
    assert settings["postgres"]["synchronous_commit"] == "on"

    (run,) = result["repeats"]
    assert run["http_ok"] > 0
    assert run["errors_total"] == 0
    # Every committed transfer was seen in the projection, and counted only then.
    assert run["committed"] == run["http_ok"] == run["visible"]
    assert run["e2e_tps"] > 0
    for key in ("http_latency_ms", "commit_to_projection_ms"):
        assert {"p50", "p95", "p99"} <= run[key].keys()
        assert run[key]["p50"] > 0
    assert run["outbox"]["samples"] > 0
    assert run["outbox"]["max_backlog"] is not None
    components = run["cpu"]["components"]
    assert {"web", "worker", "beat", "consumer", "postgres", "kafka", "loadgen"} <= components.keys()
    assert components["web"]["cpu_s"] > 0
    assert components["loadgen"]["cpu_s"] > 0

    # The same load against a web server with group commit off, measured on its own.
    off = run["group_commit_off"]
    assert off["errors_total"] == 0
    assert off["committed"] == off["http_ok"] == off["visible"] > 0
    assert off["prefix"] != run["prefix"]
    assert off["cpu"]["components"]["web"]["cpu_s"] > 0

    summary = result["summary"]
    assert summary["e2e_tps"]["median"] > 0
    assert summary["e2e_tps"]["n"] == 1
    assert summary["deadlocks"] == 0
    assert summary["group_commit_off"]["e2e_tps"]["median"] > 0

    # The summary renders from it: a table between the markers and a PNG.
    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- bench-results:start -->\n<!-- bench-results:end -->\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.report",
            "--results-dir",
            str(results),
            "--readme",
            str(readme),
            "--include-smoke",
        ],
        cwd=BASE_DIR,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert "| **a**" in readme.read_text()
    assert "| a | off |" in readme.read_text()
    assert (results / "summary.png").stat().st_size > 1000


def test_smoke_run_of_the_grant_scenarios(tmp_path: Path) -> None:
    """h, i and j at tiny sizes: each debit of h drew from exactly 10 grants, the explanation of
    i reconciles in every window, j timed both versions of the posting function."""
    env = dict(os.environ)
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    results = tmp_path / "results"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.run",
            "--smoke",
            "--scenario",
            "h,i,j",
            "--broker",
            "database",
            "--db-prefix",
            f"cl_bench_smoke_g{os.getpid()}",
            "--results-dir",
            str(results),
            "--work-dir",
            str(tmp_path / "work"),
        ],
        check=False,
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]

    h = json.loads(next(results.glob("*-h.json")).read_text())
    (run,) = h["repeats"]
    assert run["grants_per_debit"] == {"min": 10, "max": 10}
    assert run["debit_ms"]["count"] == h["scenario_settings"]["debits"]
    assert run["backend_cpu_ms_per_debit"] >= 0
    assert [check["metric"] for check in h["targets"]] == ["debit_p95_ms"]

    i = json.loads(next(results.glob("*-i.json")).read_text())
    changes = i["scenario_settings"]["changes_per_kind"]
    # Each answer goes through at most DEFAULT_CHANGES entries, the latest (the explanation's limit).
    assert changes["explain_all"]["changes"] == min(DEFAULT_CHANGES, i["scenario_settings"]["account_entries"])
    assert 0 < changes["explain_default"]["changes"] <= changes["explain_all"]["changes"]
    assert i["scenario_settings"]["seed"]["verify_ledger"]["ok"] is True
    (reads,) = i["repeats"]
    assert reads["errors_total"] == 0
    assert all(kind["ok"] > 0 for kind in reads["kinds"].values())

    j = json.loads(next(results.glob("*-j.json")).read_text())
    (run,) = j["repeats"]
    assert run["v5"]["transfer_ms"]["count"] == run["v6"]["transfer_ms"]["count"] > 0
    assert j["summary"]["v6_over_v5_median"] is not None
