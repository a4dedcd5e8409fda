"""The console application (`connxt console`): pages, static files, security headers."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from connxt.logging import configure_logging
from connxt.secrets import key_ring
from connxt.settings import get_settings
from console import action_routes, recon_routes, routes
from console.auth import configured_operators
from console.render import CsrfRefused, SignInRequired, render
from console.service import NotFound

# No script runs on any page, nothing is framed, forms post only here.
_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        b"frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    # Pages show payment data: never kept by a browser or a proxy.
    (b"cache-control", b"no-store"),
]


class SecurityHeaders:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + _HEADERS
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app() -> FastAPI:
    configure_logging(get_settings())
    key_ring()  # sessions are sealed with it: production without keys stops here
    configured_operators()  # a malformed CONNXT_OPERATOR_TOKENS stops here, before serving

    app = FastAPI(title="Connxt console", docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(routes.router)
    app.include_router(action_routes.router)
    app.include_router(recon_routes.router)
    static = Path(__file__).parent / "static"
    app.mount("/static", StaticFiles(directory=static), name="static")

    @app.exception_handler(SignInRequired)
    async def _sign_in(_request: Request, exc: SignInRequired) -> RedirectResponse:
        return RedirectResponse("/login?" + urlencode({"next": exc.path}), status_code=303)

    @app.exception_handler(CsrfRefused)
    async def _csrf(request: Request, _exc: CsrfRefused) -> HTMLResponse:
        return render(request, "refused.html", {}, status_code=403)

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> HTMLResponse:
        return render(request, "not_found.html", {"what": exc.what}, status_code=404)

    app.add_middleware(SecurityHeaders)
    return app
