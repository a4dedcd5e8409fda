"""PSP-facing endpoints: verify → insert-or-ignore → enqueue the row id → answer.

Nothing here calls a PSP, takes a lock or changes a transaction: the request only makes
the notification durable (storage.inbox_writer, in the ingress's group commit), so it
answers fast and a PSP's retry storm costs a share of an insert each.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
import structlog

from api_gateway.errors import BadRequest, NotFound, Unauthorized, not_json, too_deep
from api_gateway.psps.cache import psp_for_webhook, reread_for_webhook
from connectors.base import (
    BodyNotJson,
    InvalidSignature,
    MalformedWebhook,
    UnsignedRefused,
    WebhookEvent,
)
from connxt.settings import get_settings
from connxt.tracing import current_traceparent
from state_machine import Status
from storage.inbox_writer import NewWebhook
from storage.psp_context import PspContext
from storage.tenants import return_url

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from storage.models import Transaction

log = structlog.get_logger()

# Headers worth keeping with a notification; cookies and the like are not.
_KEPT_HEADERS = {"content-type", "signature", "user-agent", "x-request-id", "webhook-id"}


def _parse(context: PspContext, headers: dict[str, str], body: bytes) -> WebhookEvent:
    try:
        return context.connector.parse_webhook(context.credential, headers, body)
    except BodyNotJson:
        raise not_json() from None
    except MalformedWebhook as exc:
        raise BadRequest(f"Unreadable notification: {exc}") from None
    except RecursionError:  # JSON nested deeper than the parser's limit
        raise too_deep() from None


async def read_webhook(psp_id: str, headers: dict[str, str], body: bytes) -> NewWebhook:
    """Verify and read a notification, ready to store; an ApiError when it is not one."""
    context = await psp_for_webhook(psp_id)
    if context is None:
        raise NotFound("PSP not found")
    try:
        event = _parse(context, headers, body)
    except InvalidSignature:
        # The remembered signing key may predate a rotation made through another process:
        # read again, unless it was read just now (psps.cache bounds what a flood costs).
        context = await reread_for_webhook(psp_id)
        if context is None:
            raise Unauthorized("Invalid signature") from None
        try:
            event = _parse(context, headers, body)
        except UnsignedRefused:
            # The account has no signing key, and production takes no unsigned body: the
            # PSP's retries get through once an operator adds it (`connxt psps check`).
            log.warning("webhook.unsigned_refused", psp_id=psp_id)
            raise Unauthorized("Invalid signature") from None
        except InvalidSignature:
            raise Unauthorized("Invalid signature") from None
    if not _storable(event.identity, event.txn_id, event.psp_txn_id, event.psp_state):
        # JSON allows a lone surrogate (\ud800); PostgreSQL text cannot hold it.
        raise BadRequest("Unreadable notification: a field is not valid Unicode text")
    kept = {k: v for k, v in headers.items() if k.lower() in _KEPT_HEADERS}
    return NewWebhook(
        psp_id=context.psp_id,
        event_key=event.identity,
        txn_id=event.txn_id,
        headers=orjson.dumps(kept).decode(),
        body=body,
        verified=event.verified,
        traceparent=current_traceparent(),
    )


def _storable(*texts: str | None) -> bool:
    try:
        for text in texts:
            if text is not None:
                if "\x00" in text:
                    return False
                text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def merchant_return_url(session: Session, txn: Transaction, fallback: str) -> str:
    """Where the customer's browser goes after the PSP: the merchant's page, or ours.

    The merchant's success or failure page only once the outcome is known; until then its
    return page, or ``fallback`` (our result page, which waits and then moves on here).
    """
    urls = (txn.execute_payload or {}).get("body", {})
    urls = urls.get("urls", {}) if isinstance(urls, dict) else {}
    urls = urls if isinstance(urls, dict) else {}
    if txn.status == Status.SUCCESS.value:
        chosen = urls.get("successUrl") or urls.get("returnUrl")
    elif txn.status in (Status.FAILED.value, Status.REJECTED.value):
        chosen = urls.get("failureUrl") or urls.get("returnUrl")
    else:
        # Not decided yet (a hold for review included): a success page now could be a lie.
        chosen = urls.get("returnUrl")
    if not chosen:
        chosen = return_url(session, txn.environment_id) or get_settings().merchant_return_url
    if not chosen or not isinstance(chosen, str) or not chosen.startswith(("http://", "https://")):
        return fallback
    try:
        return _with_query(chosen, {"txnId": txn.id, "orderId": txn.order_id or ""})
    except ValueError:  # a URL urlsplit refuses (e.g. "http://["): the customer sees ours
        return fallback


def _with_query(url: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))
