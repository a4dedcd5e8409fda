"""The OpenAPI document says every answer an operation can give, each in the envelope.

FastAPI documents a bare 200 and, for any route with parameters, a 422 of its own
(`HTTPValidationError`) that this ingress never sends: validation failures are 400s in the
reference's envelope. Routes therefore declare their answers with ``answers(...)``, and
``install(app)`` drops FastAPI's own 422 from the document wherever a route did not
declare a 422 of ours.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field

STAMP = "2025-12-12T08:55:04Z"
_ZULU = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"


class ErrorItem(BaseModel):
    field: str = Field(description="The field at fault (`body` for the body as a whole)")
    message: str


class ErrorEnvelope(BaseModel):
    """Every refusal: the reference's error envelope."""

    timestamp: str = Field(pattern=_ZULU, examples=[STAMP])
    code: str = Field(description="The HTTP status, as a string", examples=["400"])
    message: str
    errors: list[ErrorItem]


class Envelope(BaseModel):
    """Every success: the reference's envelope around the operation's `data`."""

    timestamp: str = Field(pattern=_ZULU, examples=[STAMP])
    code: str = Field(description="The HTTP status, as a string", examples=["200"])
    message: str = Field(examples=["Operation completed successfully"])
    data: dict[str, Any]


# What each refusal means; a route may say more about its own.
_MEANING = {
    400: "Invalid request data: each problem in `errors[]`, named by its field",
    401: "Missing, unknown or revoked `X-SECRET-TOKEN`",
    404: "Not found (another tenant's resource is not found either)",
    409: "A request with this `Idempotency-Key` is still in progress",
    413: "Request body over the size limit (`CONNXT_MAX_BODY_BYTES`, 1 MiB)",
    422: "`Idempotency-Key` already used with a different request",
    503: "Database unavailable: retry shortly (`Retry-After`)",
}
_EXAMPLE_ERRORS = {
    400: [{"field": "txnCurrency", "message": "not an ISO 4217 currency code"}],
    401: [],
    404: [],
    409: [],
    413: [],
    422: [],
    503: [],
}
_MESSAGES = {
    400: "Validation failed",
    401: "Invalid or missing X-SECRET-TOKEN",
    404: "Resource not found",
    409: "A request with this Idempotency-Key is still in progress",
    413: "Request body too large",
    422: "Idempotency-Key was already used with a different request",
    503: "Database unavailable, retry shortly",
}


def error_answer(code: int, meaning: str | None = None) -> dict[str, Any]:
    example = {
        "timestamp": STAMP,
        "code": str(code),
        "message": _MESSAGES[code],
        "errors": _EXAMPLE_ERRORS[code],
    }
    return {
        "model": ErrorEnvelope,
        "description": meaning or _MEANING[code],
        "content": {"application/json": {"example": example}},
    }


def ok_answer(description: str, example: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"model": Envelope, "description": description}
    if example is not None:
        answer["content"] = {
            "application/json": {
                "example": {
                    "timestamp": STAMP,
                    "code": "200",
                    "message": "Operation completed successfully",
                    "data": example,
                }
            }
        }
    return answer


def answers(
    *codes: int, ok: str | None = "Success", **meanings: str
) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of a route: a 200 in the envelope (unless ``ok`` is None) and the
    refusals it can give, in the error envelope. ``meanings``: ``e409="..."`` says what a
    code means for this route."""
    out: dict[int | str, dict[str, Any]] = {}
    if ok is not None:
        out[200] = ok_answer(ok)
    for code in codes:
        out[code] = error_answer(code, meanings.get(f"e{code}"))
    return out


def _without_frameworks_422(document: dict[str, Any]) -> dict[str, Any]:
    ours = "#/components/schemas/HTTPValidationError"
    for item in document.get("paths", {}).values():
        for operation in item.values():
            responses = operation.get("responses", {})
            schema = responses.get("422", {}).get("content", {}).get("application/json", {})
            if schema.get("schema", {}).get("$ref") == ours:
                del responses["422"]
    schemas = document.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    return document


def install(app: FastAPI) -> None:
    """Serve the document as described above (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _without_frameworks_422(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    description=app.description,
                    routes=app.routes,
                )
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
