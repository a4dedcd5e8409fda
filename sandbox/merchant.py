"""A merchant's webhook receiver for the demo: checks Standard Webhooks signatures.

Connxt notifies merchants with Standard Webhooks headers (``webhook-id``,
``webhook-timestamp``, ``webhook-signature: v1,<base64 HMAC-SHA256>`` over
``"{id}.{timestamp}.{body}"``). This receiver is what a merchant would run, so the demo and
the tests can watch those notifications land and be verified. It verifies them with the
specification's own reference library (``standardwebhooks``), written by others: a
signature Connxt got wrong fails here however Connxt's own code reads it.
"""

from __future__ import annotations

import json
from typing import Any

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel
from standardwebhooks import Webhook, WebhookVerificationError

from sandbox.common import context, json_response
from sandbox.state import now_iso

log = structlog.get_logger()

router = APIRouter(tags=["merchant"])


def verifier(secret: str) -> Webhook:
    """The reference library's verifier for a secret (``whsec_<base64>``); ValueError when
    the secret is not one."""
    try:
        return Webhook(secret)
    except Exception as exc:  # the library's: binascii.Error, EmptyWebhookSecretError, ...
        raise ValueError(f"not a Standard Webhooks secret: {type(exc).__name__}") from exc


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """True when one of the signatures matches and the timestamp is within the library's
    tolerance (five minutes either way)."""
    try:
        verifier(secret).verify(body, headers, json_parse=False)
    except (ValueError, WebhookVerificationError):
        return False
    return True


class MerchantConfig(BaseModel):
    secret: str | None = None


@router.put("/_control/merchant")
async def configure(config: MerchantConfig, request: Request) -> Response:
    store = context(request).store
    if config.secret:
        try:
            verifier(config.secret)
        except ValueError as exc:
            return json_response({"error": str(exc)}, status=422)
    with store.lock:
        store.merchant_secret = config.secret or None
    return json_response({"secretSet": store.merchant_secret is not None})


@router.post("/merchant/notifications")
async def receive(request: Request) -> Response:
    store = context(request).store
    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    secret = store.merchant_secret
    verified = secret is not None and verify(secret, headers, body)
    if store.control.merchant_fail:
        status = 503
    elif secret is not None and not verified:
        status = 401
    else:
        status = 204
    try:
        parsed: Any = json.loads(body)
    except ValueError:
        parsed = body.decode(errors="replace")
    with store.lock:
        store.notifications.append(
            {
                "receivedAt": now_iso(),
                "webhookId": headers.get("webhook-id"),
                "webhookTimestamp": headers.get("webhook-timestamp"),
                "verified": verified,
                "answered": status,
                "body": parsed,
                # As sent, so a test can check how numbers were written.
                "raw": body.decode(errors="replace"),
            }
        )
    log.info(
        "sandbox.merchant.notification",
        webhook_id=headers.get("webhook-id"),
        verified=verified,
        status_code=status,
    )
    return Response(status_code=status)


@router.get("/merchant/notifications/summary")
async def summary(request: Request) -> Response:
    """Counts only, for a load test to poll instead of the whole list."""
    store = context(request).store
    with store.lock:
        verified = {n["webhookId"] for n in store.notifications if n["verified"]}
        last = store.notifications[-1]["receivedAt"] if store.notifications else None
        return json_response(
            {"received": len(store.notifications), "verified": len(verified), "last": last}
        )


@router.get("/merchant/notifications")
async def received(request: Request) -> Response:
    store = context(request).store
    with store.lock:
        return json_response({"notifications": list(store.notifications)})
