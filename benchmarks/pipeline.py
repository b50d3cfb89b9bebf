"""Pipeline throughput (issue 11, ADR 0022): the outbox relay alone and the projection consumer
alone, in events/s and CPU per event, with 1 and 2 relay shards and 1 and 2 consumers.

    python -m benchmarks.pipeline                  # 10,000 transfers: about 31,000 events
    python -m benchmarks.pipeline --smoke          # a few dozen, in seconds (the test suite)

Needs DATABASE_URL: a PostgreSQL server on which it creates (and drops first) the database
<db-prefix>_pipeline. Starts its own in-memory Tansu broker (creditledger.devstack). Writes
benchmarks/results/<date>-pipeline.json.

1. Seed: migrate, open accounts, post transfers through transfer_batch_create (each writes
   three outbox rows: TransferPosted and two EntryPosted), in batches of 1,000.
2. Relay: for 1, then 2 shards, on a new broker with every row unpublished again, one process
   per shard (as the Celery worker runs them) is started and warmed (Django loaded, producer
   connected), then all are released at once. Timed until the last has drained its shard;
   CPU is the relay processes' own, per event published.
3. Consumer: on the broker the 2-shard relay filled, for 1, then 2 `consume_projections`
   processes of a new group, on emptied projections. Timed from the first statement line
   applied to the last (a process's start-up and the group's join are not counted; the
   rate is over the lines applied in that interval, scaled to all events); CPU of the consumer
   processes over the same interval, per event.
PostgreSQL's CPU is not counted here: make bench's scenario c reports it per transfer.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg import sql

from benchmarks.stack import PostgresServer, database_url_conninfo

BENCH_DIR = Path(__file__).resolve().parent
BASE_DIR = BENCH_DIR.parent
PYTHON = sys.executable
TITLE = "pipeline throughput: the outbox relay alone (1 and 2 shards) and the consumer alone (1 and 2), events/s"
SIZES = {
    False: {"accounts": 1000, "transfers": 10_000, "batch": 1000},
    True: {"accounts": 10, "transfers": 40, "batch": 20},
}
PROJECTION_TABLES = (
    "projection_balance",
    "projection_statement_line",
    "projection_transfer",
    "projection_grant",
    "projection_consumer_offset",
)
WAIT_SECONDS = 300.0


def _connect(url: str) -> psycopg.Connection:
    return psycopg.connect(**database_url_conninfo(url), autocommit=True)


def _env(database_url: str, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        # Nothing is scheduled: the commit-time kicks go to an in-memory Celery broker.
        "CELERY_BROKER_URL": "memory://",
        "LOG_LEVEL": "WARNING",
        **extra,
    }
    env.pop("READ_DATABASE_URL", None)
    return env


def _worker(env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [PYTHON, "-m", "benchmarks.pipeline", *args],
        cwd=BASE_DIR,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def seed(database_url: str, *, accounts: int, transfers: int, batch: int) -> dict[str, int]:
    env = _env(database_url)
    subprocess.run([PYTHON, "manage.py", "migrate", "--no-input", "-v", "0"], cwd=BASE_DIR, env=env, check=True)
    started = time.perf_counter()
    done = subprocess.run(
        [PYTHON, "-m", "benchmarks.pipeline", "seed-worker", str(accounts), str(transfers), str(batch)],
        cwd=BASE_DIR,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    counts = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"seeded {counts['events']} events in {time.perf_counter() - started:.1f} s", flush=True)
    return counts


def _seed_worker(accounts: int, transfers: int, batch: int) -> None:
    import random

    import django

    django.setup()
    from apps.accounts.services import account_create
    from apps.ledger.services import transfer_batch_create, transfer_request_single
    from apps.outbox.models import OutboxEvent

    rng = random.Random(11)
    ids = [account_create(currency="USD").id for _ in range(accounts)]
    for first in range(0, transfers, batch):
        requests = []
        for n in range(first, min(first + batch, transfers)):
            source, destination = rng.sample(ids, 2)
            requests.append(
                transfer_request_single(
                    idempotency_key=f"pipeline-{n}",
                    from_account_id=source,
                    to_account_id=destination,
                    amount=rng.randint(1, 1000),
                    currency="USD",
                )
            )
        transfer_batch_create(atomic=False, requests=requests)
    print(json.dumps({"events": OutboxEvent.objects.count(), "lines": 2 * transfers, "transfers": transfers}))


def _relay_worker(shard: int) -> None:
    import django

    django.setup()
    from apps.outbox import relay

    relay._Producer.get()  # connected and the broker checked before the clock starts
    print("ready", flush=True)
    sys.stdin.readline()
    started, cpu = time.perf_counter(), time.process_time()
    result = relay.outbox_relay(shard=shard, ignore_backoff=True)
    print(
        json.dumps(
            {
                "published": result.published,
                "failed": result.failed,
                "skipped": result.skipped,
                "seconds": time.perf_counter() - started,
                "cpu_seconds": time.process_time() - cpu,
            }
        ),
        flush=True,
    )


def relay_measure(database_url: str, bootstrap: str, *, shards: int, events: int) -> dict[str, Any]:
    with _connect(database_url) as conn:
        conn.execute("UPDATE outbox_event SET published_at = NULL")
        conn.execute("TRUNCATE outbox_delivery")
        conn.execute("DELETE FROM outbox_relay_state")  # a new broker: not one that lost its history
        conn.execute("VACUUM ANALYZE outbox_event")
    env = _env(database_url, KAFKA_BOOTSTRAP_SERVERS=bootstrap, OUTBOX_SHARDS=str(shards))
    workers = [_worker(env, "relay-worker", str(shard)) for shard in range(shards)]
    for worker in workers:
        if worker.stdout is None or worker.stdout.readline().strip() != "ready":
            raise RuntimeError("a relay worker did not start")
    started, machine = time.perf_counter(), psutil.cpu_times()
    for worker in workers:
        if worker.stdin is not None:
            worker.stdin.write("go\n")
            worker.stdin.flush()
    results = []
    for worker in workers:
        out, _ = worker.communicate(timeout=WAIT_SECONDS)
        results.append(json.loads(out.strip().splitlines()[-1]))
    seconds = time.perf_counter() - started
    busy = _busy_percent(machine)
    published = sum(r["published"] for r in results)
    if published != events or any(r["failed"] or r["skipped"] for r in results):
        raise RuntimeError(f"the relay published {published} of {events} events: {results}")
    cpu = sum(r["cpu_seconds"] for r in results)
    return {
        "shards": shards,
        "events": published,
        "seconds": round(seconds, 3),
        "events_per_second": round(published / seconds, 1),
        "cpu_ms_per_event": round(1000 * cpu / published, 4),
        "machine_busy_percent": busy,
        "per_shard": [{k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()} for r in results],
    }


def _busy_percent(since: Any) -> float:
    """How busy the machine's cores were since the psutil.cpu_times() `since`, all processes
    (PostgreSQL, the broker, other sessions) included."""
    now = psutil.cpu_times()
    idle = (now.idle + getattr(now, "iowait", 0.0)) - (since.idle + getattr(since, "iowait", 0.0))
    total = sum(now) - sum(since)
    return round(100 * (1 - idle / total), 1) if total else 0.0


def _cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        times = process.cpu_times()
        total += times.user + times.system
    return total


def consumer_measure(database_url: str, bootstrap: str, *, consumers: int, events: int, lines: int) -> dict[str, Any]:
    with _connect(database_url) as conn:
        conn.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(map(sql.Identifier, PROJECTION_TABLES))))
        # The embedded broker's group settings, as in the test suite: a join otherwise waits ~45 s.
        env = _env(
            database_url,
            KAFKA_BOOTSTRAP_SERVERS=bootstrap,
            KAFKA_CONSUMER_SESSION_TIMEOUT_MS="2000",
            KAFKA_CONSUMER_HEARTBEAT_INTERVAL_MS="500",
        )
        group = f"bench-pipeline-{consumers}-{uuid.uuid4().hex[:8]}"
        command = [PYTHON, "manage.py", "consume_projections", "--group", group, "--metrics-port", "0"]
        workers = [
            subprocess.Popen(command, cwd=BASE_DIR, env=env, stdout=subprocess.DEVNULL) for _ in range(consumers)
        ]
        processes = [psutil.Process(worker.pid) for worker in workers]
        try:
            deadline = time.monotonic() + WAIT_SECONDS
            first: tuple[float, float, int] | None = None
            while True:
                (applied,) = conn.execute("SELECT count(*) FROM projection_statement_line").fetchall()[0]
                now = time.perf_counter()
                if applied and first is None:
                    first = (now, _cpu_seconds(processes), applied)
                    machine = psutil.cpu_times()
                if applied >= lines:
                    break
                if time.monotonic() > deadline or any(worker.poll() is not None for worker in workers):
                    raise RuntimeError(f"the consumers applied {applied} of {lines} statement lines")
                time.sleep(0.02)
            cpu = _cpu_seconds(processes)
            busy = _busy_percent(machine)
        finally:
            for worker in workers:
                worker.terminate()
            for worker in workers:
                worker.wait(timeout=60)
    if first is None:
        raise RuntimeError("nothing to apply")
    started, cpu_started, lines_before = first
    seconds = now - started
    timed_events = events * (lines - lines_before) / lines
    return {
        "consumers": consumers,
        "events": events,
        "timed_events": round(timed_events),
        "seconds": round(seconds, 3),
        "events_per_second": round(timed_events / seconds, 1) if seconds else None,
        "cpu_ms_per_event": round(1000 * (cpu - cpu_started) / timed_events, 4) if timed_events else None,
        "machine_busy_percent": busy,
    }


def pipeline_run(*, base_url: str, smoke: bool, db_prefix: str, results_dir: Path) -> Path:
    """Measure, and write the result; `base_url`: any database of the PostgreSQL server to use."""
    from benchmarks.measure import machine_info
    from creditledger.devstack import TansuBroker

    sizes = SIZES[smoke]
    server = PostgresServer(base_url, Path(tempfile.gettempdir()))  # not embedded: the work dir is unused
    database = f"{db_prefix}_pipeline"
    server.recreate(database)
    database_url = server.url(database)
    counts = seed(database_url, **sizes)
    result: dict[str, Any] = {
        "scenario": "k",
        "title": TITLE,
        "smoke": smoke,
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "sizes": {**sizes, "events": counts["events"]},
        "machine": machine_info(),
        "broker": "embedded Tansu, in memory",
        "relay": [],
        "consumer": [],
    }
    broker: TansuBroker | None = None
    bootstrap = ""
    try:
        for shards in (1, 2):
            if broker is not None:
                broker.stop()
            broker = TansuBroker(log_path=Path(tempfile.gettempdir()) / f"{db_prefix}-tansu.log")
            broker.start()
            bootstrap = broker.bootstrap_servers
            measured = relay_measure(database_url, bootstrap, shards=shards, events=counts["events"])
            print(f"relay, {shards} shard(s): {measured['events_per_second']} events/s", flush=True)
            result["relay"].append(measured)
        for consumers in (1, 2):  # on the broker the 2-shard relay filled
            measured = consumer_measure(
                database_url,
                bootstrap,
                consumers=consumers,
                events=counts["events"],
                lines=counts["lines"],
            )
            print(f"consumer, {consumers} process(es): {measured['events_per_second']} events/s", flush=True)
            result["consumer"].append(measured)
    finally:
        if broker is not None:
            broker.stop()
        server.drop(database)
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{dt.datetime.now(dt.UTC).date().isoformat()}-pipeline.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}", flush=True)
    return path


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["seed-worker"]:
        _seed_worker(*(int(value) for value in args[1:4]))
        return 0
    if args[:1] == ["relay-worker"]:
        _relay_worker(int(args[1]))
        return 0
    parser = argparse.ArgumentParser(description=TITLE)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds")
    parser.add_argument("--db-prefix", default="cl_bench")
    parser.add_argument("--results-dir", type=Path, default=BENCH_DIR / "results")
    options = parser.parse_args(args)
    pipeline_run(
        base_url=os.environ["DATABASE_URL"],
        smoke=options.smoke,
        db_prefix=options.db_prefix,
        results_dir=options.results_dir,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
