"""One trace from the HTTP request to the projection, through the outbox and Kafka."""

from __future__ import annotations

import pytest
from django.db import connections
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from apps.outbox.relay import outbox_relay
from creditledger.telemetry import tracing_configure
from tests.support import wait_until

pytestmark = [pytest.mark.django_db(transaction=True, databases=["default", "read"]), pytest.mark.slow]


@pytest.fixture
def spans() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    assert tracing_configure(span_processor=SimpleSpanProcessor(exporter))
    connections.close_all()  # in production tracing starts before any connection: reconnect instrumented
    return exporter


def test_a_trace_spans_http_database_relay_kafka_and_projection(api, spans, start_consumer):
    start_consumer()
    a = api.post("/accounts", {"currency": "USD"}, format="json").json()["accountId"]
    b = api.post("/accounts", {"currency": "USD"}, format="json").json()["accountId"]
    spans.clear()

    response = api.post(
        "/transfers", {"from": a, "to": b, "amount": 99, "currency": "USD", "idempotencyKey": "traced"}, format="json"
    )
    assert response.status_code == 201
    outbox_relay()
    wait_until(
        lambda: sum(span.name == "ledger.entry.v1 process" for span in spans.get_finished_spans()) >= 2,
        message="the consumer's spans",
    )

    finished = spans.get_finished_spans()
    (http,) = [
        s for s in finished if s.kind == SpanKind.SERVER and s.attributes.get("http.route", "").startswith("transfers")
    ]
    in_trace = [s for s in finished if s.context.trace_id == http.context.trace_id]
    names = [s.name for s in in_trace]
    assert names.count("ledger.entry.v1 publish") == 2
    assert names.count("ledger.transfer.v1 publish") == 1
    assert names.count("ledger.entry.v1 process") >= 2
    # Posted alone or, with group commit, as a group of one.
    posting = ("SELECT ledger_post_transfer(", "SELECT ledger_post_transfers(")
    assert any(s.attributes.get("db.statement", "").startswith(posting) for s in in_trace), (
        "the ledger's database writes are not in the trace"
    )
    by_id = {s.context.span_id: s for s in in_trace}
    for process in (s for s in in_trace if s.name == "ledger.entry.v1 process"):
        assert by_id[process.parent.span_id].name == "ledger.entry.v1 publish"
