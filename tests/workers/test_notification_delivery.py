"""Merchant notifications delivered in-process (workers.notify.deliver_many): leased and
recorded in the rolled-back transaction, POSTed to a receiver on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from state_machine import Status
from storage import notifications as repo
from storage.db import session_scope
from storage.models import NotificationStatus
from tests.support.merchant import Receiver, delivery_record
from tests.support.rollback import Ledger
from workers.notify import deliver_many

pytestmark = pytest.mark.usefixtures("rolled_back")


@pytest.fixture
def receiver(request) -> Iterator[Receiver]:
    server = Receiver(getattr(request, "param", 204))
    yield server
    server.close()


def test_a_due_notification_is_delivered_once_and_recorded(receiver):
    ledger = Ledger.open()
    txn_id = ledger.deposit(Status.SUCCESS)
    notification_id = ledger.notification(txn_id, receiver.url)
    assert deliver_many({notification_id: None}) == {notification_id: "DELIVERED"}
    assert [webhook_id for webhook_id, _ in receiver.seen] == [notification_id]
    assert txn_id.encode() in receiver.seen[0][1]
    notification, made = delivery_record(notification_id)
    assert notification.status is NotificationStatus.DELIVERED
    assert [a.status_code for a in made] == [204]
    assert deliver_many({notification_id: None}) == {}  # not due any more: nothing sent
    assert len(receiver.seen) == 1


@pytest.mark.parametrize("receiver", [503], indirect=True)
def test_a_refused_notification_is_tried_again_later_not_now(receiver):
    ledger = Ledger.open()
    notification_id = ledger.notification(ledger.deposit(Status.SUCCESS), receiver.url)
    started = datetime.now(UTC)
    assert deliver_many({notification_id: None}) == {notification_id: "PENDING"}
    notification, made = delivery_record(notification_id)
    assert [a.status_code for a in made] == [503]
    assert notification.attempts == 1 and notification.next_attempt_at > started
    assert deliver_many({notification_id: None}) == {}  # its backoff holds
    assert len(receiver.seen) == 1


def test_an_environment_without_a_url_skips_its_notification(receiver):
    ledger = Ledger.open()
    notification_id = ledger.notification(ledger.deposit(Status.SUCCESS), None)
    assert deliver_many({notification_id: None}) == {notification_id: "SKIPPED"}
    assert delivery_record(notification_id)[0].status is NotificationStatus.SKIPPED
    assert receiver.seen == []


def test_a_late_failure_never_overwrites_a_delivery(receiver):
    """An attempt outlived its lease; the notification was leased again and delivered. The
    first attempt's failure, recorded late, is kept as an attempt and changes nothing."""
    ledger = Ledger.open()
    notification_id = ledger.notification(ledger.deposit(Status.SUCCESS), receiver.url)
    with session_scope() as session:
        # A lease that is over at once: the notification is due again straight away.
        first = repo.lease_many(session, {notification_id: None}, seconds=0)[notification_id]
    assert deliver_many({notification_id: None}) == {notification_id: "DELIVERED"}

    late = repo.Delivery(
        notification_id,
        first.lease,
        receiver.url,
        None,
        "DeadlineExceeded",
        10_000.0,
        timedelta(seconds=10),
    )
    with session_scope() as session:
        assert repo.record_deliveries(session, [late]) == {notification_id: repo.LEASE_LOST}
    notification, made = delivery_record(notification_id)
    assert notification.status is NotificationStatus.DELIVERED
    assert notification.attempts == 1 and notification.next_attempt_at is None
    assert sorted((a.status_code or 0, a.error or "") for a in made) == [
        (0, "DeadlineExceeded"),
        (204, ""),
    ]
