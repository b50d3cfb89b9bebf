"""Business metrics (Prometheus). The web process serves them at /metrics with
django-prometheus' own; the worker and the consumer serve theirs on their own ports."""

from __future__ import annotations

import os
from wsgiref.simple_server import WSGIServer

from django.conf import settings
from django.db import connection
from django.http import HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.views import APIView

from creditledger.api.scopes import ADMIN

TRANSFERS_POSTED = Counter(
    "creditledger_transfers_posted",
    "Transfers posted, by currency: one in several currencies counts in each.",
    ["currency"],
)
TRANSFERS_FAILED = Counter("creditledger_transfers_failed", "Transfers refused, by reason (error code).", ["reason"])
GROUP_COMMIT_SIZE = Histogram(
    "creditledger_group_commit_size",
    "Items per group commit (creditledger/group_commit.py), by writer.",
    ["writer"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 100, 250, 1000),
)

RELAY_BATCH_SIZE = Histogram(
    "creditledger_relay_batch_size", "Outbox rows per relay batch.", buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 5000)
)
RELAY_BATCH_DURATION = Histogram("creditledger_relay_batch_duration_seconds", "Time to produce and mark one batch.")
RELAY_PUBLISHED = Counter("creditledger_relay_published", "Outbox rows delivered to Kafka.")
RELAY_FAILURES = Counter("creditledger_relay_failures", "Relay runs that could not deliver to Kafka.")
RELAY_KICK_FAILURES = Counter("creditledger_relay_kick_failures", "Commit-time relay kicks the Celery broker refused.")
RELAY_HISTORY_LOST = Counter(
    "creditledger_relay_broker_history_lost",
    "Times the relay found Kafka had lost what it published (another cluster id, or its topics gone).",
)
RELAY_REPUBLISHED = Counter(
    "creditledger_relay_republished",
    "Outbox rows published again because Kafka lost them before the consumer applied them.",
)

CONSUMER_LAG = Gauge("creditledger_consumer_lag", "Messages behind the high watermark.", ["topic", "partition"])
PROJECTION_LATENCY = Histogram(
    "creditledger_projection_latency_seconds",
    "From an entry's posting to its projection.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
EVENTS_APPLIED = Counter("creditledger_consumer_events_applied", "Events applied to the projections.", ["event_type"])
EVENTS_DUPLICATE = Counter("creditledger_consumer_duplicates", "Redelivered events ignored.")
DEAD_LETTERS = Counter("creditledger_dead_letters", "Messages sent to the dead-letter topic.", ["topic"])
CONSUMER_BATCH_DURATION = Histogram("creditledger_consumer_batch_duration_seconds", "Time to apply one batch.")


class OutboxCollector:
    """Backlog and age of the oldest unpublished row, read from the database at scrape time,
    so they are right even when no relay is running."""

    def collect(self):
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0) "
                "FROM outbox_event WHERE published_at IS NULL"
            )
            backlog, oldest_age = cursor.fetchone()
        yield GaugeMetricFamily("creditledger_outbox_backlog", "Outbox rows not yet published.", value=backlog)
        yield GaugeMetricFamily(
            "creditledger_outbox_oldest_unpublished_age_seconds",
            "Age of the oldest unpublished outbox row.",
            value=float(oldest_age),
        )


def metrics_registry(*, include_outbox: bool) -> CollectorRegistry:
    """The registry to expose: every process's metrics in multiprocess mode (gunicorn), else this one's."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    else:
        registry = CollectorRegistry()
        registry.register(_Forward(REGISTRY))
    if include_outbox:
        registry.register(OutboxCollector())
    return registry


class _Forward:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self):
        yield from self.registry.collect()


def metrics_serve(port: int, *, include_outbox: bool) -> WSGIServer:
    """Serve this process's metrics on `port`, on METRICS_BIND_ADDRESS (loopback by default):
    the worker's and the consumer's, which have no web server of their own."""
    server, _thread = start_http_server(
        port, addr=settings.METRICS["BIND_ADDRESS"], registry=metrics_registry(include_outbox=include_outbox)
    )
    return server


class FirstRendererNegotiation(BaseContentNegotiation):
    def select_parser(self, request, parsers):
        return parsers[0]

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class MetricsApi(APIView):
    """Prometheus scrape endpoint of the web process: a key with the admin scope when
    LEDGER_AUTH=required. Not in the OpenAPI schema: it answers Prometheus' text format."""

    required_scopes = {"GET": ADMIN}
    schema = None
    # A scraper's Accept header names the text format; errors still answer problem+json.
    content_negotiation_class = FirstRendererNegotiation

    def get(self, request):
        return HttpResponse(generate_latest(metrics_registry(include_outbox=True)), content_type=CONTENT_TYPE_LATEST)
