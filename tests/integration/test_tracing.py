"""Traces: one trace from the ingress through the Celery task to the PSP call.

A stack of its own (tests.chaos.world: its own PostgreSQL, Redis and processes, so that
its spans are all ours) runs with ``OTEL_EXPORTER_OTLP_ENDPOINT`` pointing at an OTLP/HTTP
receiver in this process, which decodes what the processes export. Without the variable,
nothing of OpenTelemetry's SDK or instrumentations is even imported.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.chaos.world import build_world, destroy_world
from tests.support.stack import wait_until

pytestmark = pytest.mark.integration

SERVER, CLIENT = 2, 3  # OTLP span kinds


class Receiver:
    """An OTLP/HTTP trace endpoint: every span received, flattened."""

    def __init__(self) -> None:
        self.spans: list[dict] = []
        lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # the http.server API
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest.FromString(body)
                with lock:
                    receiver.spans += _flatten(request)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def _flatten(request: ExportTraceServiceRequest) -> list[dict]:
    spans = []
    for resource_spans in request.resource_spans:
        attrs = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    {
                        "service": attrs.get("service.name"),
                        "name": span.name,
                        "kind": span.kind,
                        "trace_id": span.trace_id.hex(),
                        "span_id": span.span_id.hex(),
                        "parent": span.parent_span_id.hex(),
                        "links": [link.trace_id.hex() for link in span.links],
                        "attributes": {
                            a.key: a.value.string_value or a.value.int_value
                            for a in span.attributes
                        },
                    }
                )
    return spans


def _url(span: dict) -> str:
    """An HTTP client span's URL (its attribute's name depends on the semantic conventions
    the instrumentation follows)."""
    attributes = span["attributes"]
    return str(attributes.get("url.full") or attributes.get("http.url") or "")


@pytest.fixture(scope="module")
def traced():
    receiver = Receiver()
    log_dir = Path(tempfile.mkdtemp(prefix="traces-", dir="/tmp"))
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "200"}
    # A PostgreSQL of its own too: beside the suite's running stack, a second stack's
    # connections could exhaust the shared server's.
    world = build_world("traces", log_dir, private_postgres=True, extra_env=env)
    try:
        yield world, receiver
    finally:
        destroy_world(world)
        receiver.close()


def test_one_trace_follows_a_deposit_from_the_ingress_to_the_psp_call(traced):
    world, receiver = traced
    with world.client() as api:
        answer = world.post_deposit(api, respond_async=False)
    assert answer.status_code == 200 and answer.json()["data"]["status"] == "PG_ACCEPTED"
    txn_id = answer.json()["data"]["txnId"]

    def ingress_span() -> dict | None:
        return next(
            (
                s
                for s in receiver.spans
                if s["service"] == "connxt-api"
                and s["kind"] == SERVER
                and s["name"] == "POST /connxt/v2/transactions"
            ),
            None,
        )

    request = wait_until(ingress_span, timeout=20, what="the ingress span")
    trace_id = request["trace_id"]

    def psp_call() -> dict | None:
        return next(
            (
                s
                for s in receiver.spans
                if s["trace_id"] == trace_id
                and s["service"] == "connxt-worker"
                and s["kind"] == CLIENT
                and "/paymaxis/" in _url(s)
            ),
            None,
        )

    call = wait_until(psp_call, timeout=20, what="the PSP call in the deposit's trace")

    def ancestry() -> list[str] | None:
        """The PSP call's ancestors up to the ingress's request, once all are exported (a
        span is exported when it ends: the item's after the PSP call's)."""
        by_id = {s["span_id"]: s for s in receiver.spans if s["trace_id"] == trace_id}
        chain, span = [], call
        while span is not None:
            chain.append(span["name"])
            span = by_id.get(span["parent"])
        return chain if chain[-1] == "POST /connxt/v2/transactions" else None

    # The PSP call's ancestry reaches the ingress's request through the item's span.
    chain = wait_until(ancestry, timeout=20, what="the PSP call's ancestry")
    in_trace = [s for s in receiver.spans if s["trace_id"] == trace_id]
    item = next(s for s in in_trace if s["name"] == "connxt.item")
    assert item["attributes"]["connxt.txn_id"] == txn_id
    assert "connxt.item" in chain

    # The Celery task that carried the item is in the relay's trace, linked from the item.
    def carrier() -> list[dict]:
        return [
            s
            for s in receiver.spans
            if s["name"] == "run/transactions.initiate" and s["trace_id"] in item["links"]
        ]

    tasks = wait_until(carrier, timeout=20, what="the Celery task span the item links to")

    # The batch's SQL (its attempts booked, its answers written: one statement each for
    # every item) is in that task's span: SQLAlchemy's spans under it.
    def batch_sql() -> list[dict]:
        task_ids = {t["span_id"] for t in tasks}
        return [
            s
            for s in receiver.spans
            if s["parent"] in task_ids and s["attributes"].get("db.system") == "postgresql"
        ]

    wait_until(batch_sql, timeout=20, what="the batch's SQL in the task's span")
    # Every log line written for it carries the trace id.
    lines = world.log_lines(world.worker_name, "transaction.transition", txn_id)
    assert lines and all(f"trace_id={trace_id}" in line for line in lines), lines


def test_without_an_endpoint_nothing_of_opentelemetry_is_loaded():
    """The ingress, the worker's tasks and their logging, built as each process builds
    them: no tracer provider, no instrumentation, no exporter, no middleware, nothing in
    the outbox rows. (redis-py imports the SDK's metric classes by itself when they are
    installed; nothing of ours sets them up.)"""
    code = """
import sys
from api_gateway.app import create_app
import workers.app, workers.initiation, workers.callbacks, workers.notify, workers.reconcile
from connxt import tracing
from storage.outbox import add_message
app = create_app()
assert not tracing.enabled() and tracing.current_traceparent() is None
loaded = sorted(m for m in sys.modules if m.startswith(("opentelemetry.sdk.trace",
    "opentelemetry.instrumentation", "opentelemetry.exporter")))
assert not loaded, loaded
from opentelemetry import trace
assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"
assert not getattr(app, "_is_instrumented_by_opentelemetry", False)
print("clean")
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == "clean", done.stdout
