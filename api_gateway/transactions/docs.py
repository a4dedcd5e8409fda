"""How the OpenAPI document describes Step 3, `POST /transactions`.

The route is served by the hot path (api_gateway.hot_paths), which reads the body itself;
what FastAPI would infer from the function is nothing, so the request, its headers and
every answer are written out here, each with an example.
"""

from __future__ import annotations

import copy
from typing import Any

from api_gateway.openapi import STAMP, answers, enveloped
from api_gateway.transactions.answers import ACCEPTED_MESSAGE, CREATED_MESSAGE
from api_gateway.transactions.examples import reference_payload
from api_gateway.transactions.schemas import (
    Accepted,
    Step3Direct,
    Step3Redirect,
    Step3Refused,
    TransactionCreate,
)

_TXN = "txn_gQzyS9RkkknYWFvgnJQj3zSNjP"
_IDS = {
    "flowActionId": "fat_01jt2cetrheh48mkp2m8z680xz",
    "flowTargetId": "ftg_01jt2ctt8veh48mkpcx2bdeatz",
    "pspId": "psp_gQzyS9RkkknYWFvgnJQj3zSNjP",
}
_URLS = {
    "successUrl": "https://shop.example.com/paid",
    "failureUrl": "https://shop.example.com/failed",
    "returnUrl": "https://shop.example.com/checkout",
}


def _execute_payload_schema() -> dict[str, Any]:
    url = {"type": "string", "format": "uri"}
    return {
        "type": "object",
        "description": "What the PSP needs: order, customer and the pages the customer returns "
        "to. Further fields are passed on as they are.",
        "additionalProperties": True,
        "properties": {
            "body": {
                "type": "object",
                "additionalProperties": True,
                "properties": {
                    "order": {"type": "object", "additionalProperties": True},
                    "customer": {"type": "object", "additionalProperties": True},
                    "urls": {
                        "type": "object",
                        "description": "Where the customer's browser goes after the PSP's page: "
                        "`successUrl` or `failureUrl` once the outcome is known, "
                        "`returnUrl` (or Connxt's result page) before that.",
                        "additionalProperties": True,
                        "properties": {
                            "successUrl": url,
                            "failureUrl": url,
                            "returnUrl": url,
                        },
                    },
                    "language": {"type": "string"},
                    "customAttributes": {"type": "object", "additionalProperties": True},
                },
            }
        },
    }


def _request_schema() -> dict[str, Any]:
    schema = TransactionCreate.model_json_schema()
    # A JSON number, as in the reference; read exactly (never through a float).
    schema["properties"]["txnAmount"] = {
        "type": "number",
        "exclusiveMinimum": 0,
        "description": "Positive, at most the currency's decimal places",
        "examples": [200],
    }
    schema["properties"]["executePayload"] = _execute_payload_schema()
    return schema


def _deposit() -> dict[str, Any]:
    return {
        **_IDS,
        "transactionType": "deposit",
        "txnCurrency": "USD",
        "txnAmount": 200,
        "executePayload": reference_payload(**_URLS),
    }


def _refund() -> dict[str, Any]:
    body = copy.deepcopy(_deposit())
    body.update(
        flowActionId="fat_01k5bqfxa3f6cawws5kyqpdkc9",
        transactionType="refund",
        txnAmount=50,
        parentTxnId=_TXN,
    )
    return body


def _envelope(code: int, message: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"timestamp": STAMP, "code": str(code), "message": message, "data": data}


_REDIRECT = {
    "txnId": _TXN,
    "status": "PG_ACCEPTED",
    "success": True,
    "data": {
        "__type": "success",
        "data": {
            "navigation": {
                "type": "redirect",
                "contentType": "url",
                "value": "https://pay.example.com/checkout/pmx_5f0c2a",
            },
            "status": "success",
            "orderId": "1758818848508",
            "userId": "cust_001",
        },
    },
    "error": None,
    "meta": {"logs": {"pspState": "CHECKOUT", "status": "PG_ACCEPTED"}, "http": {"exchanges": []}},
}
_DIRECT = {
    "txnId": _TXN,
    "status": "SUCCESS",
    "pspId": _IDS["pspId"],
    "pspTxnId": "pmx_ff8163258c12d6cdc64a6451",
    "flowActionId": "fat_01jtj2hq14fexta3pcaeaswc62",
    "flowTargetId": _IDS["flowTargetId"],
    "transactionType": "withdrawal",
    "txnAmount": 200.00,
    "txnCurrency": "USD",
    "capturedAmount": 200.00,
    "capturedCurrency": "USD",
    "parentTxnId": None,
    "orderId": "1758818848508",
    "userId": "cust_001",
    "navigation": None,
    "error": None,
    "createdAt": "2025-12-12T08:55:03Z",
    "updatedAt": "2025-12-12T08:55:04Z",
    "review": None,
    "success": True,
    "meta": {"logs": {"pspState": "COMPLETED", "status": "SUCCESS"}, "http": {"exchanges": []}},
}

_PARAMETERS = [
    {"name": "X-SECRET-TOKEN", "in": "header", "required": True, "schema": {"type": "string"}},
    {
        "name": "Prefer",
        "in": "header",
        "required": False,
        "description": "`respond-async`: answer 202 as soon as the transaction is stored, "
        "without waiting for the PSP.",
        "schema": {"type": "string"},
        "example": "respond-async",
    },
    {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": "The same key and body replay the first answer; another body with the "
        "same key is 422; while the first request runs, 409.",
        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
        "example": "order-1758818848508",
    },
]

STEP3_OPENAPI: dict[str, Any] = {
    "description": "Stores the transaction and has a worker initiate it at the PSP. The answer "
    "waits for the PSP up to `CONNXT_INITIATION_WAIT_SECONDS` (200 with the reference's shape); "
    "past that, or with `Prefer: respond-async`, it is 202 and the outcome is read with "
    "`GET /transactions/{txnId}`. A refund is a REFUND with `parentTxnId` naming a successful "
    "deposit of the same PSP, never above what is left of it.",
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": _request_schema(),
                "examples": {
                    "deposit": {
                        "summary": "A deposit, with the pages the customer returns to",
                        "value": _deposit(),
                    },
                    "refund": {
                        "summary": "A refund of part of a successful deposit",
                        "value": _refund(),
                    },
                },
            }
        },
    },
    "parameters": _PARAMETERS,
}

STEP3_ANSWERS = {
    **answers(
        400,
        401,
        409,
        413,
        422,
        503,
        e400="Invalid request data, an unknown `pspId` included: each problem in `errors[]`",
        e422="`Idempotency-Key` already used with a different request, or a refund above "
        "what is left of its deposit",
    ),
    200: {
        "model": enveloped(Step3Redirect | Step3Refused | Step3Direct, "Step3Answer"),
        "description": "The PSP answered in time: the reference's redirect shape (the payment "
        "page in `data.data.data.navigation.value`), or the transaction itself when it needs "
        "no redirect (a withdrawal).",
        "content": {
            "application/json": {
                "examples": {
                    "redirect": {"value": _envelope(200, CREATED_MESSAGE, _REDIRECT)},
                    "direct": {"value": _envelope(200, CREATED_MESSAGE, _DIRECT)},
                }
            }
        },
    },
    202: {
        "model": enveloped(Accepted, "Step3Accepted"),
        "description": "Stored; the PSP's answer is not known yet (`Prefer: respond-async`, or "
        "the wait passed). Poll `GET /transactions/{txnId}`.",
        "content": {
            "application/json": {
                "example": _envelope(
                    202,
                    ACCEPTED_MESSAGE.format(txnId=_TXN),
                    {"txnId": _TXN, "status": "CREATED"},
                )
            }
        },
    },
}
