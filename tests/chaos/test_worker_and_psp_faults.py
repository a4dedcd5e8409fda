"""Chaos on one private world: kill -9 workers mid-task, a webhook storm, a PSP outage.

Each test drives the real processes of a private ``World`` (tests/chaos/world.py), checks
the end state in PostgreSQL and at the sandbox PSP, and records its figures
(hit, ended correct, lost, doubled) in tests/chaos/results.json.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.chaos.world import World, record_result
from tests.support.stack import wait_until

pytestmark = pytest.mark.chaos

SETTLED = {"SUCCESS", "FAILED", "REJECTED"}


@pytest.fixture(scope="module")
def world(world_factory) -> World:
    return world_factory("faults")


@pytest.fixture
def fresh(world: World):
    """Sandbox faults off and its memory cleared before and after each test."""
    defaults = {"fail": "none", "delay_ms": 0, "webhook_delay_ms": 0, "merchant_fail": False}
    world.reset_sandbox()
    world.control(**defaults)
    if world.worker_name not in world.stack.procs:
        world.start_worker()
    yield world
    world.control(**defaults)


def _accepted_deposits(world: World, count: int) -> list[str]:
    """``count`` deposits through the whole normal path, each PG_ACCEPTED at the PSP."""
    with world.client() as api:
        ids = []
        for _ in range(count):
            answer = world.post_deposit(api, respond_async=False)
            assert answer.status_code == 200, answer.text
            assert answer.json()["data"]["status"] == "PG_ACCEPTED", answer.text
            ids.append(answer.json()["data"]["txnId"])
    return ids


def _notification_figures(world: World, txn_ids: list[str]) -> dict[str, dict[str, int]]:
    """Per transaction: merchant deliveries received, distinct webhook ids, stored rows."""
    received = Counter()
    distinct: dict[str, set[str]] = {t: set() for t in txn_ids}
    for item in world.merchant_notifications():
        body = item["body"] if isinstance(item["body"], dict) else {}
        txn_id = body.get("data", {}).get("txnId")
        if txn_id in distinct:
            received[txn_id] += 1
            distinct[txn_id].add(item["webhookId"])
    rows = world.notification_rows(txn_ids)
    return {
        t: {"received": received[t], "distinct": len(distinct[t]), "rows": len(rows[t])}
        for t in txn_ids
    }


# -- 5. a thousand copies of one webhook -------------------------------------------------


def test_thousand_copies_of_one_signed_webhook_apply_once(fresh: World):
    world = fresh
    (txn_id,) = _accepted_deposits(world, 1)
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
        lambda: _notification_figures(world, [txn_id])[txn_id]["received"] >= 1,
        timeout=20,
        what="the merchant notification",
    )
    time.sleep(2.5)  # room for a second transition or notification, if one were coming
    steps = world.transitions([txn_id])[txn_id]
    success_steps = steps.count(("PG_ACCEPTED", "SUCCESS"))
    notes = _notification_figures(world, [txn_id])[txn_id]
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
