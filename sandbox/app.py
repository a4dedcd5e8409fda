"""The sandbox ASGI app: both simulated PSPs, the controls and the merchant receiver.

Routes:
- ``/paymaxis/api/v1/payments`` (POST create, GET list by referenceId),
  ``/paymaxis/api/v1/payments/{id}`` (GET), ``/paymaxis/api/v1/payments/{id}/cancel``
  (POST), ``/paymaxis/checkout/{id}`` (GET page, POST ``decision=approve|decline`` → 303
  to returnUrl).
- ``/sticpay/pay`` (GET signed hosted page), ``/sticpay/pay/{id}`` (POST decision → 303),
  ``/sticpay/api/withdraw``, ``/sticpay/api/query`` (signed form POSTs).
- ``/_control`` (GET, PUT faults), ``/_control/reset``, ``/_control/accounts``,
  ``/_control/complete/{id}`` (``{"decision", "amount"?, "currency"?}``: approve for
  another amount too), ``/_control/merchant``, ``/_payments``, ``/_health``.
- ``/paymaxis/api/v1/settlements`` (GET, JSON cursor pages), ``/sticpay/api/settlement``
  (signed POST, a CSV file): settlement reports (sandbox.settlement_reports), falsified,
  added to or made up through ``/_control/settlements/*`` (sandbox.settlement_control).
- ``/merchant/notifications`` (POST receive with Standard Webhooks check, GET list).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from sandbox import (
    control,
    merchant,
    paymaxis,
    settlement_control,
    settlement_reports,
    sticpay,
)
from sandbox.common import Sandbox


def create_app() -> FastAPI:
    sandbox = Sandbox()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        # Pending webhook retries end with the server, as a PSP restart would end them.
        await sandbox.deliverer.close()

    app = FastAPI(
        title="Connxt sandbox",
        description="Simulated Paymaxis and Sticpay on loopback. No real money moves.",
        lifespan=lifespan,
    )
    app.state.sandbox = sandbox
    app.include_router(paymaxis.router)
    app.include_router(sticpay.router)
    app.include_router(settlement_reports.router)
    app.include_router(control.router)
    app.include_router(settlement_control.router)
    app.include_router(merchant.router)
    return app
