"""Measuring while the load runs: CPU per component, the outbox backlog, and statistics."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import platform
import statistics
import subprocess
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

if TYPE_CHECKING:
    import psycopg

    from benchmarks.stack import PostgresServer

# -- statistics --------------------------------------------------------------------------------


def percentile(sorted_values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100) of already sorted values, linear between closest ranks."""
    if not sorted_values:
        return None
    if len(sorted_values) == 1:
        return sorted_values[0]
    rank = (len(sorted_values) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


def latency_summary(values_ms: list[float]) -> dict[str, Any]:
    ordered = sorted(values_ms)
    return {
        "count": len(ordered),
        "p50": _round(percentile(ordered, 50)),
        "p95": _round(percentile(ordered, 95)),
        "p99": _round(percentile(ordered, 99)),
        "max": _round(ordered[-1] if ordered else None),
        "mean": _round(statistics.fmean(ordered) if ordered else None),
    }


def spread(values: list[float | None]) -> dict[str, Any]:
    """Median of repeated runs and how noisy they were."""
    present = [v for v in values if v is not None]
    if not present:
        return {"median": None, "min": None, "max": None, "cv_pct": None, "n": 0, "values": values}
    mean = statistics.fmean(present)
    cv = (statistics.pstdev(present) / mean * 100.0) if len(present) > 1 and mean else 0.0
    return {
        "median": _round(statistics.median(present)),
        "min": _round(min(present)),
        "max": _round(max(present)),
        "cv_pct": _round(cv),
        "n": len(present),
        "values": [_round(v) for v in values],
    }


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(float(value), digits)


# -- CPU per component -------------------------------------------------------------------------


def _cpu(process: psutil.Process) -> float | None:
    try:
        times = process.cpu_times()
        return times.user + times.system
    except psutil.Error:
        return None


def _machine_times() -> dict[str, float]:
    times = psutil.cpu_times()._asdict()
    return {k: float(v) for k, v in times.items()}


class CpuMeter:
    """CPU seconds of each component over a window, sampled every `interval` s.

    `roots` maps a component to the pids of its root processes; their children (gunicorn's
    workers) are found at every sample. PostgreSQL is the postmaster plus every process
    pg_stat_activity shows for one of `databases` or for no database (checkpointer, WAL
    writer...): other databases on a shared server are not counted as ours. The harness
    itself (this process, and the backends of its monitoring connections, `harness_pids`) is
    a component of its own. A process that ends between two samples loses at most one
    interval of CPU. "other (not ours)" is the machine's busy time no component explains:
    other users of a shared machine.
    """

    def __init__(
        self,
        roots: dict[str, list[int]],
        *,
        pg: PostgresServer | None = None,
        databases: set[str] | None = None,
        harness_pids: Iterable[int | None] | None = None,
        interval: float = 0.5,
    ) -> None:
        self.roots = dict(roots)
        self.roots["harness"] = [os.getpid(), *(pid for pid in (harness_pids or ()) if pid)]
        self.pg = pg
        self.databases = databases or set()
        self.exclude: set[int] = set()
        self.interval = interval
        self.tracked: dict[int, dict[str, Any]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pg_conn: psycopg.Connection | None = None
        self._postmaster: int | None = None

    def _pg_pids(self) -> list[int]:
        if self.pg is None:
            return []
        try:
            if self._pg_conn is None:
                self._pg_conn = self.pg.connect("postgres")
                row = self._pg_conn.execute("SELECT pg_backend_pid()").fetchone()
                if row is None:
                    raise RuntimeError("SELECT pg_backend_pid() returned no row")
                self.roots["harness"].append(row[0])
                self._postmaster = self.pg.postmaster_pid()
            rows = self._pg_conn.execute("SELECT pid, datname FROM pg_stat_activity").fetchall()
        except Exception:  # noqa: BLE001 - a missed sample only loses precision
            return []
        pids = [pid for pid, datname in rows if (datname is None or datname in self.databases)]
        if self._postmaster:
            pids.append(self._postmaster)
        return [pid for pid in pids if pid not in self.exclude]

    def _sample(self, now_wall: float) -> None:
        found: dict[int, str] = {}
        for group, pids in self.roots.items():
            for pid in pids:
                with contextlib.suppress(psutil.Error):
                    root = psutil.Process(pid)
                    found[pid] = group
                    if group == "harness":  # its children are the components
                        continue
                    for child in root.children(recursive=True):
                        found.setdefault(child.pid, group)
        for pid in self._pg_pids():
            found.setdefault(pid, "postgres")
        for pid, group in found.items():
            if pid in self.exclude:
                continue
            entry = self.tracked.get(pid)
            if entry is None:
                try:
                    process = psutil.Process(pid)
                    created = process.create_time()
                except psutil.Error:
                    continue
                value = _cpu(process)
                if value is None:
                    continue
                # Born inside the window: all of its CPU is the window's.
                first = 0.0 if created >= self.t0_wall else value
                self.tracked[pid] = {"group": group, "process": process, "first": first, "last": value}
            else:
                value = _cpu(entry["process"])
                if value is not None:
                    entry["last"] = value

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample(time.time())

    def start(self) -> CpuMeter:
        self.t0_wall = time.time()
        self.t0 = time.perf_counter()
        self.machine0 = _machine_times()
        self._sample(self.t0_wall)
        self._thread = threading.Thread(target=self._run, daemon=True, name="cpu-meter")
        self._thread.start()
        return self

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample(time.time())
        wall = time.perf_counter() - self.t0
        machine1 = _machine_times()
        if self._pg_conn is not None:
            with contextlib.suppress(Exception):
                self._pg_conn.close()
        delta = {k: machine1[k] - self.machine0.get(k, 0.0) for k in machine1}
        idle = delta.get("idle", 0.0) + delta.get("iowait", 0.0)
        steal = delta.get("steal", 0.0)
        total = sum(delta.values())
        busy = total - idle - steal
        ncpu = psutil.cpu_count() or 1
        groups: dict[str, float] = {}
        for entry in self.tracked.values():
            groups[entry["group"]] = groups.get(entry["group"], 0.0) + max(0.0, entry["last"] - entry["first"])
        ours = sum(groups.values())
        components = {
            name: {
                "cpu_s": round(cpu, 3),
                "cores": round(cpu / wall, 3),
                "share_pct": round(100 * cpu / (wall * ncpu), 1),
            }
            for name, cpu in sorted(groups.items(), key=lambda item: -item[1])
        }
        other = max(0.0, busy - ours)
        components["other (not ours)"] = {
            "cpu_s": round(other, 3),
            "cores": round(other / wall, 3),
            "share_pct": round(100 * other / (wall * ncpu), 1),
        }
        return {
            "wall_s": round(wall, 3),
            "cpus": ncpu,
            "machine_busy_pct": round(100 * busy / total, 1) if total else None,
            "machine_iowait_pct": round(100 * delta.get("iowait", 0.0) / total, 1) if total else None,
            "machine_steal_pct": round(100 * steal / total, 1) if total else None,
            "machine_times_pct": {k: round(100 * v / total, 1) for k, v in delta.items() if v > 0} if total else {},
            "components": components,
        }


# -- outbox backlog ----------------------------------------------------------------------------


class OutboxSampler:
    """Every `interval` s: the unpublished outbox rows and the age of the oldest one."""

    QUERY = (
        "SELECT count(*), coalesce(EXTRACT(EPOCH FROM clock_timestamp() - min(created_at)), 0) "
        "FROM outbox_event WHERE published_at IS NULL"
    )

    def __init__(self, connect, interval: float = 0.2) -> None:
        self.connect = connect
        self.interval = interval
        self.samples: list[tuple[float, int, float]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.backend_pid: int | None = None

    def _run(self) -> None:
        with self.connect() as conn:
            self.backend_pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
            self._ready.set()
            t0 = time.perf_counter()
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    count, age = conn.execute(self.QUERY).fetchone()
                    self.samples.append((round(started - t0, 3), int(count), float(age)))
                except Exception:
                    logging.getLogger(__name__).debug("backlog sample failed", exc_info=True)
                self._stop.wait(max(0.0, self.interval - (time.perf_counter() - started)))

    def start(self) -> OutboxSampler:
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="outbox-sampler")
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        counts = [c for _, c, _ in self.samples]
        ages = [a for _, _, a in self.samples]
        return {
            "samples": len(self.samples),
            "interval_s": self.interval,
            "max_backlog": max(counts) if counts else None,
            "max_oldest_unpublished_age_s": round(max(ages), 3) if ages else None,
            "mean_backlog": round(statistics.fmean(counts), 1) if counts else None,
        }


# -- the machine -------------------------------------------------------------------------------


def machine_info(pg=None) -> dict[str, Any]:
    model = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    info: dict[str, Any] = {
        "cpu_model": model,
        "cpus": psutil.cpu_count(),
        "cpus_physical": psutil.cpu_count(logical=False),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "hostname": platform.node(),
    }
    if pg is not None:
        info["postgres"] = pg.version
        info["postgres_settings"] = pg.settings
    with contextlib.suppress(Exception):
        root = Path(__file__).resolve().parent.parent
        info["git_commit"] = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        info["git_dirty_files"] = [line[3:] for line in dirty.splitlines() if line.strip()]
    info["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    return info
