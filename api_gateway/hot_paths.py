"""The routes that carry volume, dispatched without the framework's per-request machinery.

`POST /connxt/v2/transactions` and `POST /connxt/v2/external/webhooks/{pspId}` arrive by
the thousand per second. Routing them through FastAPI (router matching across the
included routers, dependency resolution, the exception and exit-stack middlewares) costs
about as much as everything they do. This middleware sits inside the request-id, metrics
and body-limit middlewares and calls the very same endpoint functions directly; errors
go through the app's own exception handlers, so an answer is byte for byte what the
framework would have sent. The routes stay declared on the app for /docs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import SimpleNamespace

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

Endpoint = Callable[[Request], Awaitable[Response]]


class HotPaths:
    def __init__(self, app: ASGIApp, routes: dict[str, Endpoint], handlers: dict):
        """``routes``: path template → endpoint taking the request (path parameters in
        ``request.path_params``); ``handlers``: the app's exception handlers."""
        self.app = app
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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        matched = (
            self._match(scope["path"])
            if scope["type"] == "http" and scope["method"] == "POST"
            else None
        )
        if matched is None:
            await self.app(scope, receive, send)
            return
        endpoint, route, params = matched
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
