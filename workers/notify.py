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
import threading
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
from storage.models import NotificationStatus
from storage.tenants import notification_secret
from storage.transaction_view import transaction_view
from workers.app import celery_app
from workers.batch import TRANSIENT, Item, items_of, run_each
from workers.merchant_http import MerchantClient
from workers.notify_urls import UnsafeUrl, private_allowed
from workers.publish import message_items
from workers.sweeps import once_per_slot

log = structlog.get_logger()

_client: MerchantClient | None = None
_client_lock = threading.Lock()
_attempts = labelled(NOTIFICATION_ATTEMPTS)


def _http() -> MerchantClient:
    # Built once per process, however many threads make their first attempt at once; the
    # lock is taken only until it exists, not on every attempt.
    global _client
    if _client is not None:
        return _client
    with _client_lock:
        if _client is None:
            settings = get_settings()
            if settings.is_production and settings.allow_private_notification_urls:
                log.warning("notify.private_urls_refused_in_production")
            _client = MerchantClient(settings.notify_timeout_seconds, private_allowed(settings))
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
    return _secrets.get_or_load(
        environment.id, lambda: notification_secret(key_ring(), environment)
    )


def _attempt(leased: repo.Leased) -> int:
    """POST the notification once; the merchant's HTTP status."""
    txn = leased.txn
    payload = {
        "type": leased.event_type,
        "timestamp": int(time.time()),
        "data": transaction_view(txn, minor_units(txn.currency)),
    }
    body = orjson.dumps(payload)  # the amount is an orjson.Fragment (transaction_view)
    url = leased.environment.notification_url
    stamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "webhook-id": leased.id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(_secret(leased.environment) or "", leased.id, stamp, body),
    }
    # The address is checked as the connection is made (workers.merchant_http).
    return _http().post(url, body, headers)


def deliver(notification_id: str, lease_token: str | None = None) -> str:
    """One delivery attempt; what became of the notification (or ``skipped``).
    ``lease_token``: the sweep's claim this delivery was sent for (if it was)."""
    return deliver_many({notification_id: lease_token}).get(notification_id, "skipped")


def deliver_many(wanted: dict[str, str | None]) -> dict[str, str]:
    """One attempt for each notification that is due, side by side: leased in one
    statement, posted on the process's threads, recorded in one statement. What became of
    each notification attempted or skipped; those not due are left out.

    ``wanted``: notification id → the sweep's claim its delivery was sent for (or None)."""
    settings = get_settings()
    with session_scope() as session:
        # Leased for longer than an attempt can take: if this worker dies mid-attempt, the
        # sweep delivers it once the lease is over.
        leased = repo.lease_many(session, wanted, settings.notify_timeout_seconds + 5)
        nowhere = [n.id for n in leased.values() if not n.environment.notification_url]
        if nowhere:
            repo.skip(session, nowhere)
    sending = [n for n in leased.values() if n.environment.notification_url]
    deliveries: dict[str, repo.Delivery] = {}

    def attempt(item: Item) -> None:
        notification = item["leased"]
        deliveries[notification.id] = _attempted(notification)

    run_each(attempt, [{"notification_id": n.id, "leased": n} for n in sending])
    with session_scope() as session:
        outcomes = repo.record_deliveries(session, [deliveries[n.id] for n in sending])
    for notification in sending:
        _log_attempt(notification, deliveries[notification.id], outcomes[notification.id])
    return {**outcomes, **dict.fromkeys(nowhere, NotificationStatus.SKIPPED.value)}


def _attempted(leased: repo.Leased) -> repo.Delivery:
    """POST once and say how it went; whatever goes wrong is a failed attempt."""
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
    return repo.Delivery(
        leased.id, leased.environment.notification_url, status_code, error, elapsed, retry
    )


def _log_attempt(leased: repo.Leased, delivery: repo.Delivery, outcome: str) -> None:
    _attempts(outcome).inc()
    if outcome == NotificationStatus.FAILED:
        PARKED.labels("notification").inc()  # out of retries: an operator's to resend
    # A delivered notification is the normal case, and at volume one line each is a cost
    # of its own: DEBUG. Failures stay at INFO (the attempts are stored either way).
    (log.debug if outcome == NotificationStatus.DELIVERED else log.info)(
        "notify.attempt",
        notification_id=leased.id,
        txn_id=leased.txn.id,
        status_code=delivery.status_code,
        error=delivery.error,
        outcome=outcome,
    )


def _deliver_items(task: Any, items: list[Item]) -> None:
    wanted: dict[str, str | None] = {}
    for item in items:  # a repeat in one message is one attempt
        wanted.setdefault(item["notification_id"], item.get("lease"))
    try:
        deliver_many(wanted)
    except TRANSIENT:
        # Nothing leased, or leases that end by themselves (the sweep sends those again).
        task.retry_items(items, countdown=2)


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
    size = message_items(tasks.DELIVER)
    for i in range(0, len(due), size):
        batch = [{"notification_id": n, "lease": token} for n in due[i : i + size]]
        celery_app.send_task(tasks.DELIVER, kwargs={"batch": batch})
    return len(due)
