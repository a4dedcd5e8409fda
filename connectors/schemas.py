"""Pieces the built-in connectors share: executePayload schemas, payload readers, logos.

The schemas describe the reference's ``executePayload`` (Step 3). They are permissive on
purpose: merchants send what their CRM has, and a PSP that needs less must not reject more.
"""

from __future__ import annotations

import base64
from functools import cache
from importlib.resources import files
from typing import Any

_ID = {"type": ["string", "number"]}
_TEXT = {"type": "string"}
_MONEY = {
    "type": "object",
    "properties": {"amount": {"type": ["number", "string"]}, "currency": _TEXT},
}

ORDER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": _ID,
        "money": _MONEY,
        "crmData": {
            "type": "object",
            "properties": {
                "amount": {"type": ["number", "string"]},
                "currency": _TEXT,
                "conversionRate": {"type": ["number", "string"]},
            },
        },
        "timestamp": _ID,
        "description": _TEXT,
    },
}

CUSTOMER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": _ID,
        "firstName": _TEXT,
        "lastName": _TEXT,
        # No "format": the reference's examples and real CRMs carry odd addresses.
        "email": _TEXT,
        "phone": {
            "oneOf": [
                _TEXT,
                {
                    "type": "object",
                    "properties": {"phoneNumber": _ID, "countryCode": _ID},
                },
            ]
        },
        "address": {
            "type": "object",
            "properties": {
                "line1": _TEXT,
                "line2": _TEXT,
                "city": _TEXT,
                "state": _TEXT,
                "zipCode": _ID,
                "country": _TEXT,
            },
        },
    },
}

URLS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "returnUrl": _TEXT,
        "successUrl": _TEXT,
        "failureUrl": _TEXT,
    },
}


def payload_schema(
    *, customer_required: bool = False, customer: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The executePayload schema of one action; ``customer`` overrides the customer part."""
    body: dict[str, Any] = {
        "type": "object",
        "properties": {
            "order": ORDER_SCHEMA,
            "customer": customer or CUSTOMER_SCHEMA,
            "language": _TEXT,
            "customAttributes": {"type": "object"},
            "urls": URLS_SCHEMA,
        },
    }
    schema: dict[str, Any] = {"type": "object", "properties": {"body": body}}
    if customer_required:
        body["required"] = ["customer"]
        schema["required"] = ["body"]
    return schema


def body_of(payload: dict[str, Any] | None) -> dict[str, Any]:
    """``executePayload.body`` as a dict, whatever the merchant sent."""
    body = (payload or {}).get("body")
    return body if isinstance(body, dict) else {}


def section(payload: dict[str, Any] | None, name: str) -> dict[str, Any]:
    value = body_of(payload).get(name)
    return value if isinstance(value, dict) else {}


def text(value: Any) -> str | None:
    """A scalar as text, or None for missing, empty and structured values."""
    if value is None or isinstance(value, dict | list) or value == "":
        return None
    return str(value)


@cache
def logo(name: str) -> str:
    """The ``data:`` URI of ``logos/<name>.png`` shipped with this package."""
    data = files("connectors").joinpath("logos", f"{name}.png").read_bytes()
    return "data:image/png;base64," + base64.b64encode(data).decode()
