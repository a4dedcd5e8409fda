"""Merchant notifications (`notify.merchant`, `notify.deliver`, `notify.sweep`).

One notification per terminal transition, signed with Standard Webhooks headers. The
`webhook-id` is the notification's id and stays the same across retries, so a merchant
can de-duplicate. Retries are scheduled in PostgreSQL (`next_attempt_at`) and picked up by
the sweep, rather than as long broker countdowns that would outlive the visibility timeout.

A batch's attempts run side by side, each within its deadline (workers.merchant_http), and
each is recorded as soon as it is over: a slow merchant holds up no other merchant's
record, so none outlives its lease and is sent again by the sweep. Attempts that finish
together share one statement.

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
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import structlog

from connectors.money import minor_units
from connxt import tasks
from connxt.http_errors import TransportError
from connxt.metrics import NOTIFICATION_ATTEMPTS, PARKED, labelled
from connxt.secrets import key_ring
from connxt.settings import get_settings
from connxt.ttl_cache import TtlCache
from storage import notifications as repo
from storage.db import session_scope
from storage.models import NotificationStatus
from storage.notification_secrets import SigningSecrets, signing_secrets
from storage.transaction_view import transaction_view
from workers.app import celery_app
from workers.item_threads import TRANSIENT, Item, items_of, run_each
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


class NoSigningSecret(RuntimeError):
    """Nothing to sign with: a notification is never sent unsigned, nor signed with an
    empty key (which anyone could forge)."""


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks: `v1,` + base64 HMAC-SHA256 of `id.timestamp.body`."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    if not key:
        raise NoSigningSecret("refusing to sign with an empty key")
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def _retry_after(attempts_so_far: int) -> timedelta | None:
    backoff = get_settings().notify_backoff
    if attempts_so_far >= len(backoff):
        return None
    return timedelta(seconds=backoff[attempts_so_far])


# Opened signing secrets by environment, for seconds: an AES open per delivery is wasted
# work. Keyed by the sealed current secret the lease read too, so a rotation signs with the
# new secret from the next attempt on; the overlap's end is judged at each signature.
_secrets: TtlCache[tuple[str, bytes | None], SigningSecrets] = TtlCache(
    get_settings().psp_cache_seconds
)


def _signing_secrets(environment_id: str) -> SigningSecrets:
    with session_scope() as session:
        return signing_secrets(session, key_ring(), environment_id)


def signature_header(environment: Any, msg_id: str, timestamp: int, body: bytes) -> str:
    """`webhook-signature`: a `v1,` signature per secret in use, space-separated: the
    current one, and during a rotation's overlap the previous one after it."""
    cached = (environment.id, environment.notification_secret_sealed)
    secrets = _secrets.get_or_load(cached, lambda: _signing_secrets(environment.id))
    in_use = secrets.in_use(datetime.now(UTC)) if secrets else []
    if not in_use:
        raise NoSigningSecret(
            f"environment {environment.id} has no notification secret: "
            "`connxt tenants rotate-secret` makes one"
        )
    return " ".join(sign(secret, msg_id, timestamp, body) for secret in in_use)


def _attempt(leased: repo.Leased) -> int:
    """POST the notification once; the merchant's HTTP status."""
    txn = leased.txn
    # A notification about no transaction (reconciliation.completed) carries its own data.
    data = leased.payload if txn.id is None else transaction_view(txn, minor_units(txn.currency))
    payload = {"type": leased.event_type, "timestamp": int(time.time()), "data": data}
    body = orjson.dumps(payload)  # the amount is an orjson.Fragment (transaction_view)
    url = leased.environment.notification_url
    stamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "webhook-id": leased.id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": signature_header(leased.environment, leased.id, stamp, body),
    }
    # The address is checked as the connection is made (workers.merchant_http).
    return _http().post(url, body, headers)


def deliver(notification_id: str, lease_token: str | None = None) -> str:
    """One delivery attempt; what became of the notification (or ``skipped``).
    ``lease_token``: the sweep's claim this delivery was sent for (if it was)."""
    return deliver_many({notification_id: lease_token}).get(notification_id, "skipped")


def deliver_many(wanted: dict[str, str | None]) -> dict[str, str]:
    """One attempt for each notification that is due, side by side: leased in one
    statement, posted on the process's threads, each recorded as it finishes. What became
    of each notification attempted or skipped; those not due are left out.

    ``wanted``: notification id → the sweep's claim its delivery was sent for (or None)."""
    settings = get_settings()
    with session_scope() as session:
        # Leased for longer than an attempt can take (its deadline is the notification
        # timeout): if this worker dies mid-attempt, the sweep delivers it once the lease
        # is over.
        leased = repo.lease_many(session, wanted, settings.notify_timeout_seconds + 5)
        nowhere = [n.id for n in leased.values() if not n.environment.notification_url]
        if nowhere:
            repo.skip(session, nowhere)
    sending = [n for n in leased.values() if n.environment.notification_url]
    records = _Records()

    def attempt(item: Item) -> None:
        notification = item["leased"]
        delivery = _attempted(notification)
        outcome = records.add(delivery)
        if outcome is not None:
            _log_attempt(notification, delivery, outcome)

    errors = run_each(attempt, [{"notification_id": n.id, "leased": n} for n in sending])
    failed = next((error for error in errors if error is not None), None)
    if failed is not None:  # a record not written: its lease ends, and the sweep sends again
        raise failed
    return {**records.outcomes, **dict.fromkeys(nowhere, NotificationStatus.SKIPPED.value)}


class _Records:
    """A batch's attempts, recorded as each finishes: the first to finish writes its own;
    those finishing while a statement is being written go together in the next one."""

    def __init__(self) -> None:
        self.outcomes: dict[str, str] = {}
        self._waiting: list[repo.Delivery] = []
        self._lock = threading.Lock()  # the waiting list
        self._writing = threading.Lock()  # one statement at a time

    def add(self, delivery: repo.Delivery) -> str | None:
        """Record ``delivery`` (with whatever else is waiting); what became of its
        notification (None: the statement that carried it failed, in another thread)."""
        with self._lock:
            self._waiting.append(delivery)
        with self._writing:
            with self._lock:
                batch, self._waiting = self._waiting, []
            if batch:
                with session_scope() as session:
                    self.outcomes.update(repo.record_deliveries(session, batch))
        return self.outcomes.get(delivery.notification_id)


def _attempted(leased: repo.Leased) -> repo.Delivery:
    """POST once and say how it went; whatever goes wrong is a failed attempt."""
    status_code, error, started = None, None, time.perf_counter()
    try:
        status_code = _attempt(leased)
    except UnsafeUrl as exc:
        error = f"refused URL: {exc}"
    except NoSigningSecret as exc:
        error = str(exc)
    except TransportError as exc:
        error = type(exc).__name__
    except Exception as exc:  # any failure is a failed attempt, see above
        error = type(exc).__name__
        log.exception("notify.attempt_error", notification_id=leased.id, error=error)
    elapsed = (time.perf_counter() - started) * 1000
    delivered = status_code is not None and 200 <= status_code < 300
    retry = None if delivered else _retry_after(leased.attempts)
    return repo.Delivery(
        leased.id,
        leased.lease,
        leased.environment.notification_url,
        status_code,
        error,
        elapsed,
        retry,
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
