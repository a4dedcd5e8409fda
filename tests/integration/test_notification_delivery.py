"""Merchant notification delivery keeps to its backoff, whatever happens.

Deliveries are called as the worker calls them (``workers.notify.deliver``), against the
real database and a merchant's receiver on loopback; several copies of one delivery run at
once, as redelivered or duplicated messages would.
"""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from connxt.ids import random_id
from connxt.settings import get_settings
from state_machine import Status
from storage import notifications as repo
from storage.db import session_scope
from storage.models import Environment, Notification
from tests.support.flows import create_psp, stored_deposit, target
from tests.support.merchant import Receiver, delivery_record
from tests.support.rollback import Ledger
from tests.support.servers import RawServer
from tests.support.stack import wait_until
from workers.notify import deliver, deliver_many


@pytest.fixture
def merchant():
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture
def pending(client, make_tenant, merchant):
    """A notification due now for a stored deposit, to the merchant's receiver."""
    issued, headers = make_tenant("notified", "live")
    flow_target = target(client, headers, "Paymaxis")
    psp = create_psp(client, headers, flow_target, {"apiKey": "pmx_notify"})
    txn_id = stored_deposit(client, headers, psp, flow_target)
    with session_scope() as session:
        session.get(Environment, issued.environment_id).notification_url = merchant.url
        notification = Notification(
            id=random_id("ntf"),
            txn_id=txn_id,
            environment_id=issued.environment_id,
            event_type="transaction.success",
            status="PENDING",
            next_attempt_at=datetime.now(UTC),
        )
        session.add(notification)
    return notification.id


def first_backoff() -> timedelta:
    return timedelta(seconds=get_settings().notify_backoff[0])


def one_attempt_goes_out(pending: str, merchant: Receiver, attempts: int) -> None:
    """Eight copies of a delivery at once make one attempt, the attempts-th. A stack's beat
    left running by earlier tests may claim the notification first (its notify sweep sees
    every due row): then its worker makes that one attempt, and every copy here finds the
    notification leased."""
    with ThreadPoolExecutor(8) as pool:
        made_here = sorted(pool.map(deliver, [pending] * 8)).count("PENDING")
    assert made_here <= 1
    wait_until(
        lambda: delivery_record(pending)[0].attempts >= attempts, timeout=20, what="the attempt"
    )
    time.sleep(0.5)  # a second attempt in this step would come now, not 60 s from now
    notification, made = delivery_record(pending)
    assert notification.attempts == len(made) == attempts
    assert merchant.hits == attempts


def test_duplicate_deliveries_cannot_use_up_the_backoff(pending, merchant):
    started = datetime.now(UTC)
    one_attempt_goes_out(pending, merchant, 1)
    for _ in range(5):  # late copies of the same message
        assert deliver(pending) == "skipped"
    assert merchant.hits == 1
    notification, attempts = delivery_record(pending)
    assert notification.attempts == len(attempts) == 1
    assert notification.next_attempt_at >= started + first_backoff()

    # Once the backoff has passed, the next step of it goes out, once.
    time.sleep((notification.next_attempt_at - datetime.now(UTC)).total_seconds() + 0.2)
    one_attempt_goes_out(pending, merchant, 2)


def test_the_sweep_leases_what_it_claims(pending, merchant):
    with session_scope() as session:
        token, claimed = repo.claim_due(session, seconds=60)
    assert claimed == [pending]
    with session_scope() as session:
        assert repo.claim_due(session, seconds=60)[1] == []  # the next sweep leaves it

    assert deliver(pending) == "skipped"  # a delivery of its own: not due, not its claim
    assert deliver(pending, "someone-elses") == "skipped"
    assert deliver(pending, token) == "PENDING"  # the delivery the sweep sent
    assert deliver(pending, token) == "skipped"  # a copy of that message: the claim is spent
    assert merchant.hits == 1
    assert delivery_record(pending)[0].attempts == 1


def _unopenable_secret(notification_id: str, merchant: Receiver) -> None:
    with session_scope() as session:
        environment = session.get(
            Environment, session.get(Notification, notification_id).environment_id
        )
        environment.notification_secret_sealed = b"\0" * len(environment.notification_secret_sealed)


def _url(url: str):
    def set_url(notification_id: str, _merchant: Receiver) -> None:
        with session_scope() as session:
            notification = session.get(Notification, notification_id)
            session.get(Environment, notification.environment_id).notification_url = url

    return set_url


def _slow_merchant(_notification_id: str, merchant: Receiver) -> None:
    merchant.delay = get_settings().notify_timeout_seconds + 1


@pytest.mark.parametrize(
    ("break_it", "error"),
    [
        (_unopenable_secret, "SecretUnreadable"),
        (_url("http://a..b/hooks"), "UnicodeError"),  # a host name the IDNA codec refuses
        (_url("http://no-such-merchant.invalid/hooks"), "ConnectError"),  # DNS
        (_slow_merchant, "DeadlineExceeded"),  # the time limit on the attempt
    ],
    ids=["secret-cannot-be-opened", "url-the-client-refuses", "dns", "time-limit"],
)
def test_any_failure_is_a_failed_attempt_with_the_next_one_scheduled(
    pending, merchant, break_it, error
):
    break_it(pending, merchant)
    started = datetime.now(UTC)
    assert deliver(pending) == "PENDING"
    notification, attempts = delivery_record(pending)
    assert [a.error for a in attempts] == [error]
    assert attempts[0].status_code is None
    assert notification.attempts == 1
    assert notification.next_attempt_at >= started + first_backoff()
    assert deliver(pending) == "skipped"  # and nothing more before its time


def another_notification(pending: str, event_type: str) -> str:
    """A second notification due now, for the same transaction and receiver."""
    with session_scope() as session:
        first = session.get(Notification, pending)
        notification = Notification(
            id=random_id("ntf"),
            txn_id=first.txn_id,
            environment_id=first.environment_id,
            event_type=event_type,
            status="PENDING",
            next_attempt_at=datetime.now(UTC),
        )
        session.add(notification)
    return notification.id


def test_a_batch_makes_one_attempt_per_notification_however_many_copies_run(pending, merchant):
    merchant.status = 200
    ids = [
        pending,
        another_notification(pending, "transaction.review"),
        another_notification(pending, "transaction.late_success"),
    ]
    wanted = dict.fromkeys(ids)
    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(deliver_many, [wanted] * 4))

    # Each notification went out once, whichever copy (or a running stack's sweep) sent it.
    made_here = [n for outcome in outcomes for n, status in outcome.items() if status]
    assert len(made_here) == len(set(made_here)) <= len(ids)
    assert all(status == "DELIVERED" for o in outcomes for status in o.values())
    wait_until(lambda: merchant.hits >= len(ids), timeout=20, what="every notification")
    time.sleep(0.5)
    assert merchant.hits == len(ids)
    for notification_id in ids:
        notification, attempts = delivery_record(notification_id)
        assert (notification.status, notification.attempts, len(attempts)) == ("DELIVERED", 1, 1)
        assert attempts[0].status_code == 200
    assert deliver_many(wanted) == {}  # delivered: nothing is due


def test_a_notification_with_nowhere_to_go_is_skipped(pending, merchant):
    _url("")(pending, merchant)
    assert deliver_many({pending: None}) == {pending: "SKIPPED"}
    assert delivery_record(pending)[0].status == "SKIPPED"
    assert merchant.hits == 0


def test_a_connection_dropped_under_the_notification_is_tried_again_at_once(pending, merchant):
    merchant.status, merchant.drops = 200, 1
    assert deliver(pending) == "DELIVERED"
    assert merchant.hits == 2  # the same notification, sent again on a new connection
    notification, attempts = delivery_record(pending)
    assert notification.attempts == len(attempts) == 1


def test_a_merchant_that_keeps_dropping_is_a_failed_attempt(pending, merchant):
    merchant.drops = 5
    assert deliver(pending) == "PENDING"
    assert merchant.hits == 2  # once more at once, then the backoff
    (attempt,) = delivery_record(pending)[1]
    assert attempt.status_code is None and attempt.error


class SlowLoris:
    """A merchant that takes the request, then answers one byte at a time, each within the
    read timeout of the one before (so no read ever times out), for as long as it is let."""

    def __init__(self, pace: float):
        self.pace = pace
        self.bytes_sent = 0
        self.server = RawServer(self._serve)
        self.url = f"http://127.0.0.1:{self.server.port}/hooks"

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.recv(65536)  # the notification (small: one read on loopback)
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"." * 100_000:
                conn.sendall(bytes([byte]))
                self.bytes_sent += 1
                time.sleep(self.pace)
        except OSError:
            return  # the client hung up (or the test is over)


def _claimed_notifications(urls: list[str], token: str) -> list[str]:
    """A due notification per URL, each of a tenant of its own, claimed with ``token`` as
    the sweep claims them (so a running stack's own sweep leaves them alone)."""
    ids = []
    for url in urls:
        ledger = Ledger.open()
        txn_id = ledger.deposit(Status.SUCCESS)
        with session_scope() as session:
            session.get(Environment, ledger.environment_id).notification_url = url
            notification = Notification(
                id=random_id("ntf"),
                txn_id=txn_id,
                environment_id=ledger.environment_id,
                event_type="transaction.success",
                status="PENDING",
                next_attempt_at=datetime.now(UTC) + timedelta(hours=1),
                lease_token=token,
            )
            session.add(notification)
        ids.append(notification.id)
    return ids


def test_a_slow_loris_merchant_delays_no_other_merchants_record(db, merchant):
    """63 healthy merchants and one that trickles its answer, in one batch: each healthy
    notification is delivered once and recorded at once, well within its lease; the slow
    one's attempt ends at its deadline (a read timeout alone never would)."""
    settings = get_settings()
    deadline = settings.notify_timeout_seconds
    lease = deadline + 5  # workers.notify.deliver_many
    merchant.status = 204
    loris = SlowLoris(pace=deadline / 2)
    token = "slow-loris-test"
    healthy = _claimed_notifications([merchant.url] * 63, token)
    (slow,) = _claimed_notifications([loris.url], token)
    started = time.monotonic()
    batch = threading.Thread(
        target=deliver_many, args=(dict.fromkeys([*healthy, slow], token),), daemon=True
    )
    batch.start()
    try:

        def all_recorded() -> bool:
            with session_scope() as session:
                delivered = session.scalar(
                    select(func.count())
                    .select_from(Notification)
                    .where(Notification.id.in_(healthy), Notification.status == "DELIVERED")
                )
            return delivered == len(healthy)

        wait_until(all_recorded, timeout=lease, interval=0.05, what="the healthy records")
        recorded_after = time.monotonic() - started
        batch.join(timeout=deadline + 3)
        assert not batch.is_alive(), "the slow merchant's attempt outlived its deadline"
        ended_after = time.monotonic() - started
    finally:
        loris.server.close()

    # Every healthy merchant got its notification once, recorded well within the lease
    # (before the slow one's deadline, even).
    assert sorted(webhook_id for webhook_id, _ in merchant.seen) == sorted(healthy)
    assert recorded_after < deadline
    for notification_id in healthy:
        notification, attempts = delivery_record(notification_id)
        assert (notification.status, notification.attempts, len(attempts)) == ("DELIVERED", 1, 1)
    # The slow one's attempt ended at its deadline, with bytes still coming.
    notification, (attempt,) = delivery_record(slow)
    assert notification.status == "PENDING" and notification.attempts == 1
    assert attempt.error == "DeadlineExceeded" and attempt.status_code is None
    assert deadline * 1000 <= attempt.elapsed_ms < (deadline + 1) * 1000
    assert ended_after < deadline + 2
    assert 0 < loris.bytes_sent < 100
