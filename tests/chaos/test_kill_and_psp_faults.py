"""Chaos on one private world: kill -9 workers mid-task, a webhook storm, a PSP outage.

Each test drives the real processes of a private ``World`` (tests/chaos/world.py), checks
the end state in PostgreSQL and at the sandbox PSP, and records its figures
(hit, ended correct, lost, doubled) in tests/chaos/results.json. The two kill -9 tests run
on each broker, in a world of each (Redis, and a virtual host of the local RabbitMQ): what a
dead worker leaves behind is the broker's to give back.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
import pytest

from tests.chaos.bursts import accepted_deposits, merchant_deliveries
from tests.chaos.world import World, record_result
from tests.support.flows import V2
from tests.support.stack import wait_until

pytestmark = pytest.mark.chaos

SETTLED = {"SUCCESS", "FAILED", "REJECTED"}


@pytest.fixture(scope="module")
def world(world_factory) -> World:
    return world_factory("faults")


@pytest.fixture(scope="module", params=["redis", "rabbitmq"])
def each_broker_world(request, world_factory) -> World:
    """A world on each broker: the module's own for the suite's broker (built only if a
    test of this process asks for it)."""
    from tests.support.testenv import BROKER

    if request.param == BROKER:
        return request.getfixturevalue("world")
    return world_factory(f"faults-{request.param}", broker=request.param)


@pytest.fixture
def fresh(world: World):
    """Sandbox faults off and its memory cleared before and after each test."""
    yield from _freshened(world)


@pytest.fixture
def fresh_on_each_broker(each_broker_world: World):
    yield from _freshened(each_broker_world)


def _freshened(world: World):
    defaults = {"fail": "none", "delay_ms": 0, "webhook_delay_ms": 0, "merchant_fail": False}
    world.reset_sandbox()
    world.control(**defaults)
    if world.worker_name not in world.stack.procs:
        world.start_worker()
    yield world
    world.control(**defaults)


# -- 5. a thousand copies of one webhook -------------------------------------------------


def test_thousand_copies_of_one_signed_webhook_apply_once(fresh: World):
    world = fresh
    (txn_id,) = accepted_deposits(world, 1)
    (payment,) = world.payments(txn_id)
    body, headers = world.signed_completion(txn_id, payment["id"])
    url = world.webhook_url()
    copies, clients = 1000, 50
    codes: Counter = Counter()
    duplicates = Counter()
    lock = threading.Lock()

    def one_client(n: int) -> None:
        with httpx.Client(timeout=20) as client:
            for _ in range(n):
                try:
                    answer = client.post(url, content=body, headers=headers)
                    code = answer.status_code
                    dup = answer.json().get("data", {}).get("duplicate") if code == 200 else None
                except httpx.HTTPError as exc:
                    code, dup = type(exc).__name__, None
                with lock:
                    codes[code] += 1
                    duplicates[dup] += 1

    started = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one_client, [copies // clients] * clients))
    storm_seconds = time.monotonic() - started

    final = world.wait_statuses([txn_id], {"SUCCESS"}, timeout=20)
    wait_until(
        lambda: merchant_deliveries(world, [txn_id])[txn_id]["received"] >= 1,
        timeout=20,
        what="the merchant notification",
    )
    time.sleep(2.5)  # room for a second transition or notification, if one were coming
    steps = world.transitions([txn_id])[txn_id]
    success_steps = steps.count(("PG_ACCEPTED", "SUCCESS"))
    notes = merchant_deliveries(world, [txn_id])[txn_id]
    inbox_rows = world.query("SELECT count(*) FROM inbox WHERE txn_id = %s", txn_id)[0][0]

    figures = {
        "hit": copies,
        "clients": clients,
        "answered_200": codes.get(200, 0),
        "stored_once_answers": duplicates.get(False, 0),
        "inbox_rows": inbox_rows,
        "ended_correct": int(final.get(txn_id) == "SUCCESS" and success_steps == 1),
        "lost": int(final.get(txn_id) != "SUCCESS"),
        "doubled": max(success_steps - 1, 0) + max(notes["received"] - 1, 0),
        "success_transitions": success_steps,
        "merchant_notifications": notes["received"],
        "storm_seconds": round(storm_seconds, 1),
    }
    record_result("duplicate_webhooks_1000x50", **figures)

    assert codes == Counter({200: copies}), (codes, world.logs("api"))
    assert duplicates.get(False, 0) == 1 and inbox_rows == 1, figures
    assert final.get(txn_id) == "SUCCESS", (final, world.logs())
    assert success_steps == 1, steps
    assert notes == {"received": 1, "distinct": 1, "rows": 1}, notes
    assert figures["lost"] == 0 and figures["doubled"] == 0, figures


# -- 1. kill -9 the worker while `transactions.initiate` waits on a slow PSP ---------------


def test_worker_killed_mid_initiation_ends_accepted_with_one_psp_payment(
    fresh_on_each_broker: World,
):
    """Two ways a worker dies inside `transactions.initiate`, in one kill -9:

    * "answer lost": the PSP has made the payment, the worker dies before recording the
      answer. We hold the transaction rows locked in PostgreSQL (as a slow database would)
      so the worker is stuck right after the PSP's answer. Must end PG_ACCEPTED with
      exactly one PSP payment, found by reconciliation (lookup by our reference).
    * "call in flight": the worker dies while its PSP call sleeps at the slow PSP. The
      sandbox drops a request whose client has gone (it reads the body after the delay), so
      the PSP never makes this payment: the consistent ends are FAILED (inquiry: NOT_FOUND)
      with no PSP payment, or (if a re-sent `initiate` gets there first) PG_ACCEPTED with
      exactly one; never a second payment.
    """
    world = fresh_on_each_broker
    # Each PSP call takes 2.5 s (under the 3 s read timeout).
    world.control(delay_ms=2500)
    api = world.client()
    answers = [world.post_deposit(api, respond_async=True) for _ in range(2)]
    assert [a.status_code for a in answers] == [202] * 2, [a.text for a in answers]
    answer_lost = [a.json()["data"]["txnId"] for a in answers]
    assert world.wait_statuses(answer_lost, {"INITIATED"}, timeout=10) == dict.fromkeys(
        answer_lost, "INITIATED"
    )
    rows = psycopg.connect(world.dsn, connect_timeout=5)
    try:
        rows.execute(
            "SELECT id FROM transactions WHERE id = ANY(%s) FOR UPDATE", (answer_lost,)
        ).fetchall()
        wait_until(
            lambda: all(len(world.payments(t)) == 1 for t in answer_lost),
            timeout=20,
            what="the PSP making the first two payments",
        )
        answers = [world.post_deposit(api, respond_async=True) for _ in range(2)]
        assert [a.status_code for a in answers] == [202] * 2, [a.text for a in answers]
        in_flight = [a.json()["data"]["txnId"] for a in answers]
        assert world.wait_statuses(in_flight, {"INITIATED"}, timeout=10) == dict.fromkeys(
            in_flight, "INITIATED"
        )
        time.sleep(1.0)  # well inside the 2.5 s PSP call that follows INITIATED
        txn_ids = answer_lost + in_flight
        at_kill = world.statuses(txn_ids)
        payments_at_kill = world.payments_by_reference()
        killed_at = time.monotonic()
        world.kill_worker()
    finally:
        rows.rollback()
        rows.close()
        api.close()
    world.control(delay_ms=0)  # calls already in flight at the sandbox keep their delay
    hit = sum(1 for s in at_kill.values() if s == "INITIATED")

    world.start_worker()
    deadline = time.monotonic() + 45
    final = world.statuses(txn_ids)
    while time.monotonic() < deadline and any(s == "INITIATED" for s in final.values()):
        time.sleep(0.3)
        final = world.statuses(txn_ids)
    settled_after = time.monotonic() - killed_at
    time.sleep(2)  # a late duplicate initiation or inquiry would show now
    final = world.statuses(txn_ids)
    payments = world.payments_by_reference()
    steps = world.transitions(txn_ids)

    def consistent(txn_id: str) -> bool:
        made = len(payments.get(txn_id, []))
        if txn_id in answer_lost:
            return final.get(txn_id) == "PG_ACCEPTED" and made == 1
        return (final.get(txn_id), made) in (("PG_ACCEPTED", 1), ("FAILED", 0))

    correct = [t for t in txn_ids if consistent(t)]
    lost = [t for t in txn_ids if final.get(t) in (None, "CREATED", "INITIATED")]
    doubled = [
        t
        for t in txn_ids
        if len(payments.get(t, [])) > 1 or any(steps[t].count(step) > 1 for step in set(steps[t]))
    ]
    figures = {
        "hit": hit,
        "ended_correct": len(correct),
        "lost": len(lost),
        "doubled": len(doubled),
        "transactions": len(txn_ids),
        "hit_answer_lost_payment_made": sum(len(payments_at_kill.get(t, [])) for t in answer_lost),
        "hit_create_call_in_flight": sum(
            1 for t in in_flight if not payments_at_kill.get(t) and at_kill.get(t) == "INITIATED"
        ),
        "final_answer_lost": [final.get(t) for t in answer_lost],
        "final_call_in_flight": [final.get(t) for t in in_flight],
        "psp_payments_after": {t: len(payments.get(t, [])) for t in txn_ids},
        "seconds_to_settle_after_kill": round(settled_after, 1),
    }
    record_result(f"kill9_worker_mid_initiation_{world.broker}", **figures)

    diagnosis = (figures, steps, world.logs(world.worker_name, "beat"))
    assert hit == len(txn_ids), ("the kill did not land mid-initiation", at_kill)
    assert figures["hit_answer_lost_payment_made"] == 2, payments_at_kill
    assert figures["hit_create_call_in_flight"] == 2, ("the create calls had finished", at_kill)
    assert not lost and not doubled, diagnosis
    assert len(correct) == len(txn_ids), diagnosis


# -- 2. kill -9 the worker while `callbacks.webhook` runs ---------------------------------


def test_worker_killed_during_webhook_processing_applies_each_once(fresh_on_each_broker: World):
    world = fresh_on_each_broker
    held, burst = 3, 5
    txn_ids = accepted_deposits(world, held + burst)
    held_ids, burst_ids = txn_ids[:held], txn_ids[held:]
    payment_of = {t: world.payments(t)[0]["id"] for t in txn_ids}
    url = world.webhook_url()
    worker = world.worker_name

    import redis

    broker = redis.Redis.from_url(world.redis.url(0))
    # Hold the transaction lock of the first three, as another worker would: their webhook
    # tasks keep re-scheduling themselves (acks_late: the messages stay with the worker).
    for txn_id in held_ids:
        assert broker.set(f"lock:txn:{txn_id}", "chaos-test", nx=True, px=60_000)

    def post(txn_id: str) -> int:
        body, headers = world.signed_completion(txn_id, payment_of[txn_id])
        return httpx.post(url, content=body, headers=headers, timeout=15).status_code

    try:
        assert [post(t) for t in held_ids] == [200] * held
        wait_until(
            lambda: len(world.log_lines(worker, "callbacks.webhook", "retry")) >= held,
            timeout=15,
            what="webhook tasks re-scheduling on the held lock",
        )
        # Then a burst for the others, and the kill right behind it: some of those tasks
        # are queued, some running, some done.
        with ThreadPoolExecutor(burst) as pool:
            codes = list(pool.map(post, burst_ids))
        world.kill_worker()
        killed_at = time.monotonic()
    finally:
        for txn_id in held_ids:
            broker.delete(f"lock:txn:{txn_id}")
        broker.close()
    assert codes == [200] * burst
    unprocessed = world.query(
        "SELECT count(*) FROM inbox WHERE txn_id = ANY(%s) AND processed_at IS NULL", txn_ids
    )[0][0]
    at_kill = world.statuses(txn_ids)

    world.start_worker()
    final = world.wait_statuses(txn_ids, {"SUCCESS"}, timeout=45)
    settled_after = time.monotonic() - killed_at

    def delivered_all() -> bool:
        notes = merchant_deliveries(world, txn_ids)
        return all(n["received"] >= 1 for n in notes.values())

    waited_for_redelivery = []
    try:
        wait_until(delivered_all, timeout=30, what="merchant notifications")
    except TimeoutError:
        if world.broker != "redis":
            raise  # RabbitMQ hands a dead worker's messages back at once: nothing to wait for
        # A `notify.merchant` the dead worker had reserved stays in Celery's `unacked` hash
        # until the visibility timeout (60 s) gives it back: late, not lost. Wait for it.
        missing = [t for t, n in merchant_deliveries(world, txn_ids).items() if not n["received"]]
        reserved = world.unacked_tasks()
        waited_for_redelivery = [
            t
            for t in missing
            if any(name == "notify.merchant" and t in kw for name, kw in reserved)
        ]
        if waited_for_redelivery:
            try:
                wait_until(delivered_all, timeout=80, what="redelivered notifications")
            except TimeoutError:
                pass  # counted below as lost
    time.sleep(3)  # a second apply or notification would show now
    final = world.statuses(txn_ids)
    steps = world.transitions(txn_ids)
    notes = merchant_deliveries(world, txn_ids)

    applied_once = {t: steps[t].count(("PG_ACCEPTED", "SUCCESS")) for t in txn_ids}
    lost = [t for t in txn_ids if final.get(t) != "SUCCESS" or notes[t]["received"] == 0]
    doubled = [
        t
        for t in txn_ids
        if applied_once[t] > 1 or notes[t]["distinct"] > 1 or notes[t]["rows"] > 1
    ]
    redelivered = [t for t in txn_ids if notes[t]["received"] > notes[t]["distinct"]]
    correct = [
        t
        for t in txn_ids
        if final.get(t) == "SUCCESS"
        and applied_once[t] == 1
        and notes[t]["received"] >= 1
        and notes[t]["distinct"] == notes[t]["rows"] == 1
    ]
    figures = {
        "hit": unprocessed,
        "webhooks": len(txn_ids),
        "not_yet_success_at_kill": sum(1 for s in at_kill.values() if s != "SUCCESS"),
        "ended_correct": len(correct),
        "lost": len(lost),
        "doubled": len(doubled),
        "merchant_redelivered_same_id": len(redelivered),
        "notifications_late_after_visibility_timeout": len(waited_for_redelivery),
        "seconds_to_settle_after_kill": round(settled_after, 1),
    }
    record_result(f"kill9_worker_mid_webhook_{world.broker}", **figures)

    diagnosis = (figures, steps, notes, world.logs(world.worker_name, "beat"))
    assert unprocessed >= held, ("the kill did not land mid-webhook", figures)
    assert not lost and not doubled, diagnosis
    assert len(correct) == len(txn_ids), diagnosis


# -- 6. the PSP fails (5xx, then timeouts) for a while, then recovers ----------------------


def _psp_processed(world: World, txn_id: str) -> httpx.Response:
    """What the PSP does with our create for ``txn_id`` when it processes it but we never
    hear back: the very create the connector sends (same API key, our reference, our id as
    the idempotency key), made at the sandbox by a patient client. The sandbox cannot lose
    an answer by itself: it drops a request whose client has gone."""
    from connxt.settings import get_settings

    base = world.stack.api_url.rstrip("/") + V2 + "/external"
    body = {
        "paymentType": "DEPOSIT",
        "amount": "200.00",
        "currency": "USD",
        "referenceId": txn_id,
        "returnUrl": f"{base}/redirects/{txn_id}",
        "webhookUrl": f"{base}/webhooks/{world.psp['id']}",
    }
    assert get_settings().psp_read_timeout < 5  # our worker gives up before the PSP answers
    return world.sandbox(
        "POST",
        "/paymaxis/api/v1/payments",
        json=body,
        headers={
            "Authorization": f"Bearer {world.credential['apiKey']}",
            "Idempotency-Key": txn_id,
        },
    )


def test_psp_outage_then_recovery_settles_everything_through_inquiries(fresh: World):
    world = fresh
    per_group = 3
    worker = world.worker_name

    # Phase 1, the PSP answers 503 to every call and creates nothing. Each deposit answers
    # 202 INITIATED (a 5xx is unknown, never failed), and reconciliation's inquiries keep
    # failing meanwhile.
    world.control(fail="5xx", delay_ms=0)
    with world.client() as api:
        answers = [world.post_deposit(api, respond_async=False) for _ in range(per_group)]
    assert [a.status_code for a in answers] == [202] * per_group, [a.text for a in answers]
    assert {a.json()["data"]["status"] for a in answers} == {"INITIATED"}
    five_xx = [a.json()["data"]["txnId"] for a in answers]
    time.sleep(3)

    # Phase 2, the PSP hangs: every call takes 5 s, past our 3 s read timeout, so every
    # initiation call and inquiry times out. For half of the deposits made now, the PSP did
    # process a create whose answer we never got ("seen"); the other half it never saw.
    world.control(fail="none", delay_ms=5000)
    with world.client() as api:
        answers = [world.post_deposit(api, respond_async=True) for _ in range(2 * per_group)]
    assert [a.status_code for a in answers] == [202] * (2 * per_group)
    hung = [a.json()["data"]["txnId"] for a in answers]
    seen, timed_out = hung[:per_group], hung[per_group:]
    with ThreadPoolExecutor(per_group) as pool:
        made = list(pool.map(lambda t: _psp_processed(world, t).status_code, seen))
    assert made == [200] * per_group
    wait_until(
        lambda: all(
            any(f"txn_id={t}" in line for line in world.log_lines(worker, "ReadTimeout"))
            for t in hung
        ),
        timeout=25,
        what="every initiation call of phase 2 timing out",
    )
    all_ids = five_xx + seen + timed_out
    during = world.statuses(all_ids)
    hit = sum(1 for s in during.values() if s == "INITIATED")

    # Recovery: reconciliation's inquiries settle everything.
    recovered_at = time.monotonic()
    world.control(fail="none", delay_ms=0)
    deadline = time.monotonic() + 40
    final = world.statuses(all_ids)
    while time.monotonic() < deadline and any(s == "INITIATED" for s in final.values()):
        time.sleep(0.5)
        final = world.statuses(all_ids)
    settled_after = time.monotonic() - recovered_at
    time.sleep(2)
    final = world.statuses(all_ids)
    payments = world.payments_by_reference()
    steps = world.transitions(all_ids)

    stuck = [t for t in all_ids if final.get(t) in (None, "CREATED", "INITIATED")]
    doubled = [
        t
        for t in all_ids
        if len(payments.get(t, [])) > 1 or any(steps[t].count(step) > 1 for step in set(steps[t]))
    ]

    def consistent(txn_id: str) -> bool:
        made = len(payments.get(txn_id, []))
        if txn_id in seen:
            return final.get(txn_id) == "PG_ACCEPTED" and made == 1
        # Never seen by the PSP: an inquiry after recovery finds nothing (FAILED, no payment)
        # unless a second `initiate` for it (the sweep re-sends one for a transaction left
        # CREATED in a queue backlog; it waits on the lock, then runs) reaches the PSP after
        # recovery and starts it properly: PG_ACCEPTED with exactly one payment.
        return (final.get(txn_id), made) in (("FAILED", 0), ("PG_ACCEPTED", 1))

    correct = [t for t in all_ids if consistent(t)]
    never_seen = five_xx + timed_out
    figures = {
        "hit": hit,
        "transactions": len(all_ids),
        "hit_5xx": len(five_xx),
        "hit_timeout_psp_saw_create": len(seen),
        "hit_timeout_psp_never_saw": len(timed_out),
        "never_seen_failed_not_found": sum(1 for t in never_seen if final.get(t) == "FAILED"),
        "never_seen_reinitiated_after_recovery": sum(
            1 for t in never_seen if final.get(t) == "PG_ACCEPTED"
        ),
        "seen_pg_accepted": sum(1 for t in seen if final.get(t) == "PG_ACCEPTED"),
        "ended_correct": len(correct),
        "lost": len(stuck),
        "doubled": len(doubled),
        "wrong_final_state": len(all_ids) - len(correct) - len(stuck),
        "seconds_to_settle_after_recovery": round(settled_after, 1),
        "final_statuses": dict(Counter(final.values())),
    }
    record_result("psp_5xx_then_timeouts_then_recovery", **figures)

    diagnosis = (figures, final, steps, world.logs(worker, "beat"))
    assert hit == len(all_ids), ("the outage did not leave them INITIATED", during)
    assert not stuck and not doubled, diagnosis
    assert len(correct) == len(all_ids), diagnosis
