"""The routes that carry volume, dispatched without the framework's per-request machinery.

`POST /connxt/v2/transactions` and `POST /connxt/v2/external/webhooks/{pspId}` arrive by
the thousand per second. Passing them through Starlette's and FastAPI's layers (the error
and telemetry middlewares, router matching across the included routers, dependency
resolution, the exit stack) costs about as much as everything they do. The ingress
(``Ingress`` below) hands them to the request-id and body-limit middlewares and then
straight to the very same endpoint functions; errors go through the app's own exception
handlers, so an answer is byte for byte what the framework would have sent. The routes
stay declared on the app, for /docs and for everything else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import SimpleNamespace

from fastapi import FastAPI
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

Endpoint = Callable[[Request], Awaitable[Response]]


class HotPaths:
    def __init__(self, routes: dict[str, Endpoint], handlers: dict):
        """``routes``: path template → endpoint taking the request (path parameters in
        ``request.path_params``); ``handlers``: the app's exception handlers."""
        self._exact: dict[str, tuple[Endpoint, SimpleNamespace]] = {}
        self._prefixed: list[tuple[str, str, Endpoint, SimpleNamespace]] = []
        for template, endpoint in routes.items():
            route = SimpleNamespace(path=template)  # what the metrics middleware reads
            head, brace, rest = template.partition("{")
            if not brace:
                self._exact[template] = (endpoint, route)
            else:
                self._prefixed.append((head, rest.partition("}")[0], endpoint, route))
        self._handlers = handlers

    def _match(self, path: str) -> tuple[Endpoint, SimpleNamespace, dict[str, str]] | None:
        found = self._exact.get(path)
        if found is not None:
            return found[0], found[1], {}
        for head, name, endpoint, route in self._prefixed:
            if path.startswith(head):
                value = path[len(head) :]
                if value and "/" not in value:
                    return endpoint, route, {name: value}
        return None

    def claims(self, scope: Scope) -> bool:
        """Whether this request is one of the hot routes (the match is kept in the scope)."""
        if scope["type"] != "http" or scope["method"] != "POST":
            return False
        matched = self._match(scope["path"])
        scope["connxt.hot"] = matched
        return matched is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint, route, params = scope["connxt.hot"]
        scope["route"], scope["path_params"] = route, params
        request = Request(scope, receive)
        try:
            response = await endpoint(request)
        except Exception as exc:
            response = await self._handle(request, exc)
        await response(scope, receive, send)

    async def _handle(self, request: Request, exc: Exception) -> Response:
        for cls in type(exc).__mro__:
            handler = self._handlers.get(cls)
            if handler is not None:
                return await handler(request, exc)
        raise exc


async def read_body(request: Request) -> bytes:
    """The request's body, for the hot routes' endpoints, read where they need it (Step 3
    after the token check). One loop over ``receive``: Starlette's ``Request.body()``
    streams through an async generator, 4.4 µs against 1.1 µs for a 1 KB body."""
    body = b""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return body


class Ingress(FastAPI):
    """The FastAPI app, with its hot routes taken before the framework's layers."""

    hot_paths: HotPaths | None = None
    _hot_stack: ASGIApp | None = None

    def serve_hot_paths(self, hot_paths: HotPaths, wrap: Callable[[ASGIApp], ASGIApp]) -> None:
        """``wrap`` puts the cross-cutting middlewares (request id, metrics, body limit)
        around the hot routes, the same ones every other route passes through."""
        self.hot_paths, self._hot_stack = hot_paths, wrap(hot_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.hot_paths is not None and self.hot_paths.claims(scope):
            scope["app"] = self
            await self._hot_stack(scope, receive, send)
            return
        await super().__call__(scope, receive, send)
