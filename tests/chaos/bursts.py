"""Bursts of traffic across a fault, and the accounting of how each request ended."""

from __future__ import annotations

import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.chaos.world import World, is_envelope_error
from tests.support.flows import V2, reference_payload, transaction_body


@dataclass
class Request:
    """One request of a burst: what was sent, when, and how it was answered."""

    kind: str  # "deposit" | "webhook"
    key: str  # the deposit's order id (also its Idempotency-Key), or the webhook's txn id
    started: float  # seconds since the burst began
    elapsed: float = 0.0
    status: int | None = None
    error: str | None = None  # the client's exception (a timeout is a hang)
    envelope: bool = False
    txn_id: str | None = None
    respond_async: bool = False
    retries: list[int | str] = field(default_factory=list)  # the merchant's retries, if refused
    committed_before_retry: bool = False  # refused, yet its transaction was stored
    sent: dict[str, Any] = field(default_factory=dict, repr=False)  # headers and body

    @property
    def accepted(self) -> bool:
        return self.status in (200, 202)


def accepted_deposits(world: World, count: int) -> list[str]:
    """``count`` deposits through the whole normal path, each PG_ACCEPTED at the PSP."""
    with world.client() as api:
        ids = []
        for _ in range(count):
            answer = world.post_deposit(api, respond_async=False)
            assert answer.status_code == 200, answer.text
            assert answer.json()["data"]["status"] == "PG_ACCEPTED", answer.text
            ids.append(answer.json()["data"]["txnId"])
    return ids


def run_burst(
    world: World,
    *,
    seconds: float,
    fault_at: float,
    fault,
    deposit_clients: int = 3,
    webhook_txns: list[str] | None = None,
    client_timeout: float = 20.0,
    webhooks_until: float | None = None,
) -> tuple[list[Request], dict[str, float]]:
    """Deposits from ``deposit_clients`` loops (alternately waiting for the initiation and
    `Prefer: respond-async`) and one signed COMPLETED webhook per ``webhook_txns`` entry,
    spread over ``seconds`` (or its first ``webhooks_until``); ``fault()`` runs in its own
    thread at ``fault_at``. Every request has a bounded client timeout, so a hang shows as
    an error, never as a stuck test. Returns the requests and the fault's own timings."""
    records: list[Request] = []
    lock = threading.Lock()
    began = time.monotonic()
    stop_at = began + seconds
    timings: dict[str, float] = {}
    payment_of = {t: world.payments(t)[0]["id"] for t in webhook_txns or []}

    def send(record: Request, call) -> None:
        t0 = time.monotonic()
        try:
            answer = call()
            record.status = answer.status_code
            record.envelope = answer.status_code < 400 or is_envelope_error(answer)
            if record.accepted and record.kind == "deposit":
                record.txn_id = answer.json()["data"]["txnId"]
        except httpx.HTTPError as exc:
            record.error = type(exc).__name__
        record.elapsed = time.monotonic() - t0
        with lock:
            records.append(record)

    def deposits(index: int) -> None:
        with world.client(timeout=client_timeout) as api:
            n = 0
            while time.monotonic() < stop_at:
                n += 1
                order_id = f"chaos-{index}-{n}-{secrets.token_hex(3)}"
                # A careful merchant: one Idempotency-Key per order, so a refused request
                # can be retried safely (see retry_refused).
                headers = {**world.headers, "Idempotency-Key": order_id}
                if n % 2 == 0:
                    headers["Prefer"] = "respond-async"
                body = transaction_body(
                    world.psp, world.flow_target, payload=reference_payload(order_id)
                )
                record = Request("deposit", order_id, time.monotonic() - began)
                record.respond_async = n % 2 == 0
                record.sent = {"headers": headers, "json": body}
                send(
                    record,
                    lambda h=headers, b=body: api.post(f"{V2}/transactions", headers=h, json=b),
                )
                time.sleep(0.05)

    def webhooks() -> None:
        targets = list(webhook_txns or [])
        if not targets:
            return
        gap = (webhooks_until or seconds) / (len(targets) + 1)
        url = world.webhook_url()
        with httpx.Client(timeout=client_timeout) as client:
            for i, txn_id in enumerate(targets, start=1):
                pause = began + i * gap - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                body, headers = world.signed_completion(txn_id, payment_of[txn_id])
                record = Request("webhook", txn_id, time.monotonic() - began)
                send(record, lambda b=body, h=headers: client.post(url, content=b, headers=h))

    def run_fault() -> None:
        pause = began + fault_at - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        timings["fault_started"] = time.monotonic() - began
        fault(timings, began)
        timings["fault_ended"] = time.monotonic() - began

    threads = [threading.Thread(target=deposits, args=(i,)) for i in range(deposit_clients)]
    threads += [threading.Thread(target=webhooks), threading.Thread(target=run_fault)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 3 * client_timeout + 60)
    return sorted(records, key=lambda r: r.started), timings


def burst_summary(records: list[Request]) -> dict[str, Any]:
    def of(kind: str) -> list[Request]:
        return [r for r in records if r.kind == kind]

    refused = [r for r in records if r.status is not None and not r.accepted]
    return {
        "deposits_sent": len(of("deposit")),
        "deposits_accepted": sum(1 for r in of("deposit") if r.accepted),
        "webhooks_sent": len(of("webhook")),
        "webhooks_accepted": sum(1 for r in of("webhook") if r.accepted),
        "refused_by_status": dict(Counter(str(r.status) for r in refused)),
        "refused_outside_envelope": sum(1 for r in refused if not r.envelope),
        "client_errors_or_hangs": dict(Counter(r.error for r in records if r.error)),
        "slowest_answer_s": round(max((r.elapsed for r in records), default=0.0), 2),
        "slowest_refusal_s": round(max((r.elapsed for r in refused), default=0.0), 2),
    }


def merchant_deliveries(world: World, txn_ids: list[str]) -> dict[str, dict[str, int]]:
    """Per transaction: merchant deliveries received, distinct webhook ids, stored rows."""
    received: Counter = Counter()
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


def retry_refused(world: World, records: list[Request], attempts: int = 4) -> None:
    """What a merchant does with a refused deposit once the fault is over: send the same
    request with the same Idempotency-Key again (409 "still in progress" and 5xx are
    retried after a pause). The first accepted or final answer is kept in ``retries``."""
    refused = [r for r in records if r.kind == "deposit" and not r.accepted]
    stored = {
        row[0]
        for row in world.query(
            "SELECT order_id FROM transactions WHERE order_id = ANY(%s)", [r.key for r in refused]
        )
    }
    with world.client(timeout=20) as api:
        for record in refused:
            record.committed_before_retry = record.key in stored
            for attempt in range(attempts):
                try:
                    answer = api.post(f"{V2}/transactions", **record.sent)
                    code: int | str = answer.status_code
                except httpx.HTTPError as exc:
                    code, answer = type(exc).__name__, None
                record.retries.append(code)
                if answer is not None and answer.status_code in (200, 202):
                    record.txn_id = answer.json()["data"]["txnId"]
                    break
                if code not in (409,) and not (isinstance(code, int) and code >= 500):
                    break
                if attempt < attempts - 1:
                    time.sleep(1)


def settle_burst(
    world: World, records: list[Request], webhook_txns: list[str], timeout: float
) -> dict[str, Any]:
    """Wait (bounded) for every accepted request to reach its end state, then count.

    Deposits are counted per order (each order id is one merchant payment, sent once and,
    if refused, retried with the same Idempotency-Key): an order must have at most one
    transaction; one that has a transaction must end PG_ACCEPTED with exactly one PSP
    payment, whether its answer was a 200/202 or a refusal (committed before the refusal:
    reported as ``refused_but_committed``). A transaction whose COMPLETED webhook was
    accepted must end SUCCESS with one PG_ACCEPTED→SUCCESS step and one merchant
    notification (re-deliveries under the same webhook-id are at-least-once, reported);
    one whose webhook was refused stays PG_ACCEPTED.
    """
    deposits = [r for r in records if r.kind == "deposit"]
    orders = [r.key for r in deposits]
    by_order: dict[str, list[str]] = {o: [] for o in orders}
    for txn_id, order_id in world.query(
        "SELECT id, order_id FROM transactions WHERE order_id = ANY(%s)", orders
    ):
        by_order[order_id].append(txn_id)
    accepted_first = [r for r in deposits if r.accepted]
    refused_first = [r for r in deposits if not r.accepted]
    lost_accepted = [r.key for r in accepted_first if r.txn_id not in by_order[r.key]]
    refused_but_committed = [r for r in refused_first if r.committed_before_retry]
    doubled_orders = [o for o, ids in by_order.items() if len(ids) > 1]

    webhook_ok = {r.key for r in records if r.kind == "webhook" and r.accepted}
    expected = {t: "PG_ACCEPTED" for ids in by_order.values() for t in ids}
    expected |= {t: ("SUCCESS" if t in webhook_ok else "PG_ACCEPTED") for t in webhook_txns}
    all_ids = list(expected)

    started = time.monotonic()
    deadline = started + timeout
    final = world.statuses(all_ids)
    while time.monotonic() < deadline and any(final.get(t) != expected[t] for t in all_ids):
        time.sleep(0.5)
        final = world.statuses(all_ids)
    settle_seconds = time.monotonic() - started

    # Merchant notifications follow within seconds of the transition (the test backoff is
    # 1-3 s): 20 s more is plenty, and bounds the wait when one was lost.
    successes = [t for t in all_ids if expected[t] == "SUCCESS"]
    notify_deadline = min(deadline, time.monotonic() + 20)
    while time.monotonic() < notify_deadline and any(
        n["received"] == 0 for n in merchant_deliveries(world, successes).values()
    ):
        time.sleep(0.5)
    time.sleep(2)  # a second apply or notification would show now
    final = world.statuses(all_ids)
    payments: dict[str, list] = {}
    for payment in world.payments():
        payments.setdefault(payment["referenceId"], []).append(payment)
    steps = world.transitions(all_ids)
    notes = merchant_deliveries(world, successes)

    def correct(txn_id: str) -> bool:
        if final.get(txn_id) != expected[txn_id] or len(payments.get(txn_id, [])) != 1:
            return False
        if expected[txn_id] == "SUCCESS":
            note = notes[txn_id]
            once = note["received"] >= 1 and note["distinct"] == 1 and note["rows"] == 1
            return steps[txn_id].count(("PG_ACCEPTED", "SUCCESS")) == 1 and once
        return True

    lost = [
        t
        for t in all_ids
        if final.get(t) != expected[t] or (t in notes and notes[t]["received"] == 0)
    ]
    doubled = [
        t
        for t in all_ids
        if len(payments.get(t, [])) > 1
        or any(steps[t].count(step) > 1 for step in set(steps[t]))
        or (t in notes and (notes[t]["distinct"] > 1 or notes[t]["rows"] > 1))
    ]
    retried = [r for r in refused_first if r.retries]
    return {
        "accepted_total": len(accepted_first) + len(webhook_ok),
        "ended_correct": sum(1 for t in all_ids if correct(t)) - len(doubled_orders),
        "expected_end_states": dict(Counter(expected.values())),
        "lost": len(lost) + len(lost_accepted),
        "doubled": len(doubled) + len(doubled_orders),
        "orders_with_two_transactions": len(doubled_orders),
        "refused_but_committed": len(refused_but_committed),
        "refused_but_committed_detail": [
            {
                "started_s": round(r.started, 2),
                "elapsed_s": round(r.elapsed, 2),
                "status": r.status,
                "respond_async": r.respond_async,
                "retries": r.retries,
                "transactions": len(by_order[r.key]),
            }
            for r in refused_but_committed[:5]
        ],
        "merchant_retries_final": dict(Counter(str(r.retries[-1]) for r in retried)),
        # Refused, and every retry with the same Idempotency-Key answered 409 "still in
        # progress": the key was claimed and never answered nor released.
        "stuck_idempotency_keys": {
            "with_transaction": sum(1 for r in retried if r.retries[-1] == 409 and by_order[r.key]),
            "without_transaction": sum(
                1 for r in retried if r.retries[-1] == 409 and not by_order[r.key]
            ),
        },
        "lost_detail": {
            t: {"expected": expected[t], "final": final.get(t), "notifications": notes.get(t)}
            for t in lost
        }
        | {o: "accepted but not stored" for o in lost_accepted},
        "lost_notifications": [t for t in successes if notes[t]["received"] == 0],
        "doubled_detail": {
            t: {"payments": len(payments.get(t, [])), "steps": steps[t]} for t in doubled
        }
        | {o: {"transactions": by_order[o]} for o in doubled_orders},
        "merchant_redelivered_same_id": sum(
            1 for n in notes.values() if n["received"] > n["distinct"]
        ),
        "seconds_to_settle": round(settle_seconds, 1),
        "transactions_checked": len(all_ids),
    }
