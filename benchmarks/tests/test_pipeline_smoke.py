"""Keeps the pipeline measurement (benchmarks/pipeline.py, scenario k) from rotting: tiny sizes,
its own database and broker. The numbers come from a full run, never from the test suite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_smoke_run_measures_the_relay_and_the_consumer_alone(tmp_path: Path) -> None:
    results = tmp_path / "results"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.pipeline",
            "--smoke",
            "--db-prefix",
            f"cl_pipeline_smoke_{os.getpid()}",
            "--results-dir",
            str(results),
        ],
        check=False,
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]

    (file,) = results.glob("*-pipeline.json")
    result = json.loads(file.read_text())
    events = result["sizes"]["events"]
    assert events == 10 + 3 * 40  # AccountCreated, then TransferPosted and two EntryPosted per transfer
    assert [run["shards"] for run in result["relay"]] == [1, 2]
    assert all(run["events"] == events and run["events_per_second"] > 0 for run in result["relay"])
    assert sum(shard["published"] for shard in result["relay"][1]["per_shard"]) == events
    assert [run["consumers"] for run in result["consumer"]] == [1, 2]
    assert all(run["events"] == events for run in result["consumer"])
