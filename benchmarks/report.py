"""Summarise benchmarks/results/*.json: the tables in benchmarks/README.md (between the
`bench-results` markers) and the plot benchmarks/results/summary.png.

    python -m benchmarks.report [--results-dir DIR] [--readme PATH] [--png PATH]

For each scenario the newest result file that is not a smoke run is used: the latest date, and
on that date the run with the most repeats, then the one started last.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BENCH_DIR = Path(__file__).resolve().parent
START = "<!-- bench-results:start -->"
END = "<!-- bench-results:end -->"
SCENARIOS = "abcdefghij"
I_KINDS = ("explain_default", "explain_last_day", "explain_all")
F_KINDS = ("balance", "balance_as_of", "statement_first_page", "statement_deep_cursor", "statement_time_range")
COMPONENTS = [
    "web",
    "postgres",
    "worker",
    "consumer",
    "kafka",
    "beat",
    "redis (celery broker, shared)",
    "loadgen",
    "harness",
    "replay",
    "other (not ours)",
]


def latest(results_dir: Path, include_smoke: bool = False) -> dict[str, dict[str, Any]]:
    found: dict[str, tuple[tuple, dict]] = {}
    for path in results_dir.glob("*.json"):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        scenario = data.get("scenario")
        if scenario not in SCENARIOS or (data.get("smoke") and not include_smoke):
            continue
        # The latest day's run with the most repeats: a one-repeat rerun the same day (--tag)
        # is quoted in the text, not put in the table. Not file times, which a checkout resets.
        key = (data.get("date", ""), len(data.get("repeats", [])), data.get("started_at", ""))
        if scenario not in found or key > found[scenario][0]:
            data["_file"] = path.name
            found[scenario] = (key, data)
    return {scenario: data for scenario, (_, data) in sorted(found.items())}


def med(summary: dict[str, Any], key: str) -> float | None:
    value = summary.get(key)
    return value.get("median") if isinstance(value, dict) else value


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    return str(value)


def spread_text(stat: dict[str, Any] | None, digits: int = 1) -> str:
    if not stat or stat.get("median") is None:
        return "–"
    if stat.get("n", 1) <= 1:
        return fmt(stat["median"], digits)
    spread = f"{fmt(stat['min'], digits)}–{fmt(stat['max'], digits)}, CV {stat['cv_pct']:.0f}%"
    return f"{fmt(stat['median'], digits)} ({spread})"


def triple(summary: dict[str, Any], prefix: str) -> str:
    return " / ".join(fmt(med(summary, f"{prefix}_{q}_ms")) for q in ("p50", "p95", "p99"))


def f_cpu_per_request(f: dict[str, Any], kind: str, component: str) -> float | None:
    """Median over f's repeats of one component's CPU milliseconds per successful `kind` read."""
    values = [
        1000 * read["cpu"]["components"][component]["cpu_s"] / read["ok"]
        for read in (run["kinds"].get(kind) for run in f["repeats"])
        if read and read["ok"] and component in read.get("cpu", {}).get("components", {})
    ]
    return statistics.median(values) if values else None


def f_other_cores(f: dict[str, Any], kind: str) -> float | None:
    """Median over f's repeats of the cores other users of the machine took during the `kind` reads."""
    values = [
        read["cpu"]["components"]["other (not ours)"]["cpu_s"] / read["cpu"]["wall_s"]
        for read in (run["kinds"].get(kind) for run in f["repeats"])
        if read and "other (not ours)" in read.get("cpu", {}).get("components", {})
    ]
    return statistics.median(values) if values else None


def verdict(data: dict[str, Any]) -> str:
    checks = data.get("targets") or []
    if not checks:
        return "no target"
    parts = []
    for check in checks:
        mark = "PASS" if check["pass"] else ("FAIL" if check["pass"] is False else "n/a")
        parts.append(f"{check['metric']} {check['target']}: {mark}")
    return "<br>".join(parts)


def _dirty_text(files: list[str]) -> str:
    if not files:
        return ""
    app = [f for f in files if not f.startswith("benchmarks/") and f not in ("Makefile", "requirements-dev.txt")]
    text = f" with uncommitted changes in {len(files)} files"
    return text + (f", outside the harness: {', '.join(app)}" if app else ", all of them the harness's own")


def tables(results: dict[str, dict[str, Any]]) -> str:
    lines: list[str] = []
    if not results:
        return "No results yet: run `make bench`.\n"
    any_result = next(iter(results.values()))
    machine = any_result.get("machine", {})
    settings = any_result.get("settings") or {}
    lines.append(
        f"Machine: {machine.get('cpu_model')}, {machine.get('cpus')} CPUs, {machine.get('ram_gb')} GB RAM, "
        f"Linux {machine.get('kernel')}, Python {machine.get('python')}, PostgreSQL {machine.get('postgres')}. "
        f"Stack: {settings.get('web_server')} {settings.get('web_workers')} workers x {settings.get('web_threads')} "
        f"threads, Celery broker {settings.get('celery_broker')}, Kafka {settings.get('kafka')}. "
        f"Commit {str(machine.get('git_commit', ''))[:10]}" + _dirty_text(machine.get("git_dirty_files") or []) + ".\n"
    )
    lines.append("Medians of the repeats; in brackets min–max and the coefficient of variation of the repeats.\n")
    lines.append(
        "| scenario | repeats | transfers/s end to end | HTTP p50 / p95 / p99 ms "
        "| commit→projection p50 / p95 / p99 ms | outbox max backlog / oldest s | errors | targets |"
    )
    lines.append("|---|---|---|---|---|---|---|---|")
    for scenario in "abcd":
        data = results.get(scenario)
        if not data:
            continue
        s = data["summary"]
        errors = ", ".join(f"{k}: {v}" for k, v in s.get("errors_by_class", {}).items()) or "0"
        lines.append(
            f"| **{scenario}** {data['title']} ({data['date']}) | {len(data['repeats'])} "
            f"| {spread_text(s.get('e2e_tps'))} | {triple(s, 'http')} | {triple(s, 'c2p')} "
            f"| {fmt(med(s, 'outbox_max_backlog'), 0)} / {fmt(med(s, 'outbox_max_age_s'), 2)} "
            f"| {errors} | {verdict(data)} |"
        )
    compared = [x for x in "abcd" if (results.get(x) or {}).get("summary", {}).get("group_commit_off")]
    if compared:
        lines.append("")
        lines.append(
            "Group commit on (the default) and off (`LEDGER_GROUP_COMMIT=off`, a second web server beside the "
            "first), the same load in the same run, in an order that alternates with the repeats "
            "(c: the best step of each ramp):\n"
        )
        lines.append(
            "| scenario | group commit | transfers/s end to end | HTTP p50 / p95 ms | CPU ms per transfer (ours) "
            "| errors |"
        )
        lines.append("|---|---|---|---|---|---|")
        for scenario in compared:
            s = results[scenario]["summary"]
            for mode in ("on", "off"):
                v = s[f"group_commit_{mode}"]
                lines.append(
                    f"| {scenario} | {mode} | {spread_text(v.get('e2e_tps'))} "
                    f"| {fmt(med(v, 'http_p50_ms'))} / {fmt(med(v, 'http_p95_ms'))} "
                    f"| {fmt(med(v, 'cpu_ms_per_transfer_ours'), 3)} | {v.get('errors')} |"
                )
    c = results.get("c")
    if c:
        s = c["summary"]
        lines.append("")
        lines.append(
            f"**c** in detail: best concurrency per repeat {s.get('best_concurrency')}; pgbench tpcb-like on the same "
            f"server, same clients: {spread_text(s.get('pgbench_tps'), 0)} tps; our end-to-end rate is "
            f"{spread_text(s.get('pgbench_ratio'), 2)} x pgbench. API keys and rate limits cost "
            f"{spread_text(s.get('auth_cpu_share_pct'), 2)} % of the CPU per transfer (median of "
            f"{s.get('auth_pairs')} interleaved pairs of phases at 60 % of the best rate, with keys and without): "
            f"web, PostgreSQL and Redis {fmt(med(s, 'auth_required_touched_cpu_ms_per_transfer'), 3)} ms against "
            f"{fmt(med(s, 'auth_off_touched_cpu_ms_per_transfer'), 3)}, of "
            f"{fmt(med(s, 'auth_required_cpu_ms_per_transfer'), 3)} ms for the whole stack with keys "
            f"({fmt(med(s, 'auth_off_cpu_ms_per_transfer'), 3)} without: "
            f"{spread_text(s.get('auth_cpu_share_all_pct'), 2)} %, with the noise of the components keys do not "
            "touch). Per step (first repeat):\n"
        )
        lines.append(
            "| clients | transfers/s end to end | HTTP transfers/s | HTTP p50 / p95 / p99 ms "
            "| commit→projection p95 ms | loadgen CPU (cores) |"
        )
        lines.append("|---|---|---|---|---|---|")
        for step in c["repeats"][0].get("steps", []):
            http = step["http_latency_ms"]
            lines.append(
                f"| {step['load']['concurrency']} | {fmt(step['e2e_tps'])} | {fmt(step['http_tps'])} "
                f"| {fmt(http['p50'])} / {fmt(http['p95'])} / {fmt(http['p99'])} "
                f"| {fmt(step['commit_to_projection_ms']['p95'])} | {fmt(step['loadgen_cpu_cores'], 2)} |"
            )
    d = results.get("d")
    if d:
        s = d["summary"]
        lines.append("")
        lines.append(
            f"**d** in detail: {fmt(s.get('e2e_vs_c'), 2)} x the median of c ({fmt(s.get('c_median_e2e_tps'))}/s); "
            f"PostgreSQL deadlocks (pg_stat_database): {s.get('deadlocks')}; errors by class: "
            f"{s.get('errors_by_class') or 'none'}; transaction retries logged: "
            f"{[r.get('transaction_retries_logged') for r in d['repeats']]}."
        )
    e = results.get("e")
    if e:
        s = e["summary"]
        rep = e["repeats"][0] if e["repeats"] else {}
        lines.append("")
        lines.append(
            f"**e** {e['title']} ({e['date']}): {spread_text(s.get('replay_seconds'))} s "
            f"({spread_text(s.get('entries_per_s'), 0)} entries/s) via `{rep.get('how')}`; the rebuilt projection "
            f"matches the ledger: {s.get('projection_matches')}. {verdict(e)}."
        )
    f = results.get("f")
    if f:
        s = f["summary"]
        settings_f = f.get("scenario_settings", {})
        lines.append("")
        lines.append(
            f"**f** {f['title']} ({f['date']}): account with {fmt(settings_f.get('account_entries'))} entries, "
            f"{settings_f.get('clients')} concurrent clients, {settings_f.get('duration')} s per kind. {verdict(f)}.\n"
        )
        lines.append(
            "| read | p50 / p95 / p99 ms | p95 ms over the repeats | requests/s | "
            "CPU ms per request: web; postgres | other sessions (cores) |"
        )
        lines.append("|---|---|---|---|---|---|")
        lines.extend(
            f"| {kind} | {triple(s, kind)} | {spread_text(s.get(f'{kind}_p95_ms'))} | "
            f"{spread_text(s.get(f'{kind}_rps'))} | {fmt(f_cpu_per_request(f, kind, 'web'), 2)}; "
            f"{fmt(f_cpu_per_request(f, kind, 'postgres'), 2)} | {fmt(f_other_cores(f, kind), 2)} |"
            for kind in F_KINDS
            if f"{kind}_p50_ms" in s
        )
    g = results.get("g")
    if g:
        s = g["summary"]
        settings_g = g.get("scenario_settings", {})
        lines.append("")
        lines.append(
            f"**g** {g['title']} ({g['date']}): {settings_g.get('clients')} clients in a closed loop, random pairs of "
            f"{fmt(settings_g.get('accounts_created'))} accounts, {settings_g.get('duration')} s per variant, "
            f"{len(g['repeats'])} repeats; PostgreSQL deadlocks: {s.get('deadlocks')}. HTTP latency is per batch.\n"
        )
        lines.append(
            "| variant | transfers/s end to end | HTTP transfers/s | batch HTTP p50 / p95 / p99 ms "
            "| commit→projection p95 ms | CPU ms per transfer (ours; web; postgres) | errors |"
        )
        lines.append("|---|---|---|---|---|---|---|")
        for name, v in s.get("variants", {}).items():
            lines.append(
                f"| {name} | {spread_text(v.get('e2e_tps'))} | {spread_text(v.get('http_tps'))} "
                f"| {triple(v, 'batch_http')} | {fmt(med(v, 'c2p_p95_ms'))} "
                f"| {fmt(med(v, 'cpu_ms_per_transfer_ours'), 3)}; {fmt(med(v, 'cpu_ms_per_transfer_web'), 3)}; "
                f"{fmt(med(v, 'cpu_ms_per_transfer_postgres'), 3)} | {v.get('errors')} |"
            )
    lines.extend(_grant_tables(results))
    lines.append("")
    lines.append("CPU by component, in cores (of 2), median of the repeats, over load + drain:\n")
    present = [
        c
        for c in COMPONENTS
        if any(c in (results.get(x, {}).get("summary", {}).get("cpu_cores") or {}) for x in "abcd")
    ]
    lines.append("| scenario | " + " | ".join(present) + " | machine busy % |")
    lines.append("|---|" + "---|" * (len(present) + 1))
    for scenario in "abcd":
        data = results.get(scenario)
        if not data:
            continue
        cores = data["summary"].get("cpu_cores", {})
        lines.append(
            f"| {scenario} | "
            + " | ".join(fmt(cores.get(c), 2) for c in present)
            + f" | {fmt(med(data['summary'], 'machine_busy_pct'))} |"
        )
    lines.append("")
    lines.append("CPU by component per transfer made visible, in milliseconds (median of the repeats):\n")
    lines.append("| scenario | " + " | ".join(present) + " | ours in all |")
    lines.append("|---|" + "---|" * (len(present) + 1))
    ours = [c for c in present if c not in ("harness", "loadgen", "other (not ours)")]
    for scenario in "abcd":
        data = results.get(scenario)
        if not data:
            continue
        per = data["summary"].get("cpu_ms_per_transfer", {})
        total = sum(per.get(c) or 0 for c in ours)
        lines.append(f"| {scenario} | " + " | ".join(fmt(per.get(c), 2) for c in present) + f" | {fmt(total, 2)} |")
    lines.append("")
    lines.append("Files: " + ", ".join(f"`results/{data['_file']}`" for data in results.values()) + ".\n")
    return "\n".join(lines) + "\n"


def _grant_tables(results: dict[str, dict[str, Any]]) -> list[str]:
    """h, i and j (issue 10, credit grants)."""
    lines: list[str] = []
    h = results.get("h")
    if h:
        s = h["summary"]
        measured = h.get("scenario_settings", {}).get("measured", {})
        lines.append("")
        lines.append(
            f"**h** {h['title']} ({h['date']}): {len(h['repeats'])} repeats of {h['scenario_settings'].get('debits')} "
            f"debits, each drawing from {s['grants_per_debit']['min']}-{s['grants_per_debit']['max']} grants "
            f"(from grant_allocation) of {h['scenario_settings'].get('grants')} active; "
            f"{measured.get('grants_created')} grants created in all. BEGIN + call + COMMIT timed by the client. "
            f"{verdict(h)}.\n"
        )
        lines.append(
            "| debit p50 ms | debit p95 ms | debit p99 ms | backend CPU ms per debit "
            "| empty transaction p50 ms | other sessions (cores) | machine busy % |"
        )
        lines.append("|---|---|---|---|---|---|---|")
        lines.append(
            f"| {spread_text(s.get('debit_p50_ms'), 2)} | {spread_text(s.get('debit_p95_ms'), 2)} "
            f"| {spread_text(s.get('debit_p99_ms'), 2)} | {spread_text(s.get('backend_cpu_ms_per_debit'), 2)} "
            f"| {fmt(med(s, 'empty_transaction_p50_ms'), 3)} | {spread_text(s.get('other_cores'), 2)} "
            f"| {fmt(med(s, 'machine_busy_pct'))} |"
        )
    i = results.get("i")
    if i:
        s = i["summary"]
        settings_i = i.get("scenario_settings", {})
        changes = settings_i.get("changes_per_kind", {})
        lines.append("")
        lines.append(
            f"**i** {i['title']} ({i['date']}): account with {fmt(settings_i.get('account_entries'))} entries, "
            f"{settings_i.get('clients')} concurrent clients, {settings_i.get('duration')} s per window. "
            f"{verdict(i)}.\n"
        )
        lines.append(
            "| window | changes in it | answer KB | p50 / p95 / p99 ms | p95 ms over the repeats | requests/s "
            "| CPU ms per request: web; postgres | other sessions (cores) |"
        )
        lines.append("|---|---|---|---|---|---|---|---|")
        lines.extend(
            f"| {kind} | {fmt(changes.get(kind, {}).get('changes'))} "
            f"| {fmt(changes.get(kind, {}).get('bytes', 0) / 1000)} "
            f"| {triple(s, kind)} | {spread_text(s.get(f'{kind}_p95_ms'))} | {spread_text(s.get(f'{kind}_rps'))} "
            f"| {fmt(f_cpu_per_request(i, kind, 'web'), 2)}; {fmt(f_cpu_per_request(i, kind, 'postgres'), 2)} "
            f"| {fmt(f_other_cores(i, kind), 2)} |"
            for kind in I_KINDS
            if f"{kind}_p50_ms" in s
        )
    j = results.get("j")
    if j:
        s = j["summary"]
        settings_j = j.get("scenario_settings", {})
        lines.append("")
        lines.append(
            f"**j** {j['title']} ({j['date']}): {len(j['repeats'])} repeats of {settings_j.get('blocks')} alternating "
            f"blocks of {settings_j.get('per_block')} transfers per version, random pairs of "
            f"{settings_j.get('accounts')} accounts without grants; v6 / v5 median "
            f"{fmt(s.get('v6_over_v5_median'), 3)}, backend CPU {fmt(s.get('v6_over_v5_backend_cpu'), 3)}. "
            f"{verdict(j)}.\n"
        )
        lines.append("| ledger_post_transfer | p50 ms | p95 ms | p99 ms | backend CPU ms per transfer |")
        lines.append("|---|---|---|---|---|")
        lines.extend(
            f"| {name} | {spread_text(s.get(f'{name}_p50_ms'), 2)} | {spread_text(s.get(f'{name}_p95_ms'), 2)} "
            f"| {spread_text(s.get(f'{name}_p99_ms'), 2)} | {spread_text(s.get(f'{name}_backend_cpu_ms'), 2)} |"
            for name in ("v5", "v6")
        )
        lines.append("")
        lines.append(
            f"Empty transaction p50 {fmt(med(s, 'empty_transaction_p50_ms'), 3)} ms; other sessions "
            f"{spread_text(s.get('other_cores'), 2)} cores; machine busy {fmt(med(s, 'machine_busy_pct'))} %."
        )
    return lines


def plot(results: dict[str, dict[str, Any]], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    load = [s for s in "abcd" if s in results]

    ax = axes[0][0]
    meds = [med(results[s]["summary"], "e2e_tps") or 0 for s in load]
    lows = [m - (results[s]["summary"]["e2e_tps"].get("min") or m) for s, m in zip(load, meds, strict=False)]
    highs = [(results[s]["summary"]["e2e_tps"].get("max") or m) - m for s, m in zip(load, meds, strict=False)]
    ax.bar(load, meds, yerr=[lows, highs], capsize=6, color="#4c72b0")
    for x, m in zip(load, meds, strict=False):
        ax.text(x, m, f"{m:.0f}", ha="center", va="bottom")
    tps = med(results["c"]["summary"], "pgbench_tps") if "c" in results else None
    if tps:
        ax.axhline(tps, color="#c44e52", linestyle="--", label=f"pgbench tpcb-like {tps:.0f} tps")
        ax.axhline(0.4 * tps, color="#dd8452", linestyle=":", label="0.4 x pgbench")
    ax.axhline(800, color="grey", linestyle="-.", linewidth=1, label="target c: 800/s")
    ax.set_title("Transfers/s committed and projected (median, min–max)")
    ax.legend(fontsize=8)

    ax = axes[0][1]
    width = 0.13
    series = [("http", "p50"), ("http", "p95"), ("http", "p99"), ("c2p", "p50"), ("c2p", "p95"), ("c2p", "p99")]
    colors = ["#8fb3de", "#4c72b0", "#23395d", "#a6d8a6", "#55a868", "#2a5a33"]
    for i, ((kind, q), color) in enumerate(zip(series, colors, strict=False)):
        values = [med(results[s]["summary"], f"{kind}_{q}_ms") or 0 for s in load]
        ax.bar(
            [j + (i - 2.5) * width for j in range(len(load))],
            values,
            width,
            color=color,
            label=f"{'HTTP' if kind == 'http' else 'commit→projection'} {q}",
        )
    ax.set_xticks(range(len(load)), load)
    ax.set_yscale("log")
    ax.axhline(20, color="#4c72b0", linestyle=":", linewidth=1)
    ax.axhline(250, color="#55a868", linestyle=":", linewidth=1)
    ax.set_title("Latency, ms (log); dotted: targets of b (HTTP p95 20, projection p95 250)")
    ax.legend(fontsize=7, ncol=2)

    ax = axes[1][0]
    bottom = [0.0] * len(load)
    palette = [
        "#4c72b0",
        "#c44e52",
        "#dd8452",
        "#55a868",
        "#8172b3",
        "#937860",
        "#da8bc3",
        "#8c8c8c",
        "#ccb974",
        "#64b5cd",
        "#dddddd",
    ]
    for component, color in zip(COMPONENTS, palette, strict=False):
        values = [(results[s]["summary"].get("cpu_cores") or {}).get(component) or 0 for s in load]
        if not any(values):
            continue
        ax.bar(load, values, bottom=bottom, color=color, label=component)
        bottom = [b + v for b, v in zip(bottom, values, strict=False)]
    ax.axhline(2, color="black", linewidth=1)
    ax.set_ylim(0, 2.9)
    ax.set_title("CPU by component, cores (the machine has 2)")
    ax.legend(fontsize=7, ncol=4, loc="upper center")

    ax = axes[1][1]
    if "f" in results:
        s = results["f"]["summary"]
        kinds = [k for k in F_KINDS if f"{k}_p50_ms" in s]
        for i, (q, color) in enumerate(zip(("p50", "p95", "p99"), ("#8fb3de", "#4c72b0", "#23395d"), strict=False)):
            ax.bar(
                [j + (i - 1) * 0.25 for j in range(len(kinds))],
                [med(s, f"{k}_{q}_ms") or 0 for k in kinds],
                0.25,
                color=color,
                label=q,
            )
        ax.set_xticks(
            range(len(kinds)), [k.replace("statement_", "stmt ").replace("_", " ") for k in kinds], fontsize=8
        )
        ax.axhline(10, color="#c44e52", linestyle="--", label="target p95 10 ms")
        title = "f: reads of an account with 1,000,000 entries, ms"
        if "e" in results:
            title += f"\ne: replay {med(results['e']['summary'], 'replay_seconds') or 0:.1f} s (target 60 s)"
        ax.set_title(title)
        ax.legend(fontsize=8)
    else:
        ax.axis("off")
    fig.suptitle("Credit Ledger benchmarks (benchmarks/README.md)")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=90)


def update_readme(readme: Path, text: str) -> None:
    content = readme.read_text() if readme.exists() else f"# Benchmarks\n\n{START}\n{END}\n"
    if START not in content or END not in content:
        content += f"\n{START}\n{END}\n"
    before, rest = content.split(START, 1)
    _, after = rest.split(END, 1)
    readme.write_text(f"{before}{START}\n{text}{END}{after}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__.split("\n")[0])
    parser.add_argument("--results-dir", default=str(BENCH_DIR / "results"))
    parser.add_argument("--readme", default=str(BENCH_DIR / "README.md"))
    parser.add_argument("--png", default=None, help="default: <results-dir>/summary.png")
    parser.add_argument("--include-smoke", action="store_true", help="also use --smoke results (tests)")
    args = parser.parse_args(argv)
    results_dir = Path(args.results_dir)
    results = latest(results_dir, include_smoke=args.include_smoke)
    update_readme(Path(args.readme), tables(results))
    if results:
        plot(results, Path(args.png) if args.png else results_dir / "summary.png")
    print(f"summarised {', '.join(results) or 'nothing'} into {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
