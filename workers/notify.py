"""Merchant notifications (`notify.merchant`, `notify.deliver`, `notify.sweep`).

One notification per terminal transition, signed with Standard Webhooks headers. The
`webhook-id` is the notification's id and stays the same across retries, so a merchant
can de-duplicate. Retries are scheduled in PostgreSQL (`next_attempt_at`) and picked up by
the sweep, rather than as long broker countdowns that would outlive the visibility timeout.

The backoff is the database's, never a message's: an attempt starts only by leasing a
notification that is due (or the sweep's claim on it, good once), so however many
copies of a delivery task arrive, one attempt is made per step of the backoff. Whatever
makes an attempt fail (the merchant's answer, a timeout, a name that does not resolve, a
secret that cannot be opened, any exception) is recorded as a failed attempt with the
next one scheduled.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import timedelta
from typing import Any

import httpx
import orjson
import structlog

from connectors.money import minor_units
from connxt import tasks
from connxt.metrics import NOTIFICATION_ATTEMPTS, PARKED, labelled
from connxt.secrets import key_ring
from connxt.settings import get_settings
from connxt.ttl_cache import TtlCache
from storage import notifications as repo
from storage.db import session_scope
from storage.tenants import webhook_secret
from storage.transaction_view import transaction_view
from workers.app import celery_app
from workers.batch import Item, items_of, retry_items, run_unlocked
from workers.notify_urls import UnsafeUrl, check_url_form, merchant_client, post, private_allowed
from workers.sweeps import once_per_slot

log = structlog.get_logger()

_client: httpx.Client | None = None
_attempts = labelled(NOTIFICATION_ATTEMPTS)


def _http() -> httpx.Client:
    global _client
    if _client is None:
        settings = get_settings()
        if settings.is_production and settings.allow_private_webhook_urls:
            log.warning("notify.private_urls_refused_in_production")
        _client = merchant_client(settings.notify_timeout_seconds, private_allowed(settings))
    return _client


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks: `v1,` + base64 HMAC-SHA256 of `id.timestamp.body`."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def _retry_after(attempts_so_far: int) -> timedelta | None:
    backoff = get_settings().notify_backoff
    if attempts_so_far >= len(backoff):
        return None
    return timedelta(seconds=backoff[attempts_so_far])


# Decrypted signing secrets by environment, for seconds: an AES open per delivery is
# wasted work, and a secret is never rotated under a notification in flight.
_secrets: TtlCache[str, str] = TtlCache(get_settings().psp_cache_seconds)


def _secret(environment: Any) -> str | None:
    return _secrets.get_or_load(environment.id, lambda: webhook_secret(key_ring(), environment))


def _attempt(leased: repo.Leased) -> int:
    """POST the notification once; the merchant's HTTP status."""
    txn = leased.txn
    payload = {
        "type": leased.event_type,
        "timestamp": int(time.time()),
        "data": transaction_view(txn, minor_units(txn.currency)),
    }
    body = orjson.dumps(payload)  # the amount is an orjson.Fragment (transaction_view)
    url = leased.environment.webhook_url
    check_url_form(url)
    stamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "webhook-id": leased.id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(_secret(leased.environment) or "", leased.id, stamp, body),
    }
    # The address is checked as the connection is made (workers.notify_urls).
    return post(_http(), url, body, headers)


def deliver(notification_id: str, lease_token: str | None = None) -> str:
    """One delivery attempt; what became of the notification (or ``skipped``).
    ``lease_token``: the sweep's claim this delivery was sent for (if it was)."""
    settings = get_settings()
    with session_scope() as session:
        # Leased for longer than an attempt can take: if this worker dies mid-attempt, the
        # sweep delivers it once the lease is over.
        leased = repo.lease(
            session, notification_id, settings.notify_timeout_seconds + 5, lease_token
        )
        if leased is not None and not leased.environment.webhook_url:
            repo.skip(session, notification_id)
            return "SKIPPED"
    if leased is None:
        return "skipped"  # delivered, failed for good, not due yet, or being delivered
    url = leased.environment.webhook_url
    status_code, error, started = None, None, time.perf_counter()
    try:
        status_code = _attempt(leased)
    except UnsafeUrl as exc:
        error = f"refused URL: {exc}"
    except httpx.HTTPError as exc:
        error = type(exc).__name__
    except Exception as exc:  # noqa: BLE001 (any failure is a failed attempt, see above)
        error = type(exc).__name__
        log.exception("notify.attempt_error", notification_id=leased.id, error=error)
    elapsed = (time.perf_counter() - started) * 1000
    delivered = status_code is not None and 200 <= status_code < 300
    retry = None if delivered else _retry_after(leased.attempts)
    with session_scope() as session:
        outcome = repo.record_delivery(session, leased.id, url, status_code, error, elapsed, retry)
    _attempts(outcome).inc()
    if outcome == "FAILED":
        PARKED.labels("notification").inc()  # out of retries: an operator's to resend
    log.info(
        "notify.attempt",
        notification_id=leased.id,
        txn_id=leased.txn.id,
        status_code=status_code,
        error=error,
        outcome=outcome,
    )
    return outcome


def _deliver_items(task: Any, items: list[Item]) -> None:
    def work(one: Item) -> str:
        return deliver(one["notification_id"], one.get("lease"))

    again = run_unlocked(task, items, work, "notification_id")
    retry_items(task, again, countdown=2)


@celery_app.task(name=tasks.NOTIFY, bind=True)
def merchant(self, batch: list[Item] | None = None, **item: Any) -> None:
    """Deliver the notifications terminal transitions created, side by side."""
    _deliver_items(self, items_of(batch, item))


@celery_app.task(name=tasks.DELIVER, bind=True)
def deliver_task(self, batch: list[Item] | None = None, **item: Any) -> None:
    _deliver_items(self, items_of(batch, item))


# How long the sweep's claim keeps a notification from the next sweep: time for its
# message to reach a worker and for the attempt. A claim whose delivery never comes
# (the message was lost) makes the notification due again once it is over.
SWEEP_LEASE_SECONDS = 60.0


@celery_app.task(name="notify.sweep")
@once_per_slot("notify.sweep", lambda s: s.redrive_interval_seconds * 2)
def sweep() -> int:
    """Send what is due (retries, and notifications whose first message was lost), each
    claimed for its delivery so the next sweep does not send it again."""
    with session_scope() as session:
        token, due = repo.claim_due(session, SWEEP_LEASE_SECONDS)
    size = get_settings().relay_message_items
    for i in range(0, len(due), size):
        batch = [{"notification_id": n, "lease": token} for n in due[i : i + size]]
        celery_app.send_task(tasks.DELIVER, kwargs={"batch": batch})
    return len(due)
