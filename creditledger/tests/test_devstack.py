"""`make run`'s stack, started for real (`python -m creditledger.devstack run`) in a data
directory and database of its own: the operator commands share it, it serves concurrent
clients without 5xx, its supervisor brings back any child or the broker killed under load,
it loses no event across a kill and a restart, and Ctrl-C stops the embedded PostgreSQL it
started but not one that another process still holds."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests
from psycopg import sql

from apps.outbox.relay import RELAY_LOCK_KEY
from creditledger.devstack import BASE_DIR, DATA_DIR, STACK_VARIABLES, database_connect, free_port

pytestmark = pytest.mark.slow

#: The stack's own configuration is what it records in stack.env; the suite's must not leak in.
SUITE_VARIABLES = (*STACK_VARIABLES, "DJANGO_SETTINGS_MODULE", "CREDITLEDGER_DATA_DIR", "PORT")


@pytest.fixture
def stack_database() -> Iterator[str]:
    """A fresh database on the suite's PostgreSQL server, dropped afterwards."""
    suite_url = os.environ["DATABASE_URL"]
    name = f"creditledger_stack_{uuid.uuid4().hex[:8]}"
    with database_connect(suite_url) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    address, _, query = suite_url.partition("?")
    yield address.rsplit("/", 1)[0] + "/" + name + (f"?{query}" if query else "")
    with database_connect(suite_url) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


class Stack:
    """One `devstack run` and the commands an operator runs beside it."""

    def __init__(self, data_dir: Path, database_url: str | None) -> None:
        """With no database_url, the stack starts (or joins) the embedded PostgreSQL in data_dir."""
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        base = {name: value for name, value in os.environ.items() if name not in SUITE_VARIABLES}
        #: What an operator's shell has: nothing but where the checkout keeps its data.
        self.shell_env = {**base, "CREDITLEDGER_DATA_DIR": str(data_dir)}
        self.run_env = {
            **self.shell_env,
            **({"DATABASE_URL": database_url} if database_url else {}),
            "PORT": str(self.port),
            "WORKER_METRICS_PORT": str(free_port()),
            "CONSUMER_METRICS_PORT": str(free_port()),
        }
        self.log_path = data_dir / "stack.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "creditledger.devstack", "run"],
                env=self.run_env,
                cwd=BASE_DIR,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.wait_until(lambda: self.get("/readyz").status_code == 200, 120, "the stack to serve")

    @property
    def started(self) -> subprocess.Popen:
        """The supervisor's process: start() ran."""
        assert self.process is not None, "the stack was not started"
        return self.process

    def stop(self, signum: int = signal.SIGINT) -> None:
        self.started.send_signal(signum)
        self.started.wait(timeout=60)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str) -> requests.Response:
        return requests.get(self.url + path, timeout=10)

    def post(self, path: str, body: dict) -> requests.Response:
        return requests.post(self.url + path, json=body, timeout=30)

    def manage(self, *args: str, **extra_env: str) -> subprocess.CompletedProcess:
        """`python manage.py ...` as an operator types it: no DATABASE_URL, no broker address."""
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            check=False,
            env={**self.shell_env, **extra_env},
            cwd=BASE_DIR,
            capture_output=True,
            text=True,
            timeout=180,
        )

    def child(self, name: str) -> psutil.Process:
        """The supervised process called `name` (web is gunicorn's master)."""
        marks = {
            "web": "gunicorn",
            "worker": "worker",
            "beat": "beat",
            "consumer": "consume_projections",
            "broker": "--listener-url",
        }
        for process in psutil.Process(self.started.pid).children():
            with_args = " ".join(process.cmdline())
            if marks[name] in with_args:
                return process
        raise LookupError(f"no {name} child")

    def wait_until(self, condition, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if condition():
                    return
            except (requests.RequestException, LookupError, psutil.Error):
                pass
            assert self.started.poll() is None, (
                f"the stack exited with {self.started.returncode}:\n{self.log()[-3000:]}"
            )
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}:\n{self.log()[-3000:]}")

    def open_accounts(self, count: int) -> list[str]:
        return [self.post("/accounts", {"currency": "USD"}).json()["accountId"] for _ in range(count)]

    def assert_consistent(self) -> None:
        projections = self.manage("verify_projections", "--wait", "30")
        assert projections.returncode == 0, projections.stdout + projections.stderr
        ledger = self.manage("verify_ledger")
        assert ledger.returncode == 0, ledger.stdout + ledger.stderr


class Load:
    """Clients posting transfers both ways between shared accounts until stopped. A refused
    connection is retried (the web server may be restarting) and counted apart."""

    def __init__(self, stack: Stack, accounts: list[str], clients: int) -> None:
        self.stack = stack
        self.accounts = accounts
        self.statuses: Counter[int] = Counter()
        self.connection_errors = 0
        self.stopping = threading.Event()
        self.keys = itertools.count()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._client, args=(n,), daemon=True) for n in range(clients)]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def _client(self, n: int) -> None:
        session = requests.Session()
        pairs = itertools.cycle([(a, b) for a in self.accounts for b in self.accounts if a != b])
        for _ in range(n):
            next(pairs)
        while not self.stopping.is_set():
            source, destination = next(pairs)
            body: dict[str, str | int] = {
                "from": source,
                "to": destination,
                "amount": 1 + n,
                "currency": "USD",
                "idempotencyKey": f"load-{uuid.uuid4()}",
            }
            try:
                status = session.post(self.stack.url + "/transfers", json=body, timeout=30).status_code
            except requests.RequestException:  # refused, reset, or cut off by a killed web server
                with self.lock:
                    self.connection_errors += 1
                time.sleep(0.2)
                continue
            with self.lock:
                self.statuses[status] += 1


@pytest.fixture
def stack(tmp_path: Path, stack_database: str) -> Iterator[Stack]:
    running = Stack(tmp_path / "data", stack_database)
    running.start()
    yield running
    if running.started.poll() is None:
        running.stop()


def test_the_operator_commands_use_the_running_stack(stack):
    accounts = stack.open_accounts(3)
    stack.post(
        "/transfers",
        {"from": accounts[0], "to": accounts[1], "amount": 5, "currency": "USD", "idempotencyKey": "ops-1"},
    )
    # With the worker paused, only the operator's relay can publish the next transfer.
    worker = stack.child("worker")
    with _paused_outside_the_relay(stack, worker):
        stack.post(
            "/transfers",
            {"from": accounts[1], "to": accounts[2], "amount": 3, "currency": "USD", "idempotencyKey": "ops-2"},
        )
        relay = stack.manage("relay_outbox")
        assert relay.returncode == 0, relay.stderr
        assert "published 0 events" not in relay.stdout
    # The live consumer saw what the operator's relay published: the broker is the stack's.
    stack.assert_consistent()

    replay = stack.manage("replay_projections", "--from-kafka", "--no-progress")
    assert replay.returncode == 0, replay.stdout + replay.stderr
    stack.assert_consistent()
    balance = stack.get(f"/accounts/{accounts[2]}/balance").json()
    assert balance["balance"] == 3

    superuser = stack.manage(
        "createsuperuser",
        "--no-input",
        DJANGO_SUPERUSER_USERNAME="ops",
        DJANGO_SUPERUSER_EMAIL="ops@example.com",
        DJANGO_SUPERUSER_PASSWORD="a-long-passphrase",
    )
    assert superuser.returncode == 0, superuser.stderr
    session = requests.Session()
    login_page = session.get(stack.url + "/admin/login/")
    logged_in = session.post(
        stack.url + "/admin/login/?next=/admin/",
        allow_redirects=False,
        data={
            "username": "ops",
            "password": "a-long-passphrase",
            "csrfmiddlewaretoken": login_page.cookies["csrftoken"],
            "next": "/admin/",
        },
        headers={"Referer": stack.url + "/admin/login/"},
    )
    assert logged_in.status_code == 302
    assert logged_in.headers["Location"] == "/admin/"


@contextlib.contextmanager
def _paused_outside_the_relay(stack: Stack, worker: psutil.Process) -> Iterator[None]:
    """SIGSTOP the worker at a moment it holds no relay shard's lock (a paused holder would
    keep it), checked by asking PostgreSQL who holds the advisory locks (RELAY_LOCK_KEY and
    the shard's key: a two-key lock, objsubid 2)."""
    url = stack.run_env["DATABASE_URL"]
    for _ in range(50):
        worker.suspend()
        with database_connect(url) as conn:
            holders = conn.execute(
                "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
                "WHERE l.locktype = 'advisory' AND l.classid = %s AND l.objsubid = 2 "
                "AND d.datname = current_database()",
                [RELAY_LOCK_KEY],
            ).fetchone()[0]
        if holders == 0:
            break
        worker.resume()
        time.sleep(0.2)
    else:
        raise AssertionError("the worker always held the relay lock")
    try:
        yield
    finally:
        worker.resume()


def test_concurrent_clients_get_no_server_error(stack):
    accounts = stack.open_accounts(4)
    with Load(stack, accounts, clients=64) as load:
        time.sleep(10)
    assert load.statuses[201] > 100
    assert set(load.statuses) <= {201, 422}, load.statuses
    assert load.connection_errors == 0
    assert "deadlock" not in stack.log().lower()
    stack.assert_consistent()


def test_the_supervisor_brings_back_every_child_killed_under_load(stack):
    accounts = stack.open_accounts(4)
    with Load(stack, accounts, clients=8) as load:
        for name in ("consumer", "worker", "beat", "broker"):
            killed = stack.child(name)
            killed.kill()
            stack.wait_until(
                lambda name=name, killed=killed: stack.child(name).pid != killed.pid, 30, f"{name} to be restarted"
            )
            time.sleep(2)
        served_without_web_restart = dict(load.statuses)
        web = stack.child("web")
        web.kill()
        stack.wait_until(
            lambda: stack.child("web").pid != web.pid and stack.get("/readyz").ok, 60, "web to serve again"
        )
        time.sleep(2)
    assert set(served_without_web_restart) <= {201, 422}, served_without_web_restart
    assert set(load.statuses) <= {201, 422}, load.statuses
    for name in ("consumer", "worker", "beat", "web"):
        assert f"devstack: {name} exited with -9; restarting it" in stack.log()
    assert "the embedded broker exited with -9; restarting it" in stack.log()
    stack.assert_consistent()


def test_the_consumer_resumes_on_the_broker_restarted_under_load(stack):
    accounts = stack.open_accounts(4)
    with Load(stack, accounts, clients=8) as load:
        time.sleep(3)
        broker = stack.child("broker")
        broker.kill()
        stack.wait_until(lambda: stack.child("broker").pid != broker.pid, 30, "the broker to be restarted")
        time.sleep(3)
    assert set(load.statuses) <= {201, 422}, load.statuses
    assert "the embedded broker exited with -9; restarting it" in stack.log()
    stack.assert_consistent()


def test_nothing_is_lost_when_the_stack_stops_with_a_backlog(stack):
    accounts = stack.open_accounts(4)
    stack.child("consumer").kill()
    with Load(stack, accounts, clients=4) as load:
        time.sleep(3)
    assert load.statuses[201] > 0
    stack.stop(signal.SIGINT)  # Ctrl-C: published but unconsumed events die with the in-memory broker

    stack.start()
    started = time.monotonic()
    stack.assert_consistent()
    assert time.monotonic() - started < 30
    assert _transfers_listed(stack) == load.statuses[201]


def _transfers_listed(stack: Stack) -> int:
    count, cursor = 0, ""
    while True:
        page = stack.get(f"/transfers?limit=500{cursor}").json()
        count += len(page["data"])
        if not page["nextCursor"]:
            return count
        cursor = f"&cursor={page['nextCursor']}"


def test_the_readme_credits_recipe_gives_what_it_says(stack):
    readme = (BASE_DIR / "README.md").read_text()
    section = readme.split("## Credits in five minutes", 1)[1]
    script = section.split("```sh\n", 1)[1].split("```", 1)[0]
    expected = [json.loads(line[2:]) for line in script.splitlines() if line.startswith("# {")]

    run = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script.replace("localhost:4000", f"127.0.0.1:{stack.port}")],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert run.returncode == 0, run.stderr
    printed, decoder, rest = [], json.JSONDecoder(), run.stdout.strip()
    while rest:
        value, end = decoder.raw_decode(rest)
        printed.append(value)
        rest = rest[end:].strip()
    assert len(expected) == 4
    assert all(value in printed for value in expected), (expected, printed)


def test_without_a_stack_commands_use_the_embedded_database_and_refuse_to_guess_a_broker(stack):
    stack.stop()
    assert not (stack.data_dir / "stack.env").exists()

    help_text = stack.manage("relay_outbox", "--help")  # nothing set: the embedded PostgreSQL
    assert help_text.returncode == 0, help_text.stderr
    assert "Drain the outbox" in help_text.stdout

    database = {"DATABASE_URL": stack.run_env["DATABASE_URL"]}
    ledger = stack.manage("verify_ledger", **database)
    assert ledger.returncode == 0, ledger.stderr
    for command in (
        ["relay_outbox"],
        ["replay_projections", "--from-kafka", "--no-progress"],
        ["consume_projections", "--metrics-port", "0"],
    ):
        refused = stack.manage(*command, **database)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "CommandError: no Kafka broker" in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr, refused.stderr


@pytest.fixture
def embedded_data_dir() -> Iterator[Path]:
    """A fresh data directory inside the checkout's .data, where the suite's embedded server
    lives too (pgserver opens every parent of a server's data to its `pgserver` user). Any
    server left in it is stopped (SIGINT: a fast shutdown) before it is removed."""
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    data_dir = Path(tempfile.mkdtemp(prefix="devstack-test-", dir=DATA_DIR))
    yield data_dir
    left = _postgres_serving(data_dir)
    for process in left:
        process.send_signal(signal.SIGINT)
    psutil.wait_procs(left, timeout=30)
    shutil.rmtree(data_dir, ignore_errors=True)


def _postgres_serving(data_dir: Path) -> list[psutil.Process]:
    """The live postmasters of the embedded server in data_dir (a stopped one may linger as a
    zombie until its new parent reaps it: it serves nothing)."""
    found = []
    for process in psutil.process_iter(["name", "cmdline", "status"]):
        cmdline = process.info["cmdline"] or []
        if (
            process.info["name"] == "postgres"
            and process.info["status"] != psutil.STATUS_ZOMBIE
            and str(data_dir / "postgres") in cmdline
        ):
            found.append(process)
    return found


def test_ctrl_c_stops_the_embedded_postgresql_the_stack_started(embedded_data_dir):
    stack = Stack(embedded_data_dir, database_url=None)  # as `make run` on a fresh clone
    stack.start()
    assert _postgres_serving(embedded_data_dir), "the stack serves from its embedded PostgreSQL"

    stack.stop(signal.SIGINT)

    assert stack.started.returncode == 0, stack.log()[-3000:]
    assert _postgres_serving(embedded_data_dir) == [], stack.log()[-3000:]
    assert not (embedded_data_dir / "postgres" / "postmaster.pid").exists()
    assert not list((embedded_data_dir / "postgres").glob(".s.PGSQL.*")), "the server's socket is gone"
    assert json.loads((embedded_data_dir / "postgres" / ".handle_pids.json").read_text()) == []


def test_ctrl_c_leaves_the_embedded_postgresql_another_process_holds(embedded_data_dir):
    stack = Stack(embedded_data_dir, database_url=None)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys\n"
                "from creditledger.devstack import embedded_postgres\n"
                "with embedded_postgres() as url:\n"
                "    print(url, flush=True)\n"
                "    sys.stdin.read()\n"
            ),
        ],
        env=stack.shell_env,
        cwd=BASE_DIR,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = (holder.stdout.readline() if holder.stdout else "").strip()
        assert url, f"the holder exited with {holder.poll()}"
        stack.start()  # joins the holder's server
        stack.stop(signal.SIGINT)

        assert stack.started.returncode == 0, stack.log()[-3000:]
        with database_connect(url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        holder.communicate(timeout=60)  # closes its stdin: the last holder lets go

    assert holder.returncode == 0
    assert _postgres_serving(embedded_data_dir) == []
