"""Errors the API answers with, and the handlers that put them in the envelope.

Services raise ``ApiError`` subclasses; nothing below the ingress knows about HTTP codes
beyond these names. Anything unexpected becomes a 500 that shows no internals.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from psycopg import errors as pg
from psycopg_pool.errors import PoolTimeout
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from api_gateway.envelope import error

log = structlog.get_logger()


class ApiError(Exception):
    status_code = 400

    def __init__(
        self,
        message: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.errors = errors or []
        self.headers = headers


class BadRequest(ApiError):
    status_code = 400


class Unauthorized(ApiError):
    status_code = 401


class NotFound(ApiError):
    status_code = 404


class Conflict(ApiError):
    status_code = 409


class Unprocessable(ApiError):
    status_code = 422


class TooManyRequests(ApiError):
    status_code = 429


class Unavailable(ApiError):
    status_code = 503


def field_error(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message}


def field_path(parts: tuple[Any, ...] | list[Any]) -> str:
    """`executePayload.body.items[0].id` from its parts; indexes are ints or digit strings."""
    field = ""
    for part in map(str, parts):
        field += f"[{part}]" if part.isdigit() else (f".{part}" if field else part)
    return field or "body"


# One wording for a body that cannot be read as JSON, whoever reads it: Step 3's own parser,
# FastAPI's (the management routes), a PSP's notification parser.
NOT_JSON = "Request body is not valid JSON"
TOO_DEEP = "Request body is nested too deeply"


def not_json() -> BadRequest:
    return BadRequest("Validation failed", [field_error("body", NOT_JSON)])


def too_deep() -> BadRequest:
    """Nesting past the parser's own limit (the interpreter's recursion)."""
    return BadRequest("Validation failed", [field_error("body", TOO_DEEP)])


def _loc_to_field(loc: tuple[Any, ...]) -> str:
    return field_path([p for p in loc if p not in ("body", "query", "path", "header")])


def validation_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    out = []
    for err in exc.errors():
        message = err.get("msg", "invalid")
        loc = tuple(err.get("loc", ()))
        raw_body = loc == ("body",) and isinstance(err.get("input"), bytes)
        if err.get("type") == "json_invalid" or raw_body:
            # The decoder's loc is ("body", <char offset>): the field is the body itself.
            out.append(field_error("body", NOT_JSON))
            continue
        out.append(field_error(_loc_to_field(loc), message))
    return out


def _api_answer(exc: ApiError) -> Response:
    return error(exc.status_code, exc.message, exc.errors, headers=exc.headers)


def _client_gone(request: Request) -> Response:
    """A client that went away before it had sent its request (a phone losing its network,
    a PSP's own timeout) is an ordinary event: one quiet line, no traceback. Nobody reads
    the answer; its status, nginx's 499, is what the request's metrics record."""
    log.info("api.client_disconnected", method=request.method, path=request.scope["path"])
    return error(499)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError):
        return _api_answer(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError):
        return error(400, "Validation failed", validation_errors(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        # FastAPI turns a body it cannot read (not UTF-8, an integer over Python's digit
        # limit, nesting past the parser's limit, a client gone mid-body) into a bare 400
        # "There was an error parsing the body": answered as the same body is elsewhere.
        if exc.status_code == 400 and exc.__cause__ is not None:
            if isinstance(exc.__cause__, ClientDisconnect):
                return _client_gone(request)
            if isinstance(exc.__cause__, RecursionError):
                return _api_answer(too_deep())
            if isinstance(exc.__cause__, ValueError):
                return _api_answer(not_json())
        message = exc.detail if isinstance(exc.detail, str) and exc.status_code != 404 else None
        return error(exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(ClientDisconnect)
    async def _disconnected(request: Request, _exc: ClientDisconnect):
        return _client_gone(request)

    @app.exception_handler(OperationalError)
    async def _db_down(_request: Request, exc: OperationalError):
        log.error("api.database_unavailable", error=str(exc.orig)[:200])
        return error(503, "Database unavailable, retry shortly", headers={"Retry-After": "2"})

    @app.exception_handler(DataError)
    async def _bad_value(_request: Request, exc: DataError):
        # The database refused a value the request carried (a NUL in text, an untranslatable
        # character in JSON): the request is at fault, not the server.
        log.warning("api.database_refused_value", error=type(exc.orig).__name__)
        return error(400, "A value in the request cannot be stored")

    # The same two cases from the ingress's own (async, psycopg) connections.
    @app.exception_handler(pg.DataError)
    async def _bad_value_async(_request: Request, exc: pg.DataError):
        log.warning("api.database_refused_value", error=type(exc).__name__)
        return error(400, "A value in the request cannot be stored")

    @app.exception_handler(pg.OperationalError)
    @app.exception_handler(PoolTimeout)
    async def _db_down_async(_request: Request, exc: Exception):
        log.error("api.database_unavailable", error=type(exc).__name__)
        return error(503, "Database unavailable, retry shortly", headers={"Retry-After": "2"})

    @app.exception_handler(DBAPIError)
    async def _db_error(_request: Request, exc: DBAPIError):
        if exc.connection_invalidated:
            return error(503, "Database unavailable, retry shortly", headers={"Retry-After": "2"})
        log.exception("api.database_error")
        return error(500)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception):
        log.exception("api.unhandled_error", error_type=type(exc).__name__)
        return error(500)
