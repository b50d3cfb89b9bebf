"""Optional sampling profiles of the stack under load (`python -m benchmarks.run --py-spy DIR`).

py-spy is not a project dependency: install it by hand (`.venv/bin/pip install py-spy`). Each
profiled phase writes, per process (web with its workers, worker, consumer), py-spy's raw
collapsed stacks and a flame graph, and a text summary of the functions that were on CPU
most: by own samples and by samples with the function anywhere on the stack. Only samples of a
thread holding the GIL are kept (`--gil`): Python on CPU, not waiting for PostgreSQL.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path


def py_spy_binary() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    if local.exists():
        return str(local)
    return shutil.which("py-spy")


class Profiler:
    def __init__(self, outdir: Path, label: str, pids: dict[str, list[int]], seconds: float, rate: int = 100) -> None:
        self.outdir = outdir
        self.label = label
        self.processes: list[tuple[str, subprocess.Popen, Path]] = []
        binary = py_spy_binary()
        if binary is None:
            raise RuntimeError("--py-spy needs py-spy: .venv/bin/pip install py-spy")
        outdir.mkdir(parents=True, exist_ok=True)
        for name in ("web", "worker", "consumer"):
            for pid in pids.get(name, [])[:1]:
                raw = outdir / f"{label}-{name}.txt"
                cmd = [
                    binary,
                    "record",
                    "--pid",
                    str(pid),
                    "--rate",
                    str(rate),
                    "--duration",
                    str(int(seconds) + 1),
                    "--format",
                    "raw",
                    "--output",
                    str(raw),
                    "--nonblocking",
                    "--gil",
                ]
                if name == "web":
                    cmd.append("--subprocesses")
                self.processes.append(
                    (name, subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), raw)
                )

    def stop(self) -> dict[str, dict]:
        summaries = {}
        for name, process, raw in self.processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGINT)
                process.wait(timeout=30)
            if raw.exists():
                summary = summarise_collapsed(raw)
                (self.outdir / f"{self.label}-{name}-top.txt").write_text(format_summary(name, summary))
                summaries[name] = summary
        return summaries


def summarise_collapsed(path: Path, top: int = 30) -> dict:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = [f for f in stack.split(";") if f and not f.startswith("process ") and not f.startswith("thread ")]
        if not frames:
            continue
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    project = Counter({frame: n for frame, n in inclusive.items() if "(apps/" in frame or "(creditledger/" in frame})
    return {
        "samples": total,
        "own": [(frame, n, round(100 * n / total, 1)) for frame, n in own.most_common(top)] if total else [],
        "inclusive": [(frame, n, round(100 * n / total, 1)) for frame, n in inclusive.most_common(top)]
        if total
        else [],
        "project": [(frame, n, round(100 * n / total, 1)) for frame, n in project.most_common(top)] if total else [],
    }


def format_summary(name: str, summary: dict) -> str:
    lines = [f"{name}: {summary['samples']} samples on CPU", "", "own time:"]
    lines += [f"  {pct:5.1f}%  {frame}" for frame, _, pct in summary["own"]]
    lines += ["", "project code (apps/, creditledger/), anywhere on the stack:"]
    lines += [f"  {pct:5.1f}%  {frame}" for frame, _, pct in summary.get("project", [])]
    lines += ["", "anywhere on the stack:"]
    lines += [f"  {pct:5.1f}%  {frame}" for frame, _, pct in summary["inclusive"]]
    return "\n".join(lines) + "\n"
