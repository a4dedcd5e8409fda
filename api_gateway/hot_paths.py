"""The routes that carry volume, taken before the framework's router.

`POST /connxt/v2/transactions` (Step 3) and `POST /connxt/v2/external/webhooks/{pspId}` arrive
by the thousand per second. Each is declared on its router like any other route (its path,
summary and answers, for /docs and the OpenAPI document) and its endpoint is marked
``@hot_route``. When the app builds its middleware stack, ``Ingress`` finds the marked routes
among its own and puts ``HotRoutes`` in its router's place: a request for one of them goes
straight to the endpoint, every other request on to the router.

A hot request therefore passes through the whole middleware stack like any other: Starlette's
error middleware, every middleware added with ``add_middleware``, the exception handlers,
FastAPI's and OpenTelemetry's telemetry when traces are exported. What it skips is FastAPI's
router and request handler (matching the path against every route, then resolving
dependencies inside their exit stacks), which cost more than the work itself: with an endpoint
that does nothing, 140 µs of CPU a request through them, 16.5 µs through ``HotRoutes`` (the
framework's own middlewares are about 7 µs of that). The endpoint cannot tell the
difference: a hot endpoint takes only the request and path parameters as text, which FastAPI
would hand over unchanged (checked when it is marked and again when the route is found), reads
its own body (``read_body``) and raises the errors the app's handlers answer.
tests/integration/test_hot_routes.py holds the answers of both paths equal on a corpus of bad
requests. Hot routes are matched before every other route, so no route declared earlier may
claim the same paths.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import fastapi.routing
from fastapi import FastAPI
from starlette.convertors import StringConvertor
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Match, get_route_path
from starlette.types import ASGIApp, Receive, Scope, Send

Endpoint = TypeVar("Endpoint", bound=Callable[..., Awaitable[Response]])

# Set on a marked endpoint: the name of its request parameter.
_MARK = "__connxt_hot_route__"


def hot_route(endpoint: Endpoint) -> Endpoint:
    """Marks a route's endpoint to be called straight from the ingress (see above). It takes
    the request and, besides it, only path parameters as ``str``: nothing for FastAPI to
    resolve or validate."""
    hints = typing.get_type_hints(endpoint)
    names = list(inspect.signature(endpoint).parameters)
    requests = [name for name in names if hints.get(name) is Request]
    if len(requests) != 1 or any(hints.get(n) is not str for n in names if n not in requests):
        raise TypeError(
            f"{endpoint.__qualname__}: a hot route takes the request and path parameters "
            "as str, nothing FastAPI would resolve"
        )
    setattr(endpoint, _MARK, requests[0])
    return endpoint


@dataclass(frozen=True)
class _Hot:
    head: str  # the path's text before its first parameter: a cheap first test
    route: Any  # the declaration
    matches: Callable[[Scope], tuple[Match, Scope]]  # the framework's own matching
    selected: Any  # what the framework's router leaves in scope["route"]
    endpoint: Callable[..., Awaitable[Response]]
    request_name: str


def _declared(routes: Iterable[Any]) -> Iterable[Any]:
    """Every route the app serves, with the prefix its router was included under. Recent
    FastAPI keeps included routers whole and flattens them on demand; older versions
    flattened them into ``app.routes`` already."""
    flatten = getattr(fastapi.routing, "iter_route_contexts", None)
    return flatten(routes) if flatten is not None else routes


def _hot(route: Any) -> _Hot | None:
    endpoint = getattr(route, "endpoint", None)
    if endpoint is None:
        return None
    request_name = getattr(endpoint, _MARK, None)
    if request_name is None:
        return None
    params = dict(route.param_convertors)
    expected = set(inspect.signature(endpoint).parameters) - {request_name}
    if set(params) != expected or not all(isinstance(c, StringConvertor) for c in params.values()):
        raise TypeError(f"{route.path}: its parameters are not the endpoint's, as text")
    return _Hot(
        head=route.path.partition("{")[0],
        route=route,
        matches=route.matches,
        selected=getattr(route, "original_route", route),
        endpoint=endpoint,
        request_name=request_name,
    )


class HotRoutes:
    """In the router's place: a hot route's request to its endpoint, any other to the router."""

    def __init__(self, routes: Iterable[Any], router: Any, router_stack: ASGIApp):
        self.hot = [hot for hot in map(_hot, _declared(routes)) if hot is not None]
        self.router = router
        self.router_stack = router_stack

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = get_route_path(scope)
            for hot in self.hot:
                if path.startswith(hot.head):
                    match, child_scope = hot.matches(scope)
                    if match is Match.FULL:
                        await self._serve(hot, child_scope, scope, receive, send)
                        return
        await self.router_stack(scope, receive, send)

    async def _serve(
        self, hot: _Hot, child_scope: Scope, scope: Scope, receive: Receive, send: Send
    ) -> None:
        # What the router would have left in the scope, for the middlewares outside.
        scope.setdefault("router", self.router)
        scope["route"] = hot.selected
        scope.update(child_scope)
        request = Request(scope, receive, send)
        response = await hot.endpoint(**{hot.request_name: request}, **scope["path_params"])
        await response(scope, receive, send)


async def read_body(request: Request) -> bytes:
    """The request's body, for the hot routes' endpoints, read where they need it (Step 3
    after the token check). One loop over ``receive``: Starlette's ``Request.body()``
    streams through an async generator, 4.4 µs against 1.1 µs for a 1 KB body.

    The pieces are joined once at the end: appending each to the body would copy it all
    every time, quadratic in the number of pieces a client chooses to cut it into."""
    message = await request.receive()
    if message["type"] == "http.disconnect":
        raise ClientDisconnect()
    body = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    pieces = [body]
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        pieces.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(pieces)


class Ingress(FastAPI):
    """The FastAPI app, its hot routes taken before its router (see above).

    ``hot_routes=False`` leaves them to the router, like every other route: the same app
    answering through the framework's own path (the tests compare the two)."""

    def __init__(self, *args: Any, hot_routes: bool = True, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.serves_hot_routes = hot_routes

    def build_middleware_stack(self) -> ASGIApp:
        router = self.router
        stack: ASGIApp = router.middleware_stack
        if isinstance(stack, HotRoutes):  # built before: an instrumentation rebuilds it
            stack = stack.router_stack
        if stack != router.app:
            # A hot request would skip middleware put on the router itself.
            raise RuntimeError("the ingress's router takes no middleware of its own")
        if self.serves_hot_routes:
            stack = HotRoutes(self.routes, router, stack)
        router.middleware_stack = stack
        return super().build_middleware_stack()
