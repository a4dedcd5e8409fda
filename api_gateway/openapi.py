"""The OpenAPI document says every answer an operation can give, each in the envelope.

Every success names the model of its `data` (the response models live in each area's
``schemas.py``); the answers themselves are written by each resource's one shaping
function (docs/ARCHITECTURE.md §8), without FastAPI's serializer on the hot paths, and the
test suite checks every answer it receives against this document
(tests/support/contract.py), so the two cannot drift apart.

FastAPI documents a bare 200 and, for any route with parameters, a 422 of its own
(`HTTPValidationError`) that this ingress never sends: validation failures are 400s in the
reference's envelope. Routes therefore declare their answers with ``answers(...)``, and
``install(app)`` drops FastAPI's own 422 from the document wherever a route did not
declare a 422 of ours.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field, create_model

STAMP = "2025-12-12T08:55:04Z"
_ZULU = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"

# A moment as every answer writes it: UTC to the second, with its zone.
Stamp = Annotated[str, Field(pattern=_ZULU, examples=[STAMP])]


class ResponseModel(BaseModel):
    """A resource as answers carry it. Every field is listed and no other is allowed: the
    document then says exactly what a client receives (``null`` where a value may be
    absent, never a missing key)."""

    model_config = ConfigDict(extra="forbid")


class ErrorItem(BaseModel):
    field: str = Field(description="The field at fault (`body` for the body as a whole)")
    message: str


class ErrorEnvelope(BaseModel):
    """Every refusal: the reference's error envelope."""

    timestamp: Stamp
    code: str = Field(description="The HTTP status, as a string", examples=["400"])
    message: str
    errors: list[ErrorItem]


class Envelope(BaseModel):
    """Every success: the reference's envelope around the operation's `data`."""

    timestamp: Stamp
    code: str = Field(description="The HTTP status, as a string", examples=["200"])
    message: str = Field(examples=["Operation completed successfully"])


@functools.cache
def enveloped(data: Any, name: str | None = None) -> type[Envelope]:
    """The envelope around ``data`` (a response model, or a union of them), as one named
    model: ``Transaction`` becomes ``TransactionAnswer`` in the document."""
    name = name or f"{data.__name__}Answer"
    return create_model(name, __base__=Envelope, data=(data, ...))


# What each refusal means; a route may say more about its own.
_MEANING = {
    400: "Invalid request data: each problem in `errors[]`, named by its field",
    401: "Missing, unknown or revoked `X-SECRET-TOKEN`",
    404: "Not found (another tenant's resource is not found either)",
    409: "A request with this `Idempotency-Key` is still in progress",
    413: "Request body over the size limit (`CONNXT_MAX_BODY_BYTES`, 1 MiB)",
    422: "`Idempotency-Key` already used with a different request",
    429: "Too many unknown tokens from this address: wait `Retry-After` seconds",
    503: "Database unavailable: retry shortly (`Retry-After`)",
}
# Only a 400 names fields; every other refusal's `errors` is empty.
_EXAMPLE_400_ERRORS = [{"field": "txnCurrency", "message": "not an ISO 4217 currency code"}]
_MESSAGES = {
    400: "Validation failed",
    401: "Invalid or missing X-SECRET-TOKEN",
    404: "Resource not found",
    409: "A request with this Idempotency-Key is still in progress",
    413: "Request body too large",
    422: "Idempotency-Key was already used with a different request",
    429: "Too many requests with unknown tokens from this address",
    503: "Database unavailable, retry shortly",
}


def error_answer(code: int, meaning: str | None = None) -> dict[str, Any]:
    example = {
        "timestamp": STAMP,
        "code": str(code),
        "message": _MESSAGES[code],
        "errors": _EXAMPLE_400_ERRORS if code == 400 else [],
    }
    return {
        "model": ErrorEnvelope,
        "description": meaning or _MEANING[code],
        "content": {"application/json": {"example": example}},
    }


def answers(
    *codes: int, data: Any = None, ok: str = "Success", token: bool = True, **meanings: str
) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of a route: a 200 in the envelope around ``data`` (its response
    model; None when the route declares its successes itself) and the refusals it can
    give, in the error envelope. ``meanings``: ``e409="..."`` says what a code means for
    this route. ``token``: whether its 401 is about `X-SECRET-TOKEN` (not a signature)."""
    out: dict[int | str, dict[str, Any]] = {}
    if data is not None:
        out[200] = {"model": enveloped(data), "description": ok}
    # Wherever a token is checked, a flood of unknown ones is cut off (api_gateway.auth).
    for code in sorted({*codes, 429} if 401 in codes and token else set(codes)):
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
