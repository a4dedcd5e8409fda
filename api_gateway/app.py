"""The ingress application: routers under /connxt/v2, envelope everywhere."""

from __future__ import annotations

import os

from fastapi import FastAPI

from api_gateway import health, openapi
from api_gateway.catalog.routes import router as catalog_router
from api_gateway.errors import install_error_handlers
from api_gateway.hot_paths import Ingress
from api_gateway.middleware import BodySizeLimit, RequestContext
from api_gateway.notifications.routes import router as notifications_router
from api_gateway.psp_callbacks.routes import router as psp_callbacks_router
from api_gateway.psps.routes import router as psps_router
from api_gateway.reconciliation.routes import router as reconciliation_router
from api_gateway.runtime import lifespan
from api_gateway.transactions.routes import router as transactions_router
from connxt import tracing
from connxt.logging import configure_logging
from connxt.secrets import key_ring
from connxt.settings import get_settings

API_PREFIX = "/connxt/v2"


def create_app(hot_routes: bool = True) -> FastAPI:
    """The ingress; ``hot_routes=False`` serves Step 3 and the webhooks through FastAPI's
    router like every other route (api_gateway.hot_paths)."""
    settings = get_settings()
    configure_logging(settings)
    tracing.setup("connxt-api")  # with OTEL_EXPORTER_OTLP_ENDPOINT only
    key_ring()  # production without CONNXT_ENCRYPTION_KEYS stops here, before serving

    app = Ingress(
        title="Connxt API V2",
        version="2.0.0",
        description="Payment orchestration: PSP catalog, PSP accounts, transactions.",
        docs_url="/docs",
        openapi_url="/openapi.json",
        lifespan=lifespan,
        hot_routes=hot_routes,
        # FastAPI's own OpenTelemetry hooks cost a check on every request: on only when
        # traces are exported (an OTLP endpoint is configured).
        telemetry=dict.fromkeys(("tracing", "metrics", "logs"), _exporting_telemetry()),
    )
    install_error_handlers(app)
    openapi.install(app)
    for router in routers():
        app.include_router(router, prefix=API_PREFIX)
    app.include_router(health.router)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestContext)
    tracing.instrument_app(app)
    return app


def _exporting_telemetry() -> bool:
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def routers() -> list:
    return [
        catalog_router,
        psps_router,
        transactions_router,
        notifications_router,
        reconciliation_router,
        psp_callbacks_router,
    ]
