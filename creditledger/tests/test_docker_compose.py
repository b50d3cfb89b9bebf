"""The docker-compose demo (`make up`) agrees with the settings, Prometheus and Grafana.

These machines have no Docker engine, so nothing is started: docker-compose.yml, the
Dockerfile, deploy/prometheus/prometheus.yml, the Grafana provisioning and dashboard and
.env.example are parsed and cross-checked. Renaming a service, a port or an environment
variable in one of them without the others fails here. Nothing touches the database.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from apps.outbox.topics import ALL_TOPICS

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
PROMETHEUS_FILE = ROOT / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA_DIR = ROOT / "deploy" / "grafana"
DATASOURCE_FILE = GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDER_FILE = GRAFANA_DIR / "provisioning" / "dashboards" / "dashboards.yml"
DASHBOARD_FILE = GRAFANA_DIR / "dashboards" / "creditledger.json"
ENV_EXAMPLE = ROOT / ".env.example"
SETTINGS_DIR = ROOT / "config" / "settings"
OBSERVABILITY_DOC = ROOT / "docs" / "observability.md"

BROKER = "kafka"
EXPECTED_SERVICES = {
    "postgres",
    "redis",
    BROKER,
    "console",
    "migrate",
    "api-keys",
    "web",
    "worker",
    "beat",
    "consumer",
    "prometheus",
    "grafana",
    "jaeger",
}
APP_SERVICES = ("migrate", "api-keys", "web", "worker", "beat", "consumer")
LONG_RUNNING_APP_SERVICES = ("web", "worker", "beat", "consumer")
PROCESS_COMMANDS = {
    "migrate": ["python", "manage.py", "migrate", "--no-input"],
    "web": ["gunicorn", "--config", "config/gunicorn.py", "creditledger.wsgi:application", "--bind", "0.0.0.0:4000"],
    "worker": ["celery", "-A", "creditledger", "worker", "--pool=solo", "--loglevel=info"],
    "beat": ["celery", "-A", "creditledger", "beat", "--loglevel=info", "--schedule", "/tmp/celerybeat-schedule"],
    "consumer": ["python", "manage.py", "consume_projections"],
}
# Host port -> container port published by each service with a UI or API for the user.
PUBLISHED_PORTS = {"web": 4000, "grafana": 3000, "jaeger": 16686, "prometheus": 9090, "console": 8080}
POSTGRES_PORT = 5432
REDIS_PORT = 6379
OTLP_HTTP_PORT = 4318
PROMETHEUS_DEFAULT_PORT = 9090

# Variables read outside config/settings: by OpenTelemetry's SDK and creditledger.telemetry
# (OTEL_*), and by prometheus_client / creditledger.metrics (PROMETHEUS_MULTIPROC_DIR).
EXTRA_ENV_NAMES = {"PROMETHEUS_MULTIPROC_DIR"}
EXTRA_ENV_PREFIX = "OTEL_"

# The metric names the app exports (creditledger/metrics.py and django-prometheus).
PLAIN_METRICS = {
    "django_http_responses_total_by_status_view_method_total",
    "creditledger_transfers_posted_total",
    "creditledger_transfers_failed_total",
    "creditledger_outbox_backlog",
    "creditledger_outbox_oldest_unpublished_age_seconds",
    "creditledger_relay_published_total",
    "creditledger_relay_failures_total",
    "creditledger_consumer_lag",
    "creditledger_consumer_events_applied_total",
    "creditledger_dead_letters_total",
}
HISTOGRAMS = {
    "django_http_requests_latency_seconds_by_view_method",
    "creditledger_relay_batch_size",
    "creditledger_relay_batch_duration_seconds",
    "creditledger_projection_latency_seconds",
}
# Prometheus writes `up` for every scrape target itself.
PROMETHEUS_SERIES = {"up"}
ALLOWED_SERIES = (
    PLAIN_METRICS
    | {f"{name}{suffix}" for name in HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")}
    | PROMETHEUS_SERIES
)
# Every panel the issue asks for needs its metric on the dashboard.
DASHBOARD_REQUIRED_SERIES = {
    "creditledger_transfers_posted_total",  # transfers/s
    "creditledger_transfers_failed_total",  # failed transfers/s by reason
    "django_http_requests_latency_seconds_by_view_method_bucket",  # HTTP p95
    "creditledger_projection_latency_seconds_bucket",  # commit -> projection p95
    "creditledger_outbox_backlog",
    "creditledger_outbox_oldest_unpublished_age_seconds",
    "creditledger_consumer_lag",
    "creditledger_dead_letters_total",
    "creditledger_relay_batch_size_bucket",
    "creditledger_relay_batch_duration_seconds_bucket",
}

_ENV_CALL = re.compile(r"\benv(?:\.\w+)?\(\s*[\"']([A-Z][A-Z0-9_]*)[\"']\s*(\)|,)")


# --- loading ---------------------------------------------------------------------------------


@functools.cache
def compose() -> dict[str, Any]:
    assert COMPOSE_FILE.is_file(), f"{COMPOSE_FILE} is missing"
    return yaml.safe_load(COMPOSE_FILE.read_text())


def service(name: str) -> dict[str, Any]:
    services = compose()["services"]
    assert name in services, f"docker-compose.yml has no service {name!r} (services: {sorted(services)})"
    return services[name]


@functools.cache
def prometheus_config() -> dict[str, Any]:
    return yaml.safe_load(PROMETHEUS_FILE.read_text())


@functools.cache
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD_FILE.read_text())


@functools.cache
def settings_env_names() -> frozenset[str]:
    """Every variable config/settings/*.py reads through django-environ: env("X"), env.int("X")..."""
    names = {match[1] for path in SETTINGS_DIR.glob("*.py") for match in _ENV_CALL.finditer(path.read_text())}
    assert "DATABASE_URL" in names, (
        "the settings scan found no env(...) call: did the settings stop using django-environ?"
    )
    return frozenset(names)


@functools.cache
def required_env_names() -> frozenset[str]:
    """Variables config.settings.production (base + production) reads without a default."""
    names = set()
    for module in ("base.py", "production.py"):
        for match in _ENV_CALL.finditer((SETTINGS_DIR / module).read_text()):
            if match[2] == ")":
                names.add(match[1])
    return frozenset(names)


def settings_default(name: str) -> str:
    for path in SETTINGS_DIR.glob("*.py"):
        found = re.search(rf"\benv(?:\.\w+)?\(\s*\"{name}\"\s*,\s*default=\"([^\"]*)\"", path.read_text())
        if found:
            return found[1]
    raise AssertionError(f"no string default for {name} in config/settings")


def is_known_env_name(name: str) -> bool:
    return name in settings_env_names() or name in EXTRA_ENV_NAMES or name.startswith(EXTRA_ENV_PREFIX)


# --- compose helpers -------------------------------------------------------------------------


def command(name: str) -> list[str]:
    value = service(name).get("command")
    assert value, f"service {name!r} has no command"
    return shlex.split(value) if isinstance(value, str) else [str(part) for part in value]


def environment(name: str) -> dict[str, str]:
    value = service(name).get("environment") or {}
    if isinstance(value, list):
        value = dict(item.split("=", 1) if "=" in item else (item, "") for item in value)
    return {key: "" if val is None else str(val) for key, val in value.items()}


def app_env(name: str, variable: str) -> str:
    env = environment(name)
    assert variable in env, f"service {name!r} does not set {variable}"
    return env[variable]


def published_ports(name: str) -> dict[int, int]:
    """Container port -> host port."""
    ports = {}
    for entry in service(name).get("ports") or []:
        if isinstance(entry, dict):
            ports[int(entry["target"])] = int(entry["published"])
            continue
        parts = str(entry).split("/")[0].split(":")
        assert len(parts) >= 2, f"{name}: port {entry!r} publishes no fixed host port"
        ports[int(parts[-1])] = int(parts[-2])
    return ports


def depends_on(name: str) -> dict[str, str]:
    value = service(name).get("depends_on") or {}
    if isinstance(value, list):
        return dict.fromkeys(value, "service_started")
    return {dependency: (spec or {}).get("condition", "service_started") for dependency, spec in value.items()}


def healthcheck_test(name: str) -> str:
    check = service(name).get("healthcheck")
    assert check, f"service {name!r} has no healthcheck"
    assert not check.get("disable"), f"service {name!r} has its healthcheck disabled"
    test = check["test"]
    return test if isinstance(test, str) else " ".join(str(part) for part in test)


def healthcheck_url(name: str) -> Any:
    found = re.search(r"https?://[^'\"\s]+", healthcheck_test(name))
    assert found, f"the healthcheck of {name!r} requests no URL"
    return urlsplit(found[0])


def option_value(args: list[str], *flags: str) -> str | None:
    for index, arg in enumerate(args):
        for flag in flags:
            if arg == flag and index + 1 < len(args):
                return args[index + 1]
            if arg.startswith(f"{flag}="):
                return arg.split("=", 1)[1]
    return None


def web_port() -> int:
    bind = option_value(command("web"), "--bind", "-b")
    assert bind, "the web command has no --bind"
    return int(bind.rsplit(":", 1)[1])


def prometheus_port() -> int:
    address = option_value(command("prometheus"), "--web.listen-address")
    return int(address.rsplit(":", 1)[1]) if address else PROMETHEUS_DEFAULT_PORT


def metrics_ports() -> dict[str, int]:
    """The port each scraped process listens on, as docker-compose.yml configures it."""
    return {
        "web": web_port(),
        "worker": int(app_env("worker", "WORKER_METRICS_PORT")),
        "consumer": int(app_env("consumer", "CONSUMER_METRICS_PORT")),
        "prometheus": prometheus_port(),
    }


def mount_target(name: str, source: str) -> str:
    """Where the service mounts the bind source (a path relative to the project)."""
    wanted = (ROOT / source).resolve()
    for volume in service(name).get("volumes") or []:
        if isinstance(volume, dict):
            src, target = volume.get("source", ""), volume["target"]
        else:
            src, target = str(volume).split(":")[:2]
        if src.startswith((".", "/")) and (ROOT / src).resolve() == wanted:
            return target
    raise AssertionError(f"service {name!r} does not mount {source}")


def bootstrap_addresses(value: str) -> list[tuple[str, int]]:
    addresses = []
    for address in value.split(","):
        host, _, port = address.strip().rpartition(":")
        addresses.append((host, int(port)))
    return addresses


def kafka_listeners(value: str) -> dict[str, tuple[str, int]]:
    """'NAME://host:port,...' -> {NAME: (host, port)}."""
    listeners = {}
    for item in value.split(","):
        listener_name, _, address = item.strip().partition("://")
        host, _, port = address.rpartition(":")
        listeners[listener_name] = (host, int(port))
    return listeners


# --- PromQL ----------------------------------------------------------------------------------

_PROMQL_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
}


def promql_series(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, labels, ranges removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range and subquery windows
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\boffset\s+\S+", " ", text)
    text = re.sub(r"\$\{?\w+\}?", " ", text)  # Grafana variables
    names = set()
    for match in re.finditer(r"(?<![\w.])[A-Za-z_:][\w:]*", text):
        if text[match.end() :].lstrip().startswith("("):
            continue  # a function or an aggregation
        if match[0].lower() in _PROMQL_KEYWORDS:
            continue
        names.add(match[0])
    return names


def dashboard_panels() -> list[dict[str, Any]]:
    panels = []
    for panel in dashboard()["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # collapsed rows hold their panels
    return panels


def dashboard_exprs() -> list[tuple[str, str]]:
    return [
        (panel["title"], target["expr"])
        for panel in dashboard_panels()
        for target in panel.get("targets", [])
        if target.get("expr")
    ]


# --- services and image ----------------------------------------------------------------------


def test_every_service_of_the_stack_exists():
    missing = EXPECTED_SERVICES - set(compose()["services"])
    assert not missing, f"docker-compose.yml lacks the services {sorted(missing)}"


def test_the_broker_is_kafka_in_kraft_mode_with_a_console():
    kafka = environment(BROKER)
    assert service(BROKER)["image"].startswith("apache/kafka:")
    assert set(kafka["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert not any(name.startswith("KAFKA_ZOOKEEPER") for name in kafka), "KRaft mode needs no ZooKeeper"
    assert kafka["KAFKA_CONTROLLER_LISTENER_NAMES"] in kafka_listeners(kafka["KAFKA_LISTENERS"])
    assert service("console")["image"].startswith(
        ("redpandadata/console:", "docker.redpanda.com/redpandadata/console:")
    )
    assert bootstrap_addresses(environment("console")["KAFKA_BROKERS"]) == bootstrap_addresses(
        app_env("web", "KAFKA_BOOTSTRAP_SERVERS")
    ), "the console must browse the broker the app uses"


def test_postgres_is_version_16():
    assert re.match(r"postgres:16(\b|[.-])", service("postgres")["image"]), service("postgres")["image"]


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_processes_run_one_image_built_from_the_dockerfile(name):
    reference, current = service("web"), service(name)
    assert current.get("build") == reference.get("build"), f"{name} is not built like web"
    assert current.get("image") == reference.get("image"), f"{name} does not use web's image"
    build = current["build"]
    context = build if isinstance(build, str) else build.get("context", ".")
    dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    assert (ROOT / context / dockerfile).resolve() == (ROOT / "Dockerfile").resolve()


def test_the_dockerfile_builds_the_production_image():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.MULTILINE)
    assert re.search(r"pip install\b.*-r requirements\.txt", text)
    assert re.search(r"DJANGO_SETTINGS_MODULE=config\.settings\.production\b", text)
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert users, "the image sets no USER"
    assert users[-1].split(":")[0] not in {"root", "0"}, "the processes must not run as root"
    assert str(web_port()) in re.findall(r"^EXPOSE\s+(.+)$", text, re.MULTILINE)[-1].split()
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", ".venv", ".git"} <= set(ignored), ".dockerignore must keep .env, .venv and .git out of the image"


@pytest.mark.parametrize("name", sorted(PROCESS_COMMANDS))
def test_app_commands_run_the_processes(name):
    assert command(name) == PROCESS_COMMANDS[name]


# --- environment -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_environment_holds_only_variables_the_app_reads(name):
    unknown = sorted(variable for variable in environment(name) if not is_known_env_name(variable))
    assert not unknown, f"{name} sets {unknown}, which config/settings never reads"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_environment_sets_what_production_requires(name):
    missing = sorted(required_env_names() - set(environment(name)))
    assert not missing, f"config.settings.production requires {missing}, unset in {name}"


def test_shared_app_environment_is_written_once():
    shared = compose().get("x-app-env")
    assert isinstance(shared, dict), "docker-compose.yml has no x-app-env anchor"
    assert shared, "docker-compose.yml's x-app-env anchor is empty"
    for name in APP_SERVICES:
        env = environment(name)
        assert {key: env.get(key) for key in shared} == {key: str(value) for key, value in shared.items()}, name


def env_example_names() -> list[str]:
    return re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.MULTILINE)


def test_env_example_lists_only_variables_the_app_reads():
    unknown = sorted(name for name in env_example_names() if not is_known_env_name(name))
    assert not unknown, f".env.example lists {unknown}, which the app never reads"


def test_env_example_lists_every_variable_the_settings_read():
    missing = sorted(settings_env_names() - set(env_example_names()))
    assert not missing, f"config/settings reads {missing}: document them in .env.example"
    assert {"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME", "PROMETHEUS_MULTIPROC_DIR"} <= set(env_example_names())


def test_env_example_leaves_database_url_to_devstack():
    active = re.findall(r"^([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.MULTILINE)
    assert "DATABASE_URL" not in active, "an active DATABASE_URL would hide the embedded PostgreSQL of make run"
    assert len(active) == len(set(active)), "a variable is set twice in .env.example"


# --- wiring between services -----------------------------------------------------------------


@pytest.mark.parametrize("name", APP_SERVICES)
def test_database_url_points_at_the_postgres_service(name):
    url = urlsplit(app_env(name, "DATABASE_URL"))
    postgres = environment("postgres")
    assert url.scheme in {"postgres", "postgresql"}
    assert (url.hostname, url.port) == ("postgres", POSTGRES_PORT)
    assert url.username == postgres["POSTGRES_USER"]
    assert url.password == postgres["POSTGRES_PASSWORD"]
    assert url.path.lstrip("/") == postgres["POSTGRES_DB"]


@pytest.mark.parametrize("name", APP_SERVICES)
def test_celery_broker_url_points_at_the_redis_service(name):
    url = urlsplit(app_env(name, "CELERY_BROKER_URL"))
    assert url.scheme == "redis"
    assert (url.hostname, url.port or REDIS_PORT) == ("redis", REDIS_PORT)
    assert service("redis")["image"].startswith("redis:")


@pytest.mark.parametrize("name", APP_SERVICES)
def test_kafka_bootstrap_servers_point_at_the_broker_internal_listener(name):
    kafka = environment(BROKER)
    advertised = kafka_listeners(kafka["KAFKA_ADVERTISED_LISTENERS"])
    bound = kafka_listeners(kafka["KAFKA_LISTENERS"])
    controller = kafka["KAFKA_CONTROLLER_LISTENER_NAMES"]
    for host, port in bootstrap_addresses(app_env(name, "KAFKA_BOOTSTRAP_SERVERS")):
        assert host == BROKER, f"KAFKA_BOOTSTRAP_SERVERS of {name} names {host}, not the {BROKER} service"
        listener = next((key for key, value in advertised.items() if value == (host, port)), None)
        assert listener, f"{BROKER} advertises no listener at {host}:{port} ({kafka['KAFKA_ADVERTISED_LISTENERS']})"
        assert listener != controller, "clients must not use the controller listener"
        assert bound.get(listener, (None, None))[1] == port, f"{BROKER} binds listener {listener} to another port"


def test_broker_partitions_agree_with_the_app():
    assert environment(BROKER)["KAFKA_NUM_PARTITIONS"] == app_env("web", "KAFKA_TOPIC_PARTITIONS")


@pytest.mark.parametrize("name", APP_SERVICES)
def test_traces_go_to_jaeger_over_otlp_http(name):
    url = urlsplit(app_env(name, "OTEL_EXPORTER_OTLP_ENDPOINT"))
    assert (url.scheme, url.hostname, url.port) == ("http", "jaeger", OTLP_HTTP_PORT)
    jaeger = service("jaeger")
    assert jaeger["image"].startswith("jaegertracing/")
    assert environment("jaeger").get("COLLECTOR_OTLP_ENABLED", "true").lower() == "true"
    assert str(OTLP_HTTP_PORT) in [str(port) for port in jaeger.get("expose", [])]


def test_each_process_names_itself_on_its_traces():
    names = {name: app_env(name, "OTEL_SERVICE_NAME") for name in LONG_RUNNING_APP_SERVICES}
    assert names == {name: f"creditledger-{name}" for name in LONG_RUNNING_APP_SERVICES}


def test_only_web_uses_a_prometheus_multiprocess_directory_and_it_exists():
    for name in APP_SERVICES:
        if name != "web":
            assert "PROMETHEUS_MULTIPROC_DIR" not in environment(name), f"{name} is one process: no multiprocess mode"
    directory = app_env("web", "PROMETHEUS_MULTIPROC_DIR")
    web = service("web")
    tmpfs = web.get("tmpfs") or []
    tmpfs = [tmpfs] if isinstance(tmpfs, str) else tmpfs
    mounted = [entry.split(":")[0] for entry in tmpfs] + [
        (volume["target"] if isinstance(volume, dict) else str(volume).split(":")[1])
        for volume in web.get("volumes") or []
    ]
    assert directory in mounted, f"web has no tmpfs or volume at PROMETHEUS_MULTIPROC_DIR ({directory})"


def test_web_answers_the_host_names_it_is_reached_by():
    hosts = [host.strip() for host in app_env("web", "DJANGO_ALLOWED_HOSTS").split(",")]
    assert "web" in hosts, "Prometheus scrapes http://web:<port>/metrics: 'web' must be an allowed host"
    assert healthcheck_url("web").hostname in hosts
    assert "localhost" in hosts, "the published API is browsed at http://localhost"


@pytest.mark.parametrize(("name", "port"), sorted(PUBLISHED_PORTS.items()))
def test_user_facing_ports_are_published(name, port):
    assert published_ports(name).get(port) == port, f"{name} must publish {port}:{port}"


def test_web_publishes_the_port_gunicorn_binds():
    assert web_port() in published_ports("web")
    assert prometheus_port() in published_ports("prometheus")


def test_backing_services_are_not_published_on_the_host():
    for name in ("postgres", "redis", BROKER):
        assert not service(name).get("ports"), f"{name} would clash with a server already on the host"


def test_healthchecks_probe_the_right_ports():
    assert "pg_isready" in healthcheck_test("postgres")
    assert "redis-cli" in healthcheck_test("redis")
    assert f"{BROKER}:" in healthcheck_test(BROKER) or "localhost:" in healthcheck_test(BROKER)
    web = healthcheck_url("web")
    assert (web.port, web.path) == (web_port(), "/readyz")
    for name in ("worker", "consumer"):
        url = healthcheck_url(name)
        assert (url.port, url.path) == (metrics_ports()[name], "/metrics"), f"{name} healthcheck"


def test_dependencies_wait_for_health_and_migrations():
    for name in compose()["services"]:
        for dependency, condition in depends_on(name).items():
            assert dependency in compose()["services"], f"{name} depends on unknown {dependency}"
            if condition == "service_healthy":
                healthcheck_test(dependency)
            if condition == "service_completed_successfully":
                assert service(dependency).get("restart", "no") == "no", f"{dependency} is one-shot"
    assert depends_on("migrate").get("postgres") == "service_healthy"
    for name in LONG_RUNNING_APP_SERVICES:
        assert depends_on(name).get("migrate") == "service_completed_successfully", name
    for name in ("worker", "consumer"):
        assert depends_on(name).get(BROKER) == "service_healthy", f"{name} needs the broker"
    for name in ("web", "worker", "beat"):
        assert depends_on(name).get("redis") == "service_healthy", f"{name} needs the Celery broker"


# --- Prometheus ------------------------------------------------------------------------------


def scrape_targets() -> dict[str, tuple[str, int, str]]:
    targets = {}
    for job in prometheus_config()["scrape_configs"]:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, _, port = target.rpartition(":")
                targets[host] = (job["job_name"], int(port), job.get("metrics_path", "/metrics"))
    return targets


def test_prometheus_scrapes_every_5_seconds():
    config = prometheus_config()["global"]
    assert config["scrape_interval"] == "5s"
    assert int(config.get("scrape_timeout", "5s").rstrip("s")) <= 5


def test_prometheus_scrapes_every_metrics_endpoint():
    targets = scrape_targets()
    missing = set(metrics_ports()) - set(targets)
    assert not missing, f"Prometheus does not scrape {sorted(missing)}"


@pytest.mark.parametrize("host", ["web", "worker", "consumer", "prometheus"])
def test_scrape_targets_match_the_services_and_their_ports(host):
    job, port, path = scrape_targets()[host]
    assert host in compose()["services"], f"scrape job {job} targets {host}, which is no compose service"
    assert port == metrics_ports()[host], (
        f"job {job} scrapes {host}:{port}, but the process listens on {metrics_ports()[host]}"
    )
    assert path == "/metrics"


def test_every_scrape_target_is_a_compose_service():
    for host, (job, _port, _path) in scrape_targets().items():
        assert host in compose()["services"], f"scrape job {job} targets {host}, which is no compose service"


def test_prometheus_loads_this_config():
    config_path = option_value(command("prometheus"), "--config.file") or "/etc/prometheus/prometheus.yml"
    assert mount_target("prometheus", "deploy/prometheus/prometheus.yml") == config_path


# --- Grafana ---------------------------------------------------------------------------------


def datasource() -> dict[str, Any]:
    sources = yaml.safe_load(DATASOURCE_FILE.read_text())["datasources"]
    prometheus = [source for source in sources if source["type"] == "prometheus"]
    assert len(prometheus) == 1
    return prometheus[0]


def test_grafana_datasource_points_at_the_prometheus_service():
    url = urlsplit(datasource()["url"])
    assert (url.hostname, url.port or 80) == ("prometheus", prometheus_port())


def test_grafana_mounts_its_provisioning_and_dashboards():
    assert mount_target("grafana", "deploy/grafana/provisioning") == "/etc/grafana/provisioning"
    provider = yaml.safe_load(DASHBOARD_PROVIDER_FILE.read_text())["providers"][0]
    dashboards_dir = mount_target("grafana", "deploy/grafana/dashboards")
    assert provider["options"]["path"] == dashboards_dir
    grafana = environment("grafana")
    assert (grafana["GF_SECURITY_ADMIN_USER"], grafana["GF_SECURITY_ADMIN_PASSWORD"]) == ("admin", "admin")
    home = grafana.get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        assert home == f"{dashboards_dir}/{DASHBOARD_FILE.name}"


def test_bind_mounts_exist():
    for name, spec in compose()["services"].items():
        for volume in spec.get("volumes") or []:
            source = volume.get("source", "") if isinstance(volume, dict) else str(volume).split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which does not exist"


def test_dashboard_is_a_grafana_dashboard_on_the_provisioned_datasource():
    board = dashboard()
    assert board["uid"]
    assert board["title"]
    assert board["schemaVersion"] >= 36
    uid = datasource()["uid"]
    for panel in dashboard_panels():
        if panel["type"] == "row":
            continue
        assert panel.get("targets"), f"panel {panel['title']!r} queries nothing"
        assert panel["datasource"]["uid"] == uid, panel["title"]
        for target in panel["targets"]:
            assert target.get("expr"), f"panel {panel['title']!r} has a target without expr"
            assert target.get("datasource", {"uid": uid})["uid"] == uid, panel["title"]
    ids = [panel["id"] for panel in dashboard_panels()]
    assert len(ids) == len(set(ids)), "panel ids repeat"


def test_dashboard_queries_only_metrics_the_app_exports():
    for title, expr in dashboard_exprs():
        series = promql_series(expr)
        assert series, f"panel {title!r}: no metric in {expr!r}"
        unknown = series - ALLOWED_SERIES
        assert not unknown, f"panel {title!r} queries {sorted(unknown)}, which the app does not export"


def test_dashboard_has_every_panel_the_demo_needs():
    used = set().union(*(promql_series(expr) for _title, expr in dashboard_exprs()))
    missing = DASHBOARD_REQUIRED_SERIES - used
    assert not missing, f"the dashboard shows nothing for {sorted(missing)}"


def test_dashboard_metrics_are_defined_in_the_code():
    sources = "\n".join(
        path.read_text()
        for folder in ("creditledger", "apps")
        for path in (ROOT / folder).rglob("*.py")
        if "tests" not in path.parts
    )
    for name in sorted(PLAIN_METRICS | HISTOGRAMS):
        if not name.startswith("creditledger_"):
            continue  # django-prometheus' own
        base = re.sub(r"_total$", "", name)
        assert re.search(rf"[\"']{base}[\"']", sources), f"no metric named {base!r} in creditledger/ or apps/"


def test_promql_series_ignores_functions_labels_and_ranges():
    expr = (
        'histogram_quantile(0.95, sum by (le, view) (rate(http_bucket{view!~"a|b", le="+Inf"}[$__rate_interval])))'
        " / on (job) group_left sum without (pid) (up offset 5m) > bool 1"
    )
    assert promql_series(expr) == {"http_bucket", "up"}


# --- docs and Makefile -----------------------------------------------------------------------


def test_observability_doc_names_the_urls_and_topics():
    text = OBSERVABILITY_DOC.read_text()
    for port in PUBLISHED_PORTS.values():
        assert f"localhost:{port}" in text, f"docs/observability.md does not mention http://localhost:{port}"
    for topic in (*ALL_TOPICS, settings_default("KAFKA_DEAD_LETTER_TOPIC")):
        assert topic in text, f"docs/observability.md does not mention the topic {topic}"
    for name in sorted(PLAIN_METRICS | HISTOGRAMS):
        assert name.removesuffix("_total") in text, f"docs/observability.md does not mention {name}"


def test_makefile_drives_the_demo():
    makefile = (ROOT / "Makefile").read_text()
    for target, recipe in {
        "up": "docker compose up -d --build",
        "down": "docker compose down -v",
        "logs": "docker compose logs -f --tail=200",
    }.items():
        assert re.search(rf"^{target}:.*## .+\n\t{re.escape(recipe)}$", makefile, re.MULTILINE), f"make {target}"


def test_the_production_settings_start_with_the_compose_environment():
    """They refuse a short secret key or a missing host list; compose must pass them."""
    process_env = {
        key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "LEDGER_", "DATABASE_"))
    }
    process_env.update({**environment("migrate"), "DJANGO_SETTINGS_MODULE": "config.settings.production"})
    code = "from django.conf import settings; print(settings.LEDGER_AUTH)"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=process_env, capture_output=True, text=True, check=False
    )
    assert done.stdout.strip() == "required", done.stderr


# --- API keys --------------------------------------------------------------------------------


def volume_mount(name: str, volume: str) -> str:
    """Where the service mounts the named volume."""
    for entry in service(name).get("volumes") or []:
        source, target = (entry["source"], entry["target"]) if isinstance(entry, dict) else str(entry).split(":")[:2]
        if source == volume:
            return target
    raise AssertionError(f"service {name!r} does not mount the volume {volume}")


def api_key_commands() -> list[list[str]]:
    """The api_key_create commands of the api-keys service (`sh -c "... && ..."`)."""
    shell = command("api-keys")
    assert shell[:2] == ["sh", "-c"]
    return [shlex.split(part) for part in shell[2].split("&&")]


def test_a_demo_key_is_created_and_printed_at_start_up():
    assert depends_on("api-keys") == {"migrate": "service_completed_successfully"}
    demo = api_key_commands()[0]
    assert demo[:3] == ["python", "manage.py", "api_key_create"]
    assert "--write-to" not in demo  # printed in the service's log
    scopes = demo[demo.index("--scopes") + 1 :]
    assert {"transfers:write", "accounts:write"} <= set(scopes)
    assert "admin" not in scopes


def test_prometheus_scrapes_the_web_with_the_admin_key_the_api_keys_service_writes():
    writer = api_key_commands()[1]
    assert writer[writer.index("--scopes") + 1] == "admin"
    written = Path(writer[writer.index("--write-to") + 1])
    assert written.parent == Path(volume_mount("api-keys", "api-keys"))
    assert re.search(
        r"^RUN .*mkdir -p .*" + re.escape(str(written.parent)), (ROOT / "Dockerfile").read_text(), re.MULTILINE
    )

    web_job = next(job for job in prometheus_config()["scrape_configs"] if job["job_name"] == "web")
    credentials = Path(web_job["authorization"]["credentials_file"])
    assert web_job["authorization"].get("type", "Bearer") == "Bearer"
    assert credentials == Path(volume_mount("prometheus", "api-keys")) / written.name
    assert "10001" in [str(group) for group in service("prometheus").get("group_add", [])]
