"""The reference's response envelope, on every answer, errors included."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response

_MESSAGES = {
    400: "Invalid request data",
    401: "Invalid or missing X-SECRET-TOKEN",
    403: "Forbidden",
    404: "Resource not found",
    405: "Method not allowed",
    409: "Resource conflict",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Unprocessable request",
    429: "Too many requests",
    499: "Client closed the request",
    500: "Internal server error",
    503: "Service temporarily unavailable",
}


_stamp: tuple[int, str] = (0, "")


def now_stamp() -> str:
    """The envelope's timestamp; formatted once per second, not once per answer."""
    global _stamp
    second = int(time.time())
    if _stamp[0] != second:
        _stamp = (second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    return _stamp[1]


def _other(value: Any) -> Any:
    # What orjson does not write itself: a Decimal as the number it is, digit for digit
    # (never through a float); anything else as FastAPI's encoder would.
    if isinstance(value, Decimal) and value.is_finite():
        return orjson.Fragment(format(value, "f"))
    return jsonable_encoder(value)


def envelope_json(data: Any, message: str, status_code: int) -> bytes:
    return orjson.dumps(
        {"timestamp": now_stamp(), "code": str(status_code), "message": message, "data": data},
        default=_other,
    )


def ok(
    data: Any,
    message: str = "Operation completed successfully",
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    return Response(
        envelope_json(data, message, status_code),
        status_code=status_code,
        headers=headers,
        media_type="application/json",
    )


def message_for(status_code: int) -> str:
    """The envelope's message for a status, when the answer gives none of its own."""
    return _MESSAGES.get(status_code, "Error")


def error_body(
    status_code: int, message: str | None = None, errors: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "timestamp": now_stamp(),
        "code": str(status_code),
        "message": message or message_for(status_code),
        "errors": errors or [],
    }


def error(
    status_code: int,
    message: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        error_body(status_code, message, errors), status_code=status_code, headers=headers
    )
