"""ASGI middleware: a request id bound to every log line, and the body size limit.

Both are plain ASGI (not BaseHTTPMiddleware) so they add no task hops to the hot path.
"""

from __future__ import annotations

import json
import secrets
import time
from functools import lru_cache

import structlog
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api_gateway.envelope import error_body
from connxt.metrics import HTTP_REQUESTS

log = structlog.get_logger()


@lru_cache(maxsize=1024)
def _observer(method: str, route: str, status: int):
    """The histogram child for one (method, route, status): looked up once, not per request."""
    return HTTP_REQUESTS.labels(method, route, str(status)).observe


class RequestContext:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next(
            (v.decode("latin-1")[:64] for k, v in scope["headers"] if k == b"x-request-id"), ""
        )
        request_id = incoming if incoming.isprintable() and incoming else secrets.token_hex(8)
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        failed = True
        try:
            await self.app(scope, receive, send_with_id)
            failed = False
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            _observer(scope["method"], route, status)(time.perf_counter() - started)
            # Debug, not info: a log line per request would cost more than the request
            # itself on the hot paths. Server errors are logged where they happen.
            log.debug(
                "http.request",
                method=scope["method"],
                path=scope["path"],
                status=status,
                ms=round((time.perf_counter() - started) * 1000, 1),
            )
            # An exception goes on to Starlette's 500 handler, outside this middleware: keep
            # request_id bound for its log line (the next request clears it on entry).
            if not failed:
                structlog.contextvars.clear_contextvars()


class BodySizeLimit:
    """413 in the envelope for bodies over the limit, declared or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(send)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # An HTTPException passes through FastAPI's body parsing untouched and
                    # is rendered in the envelope by the ingress's handler.
                    raise HTTPException(413)
            return message

        await self.app(scope, limited_receive, send)

    @staticmethod
    async def _reject(send: Send) -> None:
        body = json.dumps(error_body(413)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
