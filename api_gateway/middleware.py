"""ASGI middleware: a request id bound to every log line, and the body size limit.

Both are plain ASGI (not BaseHTTPMiddleware) so they add no task hops to the hot path.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import time
from functools import lru_cache

import structlog
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api_gateway.envelope import error, message_for
from connxt.metrics import HTTP_REQUESTS

log = structlog.get_logger()


@lru_cache(maxsize=1024)
def _observer(method: str, route: str, status: int):
    """The histogram child for one (method, route, status): looked up once, not per request."""
    return HTTP_REQUESTS.labels(method, route, str(status)).observe


class RequestContext:
    """A request id (the caller's ``X-Request-ID``, or one issued here) bound to every log
    line of the request and echoed in the answer; the request's duration in the metrics.

    Every request passes through here, so it is kept to a few plain steps: the id comes
    from a counter rather than the kernel's random source (it labels log lines, it guards
    nothing), and the per-request debug line is decided once, not per request.
    """

    def __init__(self, app: ASGIApp):
        self.app = app
        # The level is set before the app is built (connxt.logging), and is the process's.
        self._log_each = log.is_enabled_for(logging.DEBUG)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                request_id = value.decode("latin-1")[:64]
                break
        if not (request_id and request_id.isprintable()):
            request_id = _issue_request_id()
        # Only the request id is bound on this side; each request runs in a task of its own,
        # so setting it and resetting it afterwards is all the isolation needed (clearing
        # would walk the whole context, twice a request).
        bound = structlog.contextvars.bind_contextvars(request_id=request_id)
        echoed = (b"x-request-id", request_id.encode())
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), echoed]
            await send(message)

        failed = True
        try:
            await self.app(scope, receive, send_with_id)
            failed = False
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            elapsed = time.perf_counter() - started
            _observer(scope["method"], route, status)(elapsed)
            if self._log_each:
                # Debug, not info: a line per request would cost more than the request itself.
                log.debug(
                    "http.request",
                    method=scope["method"],
                    path=scope["path"],
                    status=status,
                    ms=round(elapsed * 1000, 1),
                )
            # An exception goes on to Starlette's 500 handler, outside this middleware: keep
            # request_id bound for its log line (the next request binds its own).
            if not failed:
                structlog.contextvars.reset_contextvars(**bound)


# A request id: a random prefix for this process, then a counter from a random start, 16
# hex digits in all, as secrets.token_hex(8) would give, without a system call per request.
_ID_PREFIX = secrets.token_hex(4)
_id_counter = itertools.count(secrets.randbits(32))


def _issue_request_id() -> str:
    return f"{_ID_PREFIX}{next(_id_counter) & 0xFFFFFFFF:08x}"


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
            await error(413, headers={"Connection": "close"})(scope, receive, send)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # An HTTPException passes through FastAPI's body parsing untouched and
                    # is rendered in the envelope by the ingress's handler, in the words of
                    # the answer to a declared length.
                    raise HTTPException(413, detail=message_for(413))
            return message

        await self.app(scope, limited_receive, send)
