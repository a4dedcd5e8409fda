"""The reference's response envelope, on every answer, errors included."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

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
    500: "Internal server error",
    503: "Service temporarily unavailable",
}


def now_stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ok(
    data: Any,
    message: str = "Operation completed successfully",
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {
        "timestamp": now_stamp(),
        "code": str(status_code),
        "message": message,
        "data": jsonable_encoder(data),
    }
    return JSONResponse(body, status_code=status_code, headers=headers)


def error_body(
    status_code: int, message: str | None = None, errors: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "timestamp": now_stamp(),
        "code": str(status_code),
        "message": message or _MESSAGES.get(status_code, "Error"),
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
