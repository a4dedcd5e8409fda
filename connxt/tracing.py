"""OpenTelemetry traces, when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (the `otel` extra).

Unset, nothing of OpenTelemetry's SDK or instrumentations is imported or installed, and
every helper here is a flag check. Set, each process exports its spans over OTLP/HTTP to
that endpoint (the standard ``OTEL_*`` variables apply: ``OTEL_SERVICE_NAME``,
``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_TRACES_SAMPLER``, ...): the ingress (FastAPI's
instrumentation, every route), Celery tasks, PSP calls and merchant
notifications (``client_span``: both go out on the one send loop of connxt.http_wire, through
a proxy or not) and SQL (SQLAlchemy).

One transaction is one trace even though nothing calls straight through: the ingress
stores its trace context with the outbox row it writes (``traceparent`` in the message's
item), the relay publishes later in batches of many transactions, and the worker runs
each item in a span whose parent is its row's context and which links to the Celery task
span that carried it. So the trace reads: request → item (initiate) → PSP call, and on to
the merchant notification the transition wrote.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

_enabled = False
_setup_pid: int | None = None
_OFF = contextlib.nullcontext()
# Item keys that name what the item works on: span attributes.
_ITEM_IDS = ("txn_id", "inbox_id", "notification_id")


def wanted() -> bool:
    """Traces are asked for (the environment names an OTLP endpoint)."""
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def enabled() -> bool:
    return _enabled


def setup(service: str) -> bool:
    """Export this process's spans and instrument httpx and SQLAlchemy; once per process
    (again in a forked child). Whether traces are on."""
    global _enabled, _setup_pid
    if not wanted():
        return False
    if _setup_pid == os.getpid():
        return True
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    name = os.environ.get("OTEL_SERVICE_NAME") or service
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    if _setup_pid is None:
        HTTPXClientInstrumentor().instrument()
        # Its declared range stops below SQLAlchemy 2.1, which it traces all the same.
        SQLAlchemyInstrumentor().instrument(skip_dep_check=True)  # engines made from here on
    _enabled, _setup_pid = True, os.getpid()
    return True


def instrument_app(app: Any) -> None:
    """The ingress: a server span per request, named by its route template. The
    instrumentation wraps the app's whole middleware stack, inside which every route is
    dispatched, the hot ones included."""
    if _enabled:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(app)


def instrument_celery() -> None:
    """Task spans in a worker, publish spans wherever tasks are sent (beat, the relay)."""
    if _enabled:
        from opentelemetry.instrumentation.celery import CeleryInstrumentor

        instrumentor = CeleryInstrumentor()
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument()


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, to store with work done later."""
    if not _enabled:
        return None
    from opentelemetry.propagate import inject

    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier.get("traceparent")


def item_span(item: Mapping[str, Any]) -> contextlib.AbstractContextManager:
    """A span for one item of a batch: the child of the context its outbox row carried,
    linked to the Celery task span running it. Off, or without a stored context, nothing."""
    if not _enabled or "traceparent" not in item:
        return _OFF
    return _item_span(item)


@contextlib.contextmanager
def _item_span(item: Mapping[str, Any]) -> Iterator[None]:
    from opentelemetry import trace
    from opentelemetry.propagate import extract

    carrier = trace.get_current_span().get_span_context()
    links = [trace.Link(carrier)] if carrier.is_valid else []
    parent = extract({"traceparent": item["traceparent"]})
    attributes = {f"connxt.{key}": str(item[key]) for key in _ITEM_IDS if key in item}
    tracer = trace.get_tracer("connxt")
    with tracer.start_as_current_span(
        "connxt.item", context=parent, links=links, attributes=attributes
    ):
        yield


def client_span(method: str, url: str) -> contextlib.AbstractContextManager[dict[str, Any]]:
    """A client span around an HTTP call made without httpx (connxt.http_wire: PSP calls
    and merchant notifications); the caller puts the answer's status in the dict it gets.
    Off, nothing."""
    if not _enabled:
        return contextlib.nullcontext({})
    return _client_span(method, url)


@contextlib.contextmanager
def _client_span(method: str, url: str) -> Iterator[dict[str, Any]]:
    from opentelemetry import trace

    answer: dict[str, Any] = {}
    attributes = {"http.request.method": method, "url.full": url.split("?", 1)[0]}
    tracer = trace.get_tracer("connxt")
    with tracer.start_as_current_span(
        method, kind=trace.SpanKind.CLIENT, attributes=attributes
    ) as span:
        yield answer
        if "status" in answer:
            span.set_attribute("http.response.status_code", answer["status"])


def item_log_ids(item: Mapping[str, Any]) -> dict[str, str]:
    """The trace id of an item's stored context, for a line about the item written outside
    its span (a batch's statement serves many items at once)."""
    if not _enabled or "traceparent" not in item:
        return {}
    parts = str(item["traceparent"]).split("-")
    return {"trace_id": parts[1]} if len(parts) == 4 else {}


def log_ids() -> dict[str, str]:
    """``trace_id`` and ``span_id`` of the current span, for a log line (empty outside)."""
    if not _enabled:
        return {}
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {"trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}"}
