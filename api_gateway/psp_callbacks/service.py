"""PSP-facing endpoints: verify → insert-or-ignore → enqueue the row id → answer.

Nothing here calls a PSP, takes a lock or changes a transaction: the request only makes
the notification durable (storage.inbox_batch, in the ingress's group commit), so it
answers fast and a PSP's retry storm costs a share of an insert each.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
from sqlalchemy.orm import Session

from api_gateway.errors import BadRequest, NotFound, Unauthorized
from api_gateway.psps.cache import forget_webhook_context, psp_for_webhook
from connectors.base import InvalidSignature, MalformedWebhook, WebhookEvent
from connxt.settings import get_settings
from connxt.tracing import current_traceparent
from state_machine import Status
from storage.inbox_batch import NewWebhook
from storage.models import Environment, Transaction
from storage.psp_context import PspContext

# Headers worth keeping with a notification; cookies and the like are not.
_KEPT_HEADERS = {"content-type", "signature", "user-agent", "x-request-id", "webhook-id"}


def _parse(context: PspContext, headers: dict[str, str], body: bytes) -> WebhookEvent:
    try:
        return context.connector.parse_webhook(context.credential, headers, body)
    except MalformedWebhook as exc:
        raise BadRequest(f"Unreadable notification: {exc}") from None
    except RecursionError:  # JSON nested deeper than the parser's limit
        raise BadRequest("Unreadable notification: body is nested too deeply") from None


async def read_webhook(psp_id: str, headers: dict[str, str], body: bytes) -> NewWebhook:
    """Verify and read a notification, ready to store; an ApiError when it is not one."""
    context = await psp_for_webhook(psp_id)
    if context is None:
        raise NotFound("PSP not found")
    try:
        event = _parse(context, headers, body)
    except InvalidSignature:
        # The remembered signing key may predate a rotation made through another process.
        forget_webhook_context(psp_id)
        context = await psp_for_webhook(psp_id)
        try:
            event = _parse(context, headers, body) if context else None
        except InvalidSignature:
            event = None
        if event is None:
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
        env = session.get(Environment, txn.environment_id)
        chosen = (env.return_url if env else None) or get_settings().merchant_return_url
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
