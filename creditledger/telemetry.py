"""OpenTelemetry: traces over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set, otherwise off at
no cost (the API's no-op tracer). Each process calls `tracing_configure` once at start."""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, cast

from opentelemetry import trace

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider

_lock = threading.Lock()
_configured = False


def tracing_configure(*, celery: bool = False, span_processor: SpanProcessor | None = None) -> bool:
    """Install the SDK and instrument Django and psycopg (and Celery). The Kafka spans are
    made by the relay and the consumer, which carry each event's trace in its headers.

    `span_processor` replaces the OTLP exporter (tests pass an in-memory one; once tracing
    is on, it is added beside the exporter). Returns whether tracing is on.
    """
    global _configured  # noqa: PLW0603 (once per process, under the lock)
    if span_processor is None and not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return False
    with _lock:
        if _configured:
            if span_processor is not None:
                # The SDK's provider: the configuration below set it.
                provider = cast("SdkTracerProvider", trace.get_tracer_provider())
                provider.add_span_processor(span_processor)
            return True
        from opentelemetry.instrumentation.django import DjangoInstrumentor
        from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        if span_processor is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            span_processor = BatchSpanProcessor(OTLPSpanExporter())
        service = os.environ.get("OTEL_SERVICE_NAME", "creditledger")
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        provider.add_span_processor(span_processor)
        trace.set_tracer_provider(provider)
        DjangoInstrumentor().instrument()
        PsycopgInstrumentor().instrument(enable_commenter=False)
        if celery:
            from opentelemetry.instrumentation.celery import CeleryInstrumentor

            CeleryInstrumentor().instrument()
        _configured = True
        return True
