"""What both simulated PSPs share: the app context, JSON and form I/O, faults, pages."""

from __future__ import annotations

import asyncio
import html
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from sandbox.delivery import Deliverer
from sandbox.money import dumps, fits, loads
from sandbox.settlements import Ledger
from sandbox.state import DEFAULT_TIMEOUT_MS, Store


class Sandbox:
    """Per-app context, kept on ``app.state.sandbox``."""

    def __init__(self) -> None:
        self.store = Store()
        self.ledger = Ledger()  # settlement reports (sandbox.settlements)
        self.deliverer = Deliverer(lambda: self.store.control.webhook_delay_ms)


def context(request: Request) -> Sandbox:
    return request.app.state.sandbox


def json_response(body: Any, status: int = 200) -> Response:
    # Our own encoder: amounts are Decimals and must leave as exact JSON numbers.
    return Response(dumps(body), status_code=status, media_type="application/json")


async def read_json(request: Request) -> Any:
    try:
        return loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        return None


async def read_fields(request: Request) -> dict[str, str]:
    """A form body (or, leniently, a flat JSON object) as text fields, last value wins."""
    raw = await request.body()
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            data = loads(raw)
        except (ValueError, UnicodeDecodeError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {k: (f"{v:f}" if isinstance(v, Decimal) else str(v)) for k, v in data.items()}
    try:
        return dict(parse_qsl(raw.decode(), keep_blank_values=True))
    except UnicodeDecodeError:
        return {}


async def api_fault(store: Store, psp: str | None = None) -> int | None:
    """Apply /_control to one API call (of ``psp``, whose own delay then counts): sleep as
    asked, then the status to fail with."""
    control = store.control
    delay_ms = control.delay_for(psp)
    if control.fail == "timeout":
        await asyncio.sleep((delay_ms or DEFAULT_TIMEOUT_MS) / 1000)
        return 504
    if delay_ms:
        await asyncio.sleep(delay_ms / 1000)
    if control.fail == "5xx":
        return 503
    return None


def parse_amount(value: Any, currency: str) -> Decimal | None:
    """A positive amount that fits the currency's minor units, else None."""
    try:
        amount = Decimal(str(value)) if not isinstance(value, Decimal) else value
    except ArithmeticError:
        return None
    if not amount.is_finite() or amount <= 0 or not fits(amount, currency):
        return None
    return amount


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def page(title: str, rows: dict[str, Any], action: str | None, status: int = 200) -> HTMLResponse:
    """A minimal hosted payment page; with ``action``, Approve and Decline buttons."""
    esc = html.escape
    cells = "".join(
        f"<tr><th>{esc(str(k))}</th><td>{esc(str(v))}</td></tr>" for k, v in rows.items()
    )
    form = ""
    if action:
        form = (
            f'<form method="post" action="{esc(action)}">'
            '<button name="decision" value="approve" type="submit">Approve</button> '
            '<button name="decision" value="decline" type="submit">Decline</button>'
            "</form>"
        )
    body = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{esc(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:32rem;margin:3rem auto}"
        "th{text-align:left;padding-right:1rem}button{font-size:1.1rem;margin:1rem .5rem 0 0}"
        "</style></head>"
        f"<body><h1>{esc(title)}</h1><table>{cells}</table>{form}"
        "<p><small>Connxt sandbox: no real money moves.</small></p></body></html>"
    )
    return HTMLResponse(body, status_code=status)
