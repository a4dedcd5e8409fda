"""A merchant's webhook receiver for the demo: checks Standard Webhooks signatures.

Connxt notifies merchants with Standard Webhooks headers (``webhook-id``,
``webhook-timestamp``, ``webhook-signature: v1,<base64 HMAC-SHA256>`` over
``"{id}.{timestamp}.{body}"``). This receiver is what a merchant would run, so the demo and
the tests can watch those notifications land and be verified.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from typing import Any

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel

from sandbox.common import context, json_response
from sandbox.state import now_iso

log = structlog.get_logger()

router = APIRouter(tags=["merchant"])

# Standard Webhooks' recommended replay window.
TOLERANCE_SECONDS = 5 * 60


def signing_key(secret: str) -> bytes:
    """The HMAC key of a secret: ``whsec_<base64>`` decodes, anything else is used as is."""
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except binascii.Error:
            pass  # not base64 after all: fall back to the secret's own bytes
    return secret.encode()


def sign(secret: str, msg_id: str, timestamp: str | int, body: bytes) -> str:
    """The ``webhook-signature`` header value for one message."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(signing_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(secret: str, headers: dict[str, str], body: bytes, now: float | None = None) -> bool:
    """True when one of the ``v1`` signatures matches and the timestamp is recent."""
    msg_id = headers.get("webhook-id", "")
    timestamp = headers.get("webhook-timestamp", "")
    if not msg_id or not timestamp.isdigit():
        return False
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > TOLERANCE_SECONDS:
        return False
    expected = sign(secret, msg_id, timestamp, body).encode()
    # The header may carry several space-separated signatures during key rotation.
    return any(
        hmac.compare_digest(expected, candidate.encode())
        for candidate in headers.get("webhook-signature", "").split()
    )


class MerchantConfig(BaseModel):
    secret: str | None = None


@router.put("/_control/merchant")
async def configure(config: MerchantConfig, request: Request) -> Response:
    store = context(request).store
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
