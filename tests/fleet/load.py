"""A fixed rate of deposits and PSP webhooks through the balancer, from the load host.

Open loop, as merchants and PSPs send: each request leaves at its own time whether the
earlier ones were answered or not (a pool of threads, each living in the load host's
namespace, sends them), so a slow or failing fleet does not slow the load down. Deposits
carry an Idempotency-Key per order (a careful merchant) and alternate between waiting for
the initiation and ``Prefer: respond-async``. Webhooks are the PSP's COMPLETED
notifications for deposits the fleet accepted at the PSP (answered 200 PG_ACCEPTED)
a second or more earlier, signed as Paymaxis signs them.

Every request is recorded as the chaos suite records a burst's (tests.chaos.bursts.Request),
so the suite's accounting applies unchanged.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import httpx

from tests.chaos.bursts import Request, burst_summary, retry_refused
from tests.chaos.world import is_envelope_error
from tests.fleet import netns
from tests.fleet.fleet import LOAD_HOST, FleetWorld
from tests.support.flows import V2, reference_payload, transaction_body

Fault = Callable[[dict[str, float], float], None]


class _Clients(threading.local):
    """One keep-alive connection to the balancer per sending thread, opened there."""

    def __init__(self, made: list[httpx.Client]):
        self.made = made  # every thread's (threading.local runs this in each), closed at the end

    def get(self, timeout: float) -> httpx.Client:
        if not hasattr(self, "client"):
            self.client = httpx.Client(timeout=timeout)
            self.made.append(self.client)
        return self.client

    def close(self) -> None:
        for client in self.made:
            client.close()


class Burst(NamedTuple):
    """A load run and what every fleet test first does with it (unpacks as a tuple)."""

    records: list[Request]
    timings: dict[str, Any]
    summary: dict[str, Any]  # tests.chaos.bursts.burst_summary
    webhook_txns: list[str]  # the transactions the PSP's webhooks were sent for


def run_burst(world: FleetWorld, *, slow_psp_ms: int = 0, **load: Any) -> Burst:
    """``run_load(world, **load)``, Paymaxis answering in ``slow_psp_ms`` meanwhile (and at
    once again after, whatever happened); then the burst summarized and the deposits
    refused sent again with their Idempotency-Key, as a careful merchant would."""
    if slow_psp_ms:
        world.control(delay_ms=slow_psp_ms, psp="paymaxis")
    try:
        records, timings = run_load(world, **load)
    finally:
        if slow_psp_ms:
            world.control(delay_ms=0, psp="paymaxis")
    summary = burst_summary(records)
    retry_refused(world, records)
    webhook_txns = [r.key for r in records if r.kind == "webhook"]
    return Burst(records, timings, summary, webhook_txns)


def run_load(
    world: FleetWorld,
    *,
    seconds: float,
    deposit_rate: float,
    webhook_rate: float,
    fault_at: float | None = None,
    fault: Fault | None = None,
    client_timeout: float = 20.0,
    senders: int = 48,
    after_fault: float | None = None,
    max_seconds: float = 600.0,
) -> tuple[list[Request], dict[str, Any]]:
    """``deposit_rate`` deposits and ``webhook_rate`` webhooks a second for ``seconds``;
    ``fault(timings, began)`` runs on a thread of its own at ``fault_at``. With
    ``after_fault``, the load goes on for as long as the fault takes (a rolling deploy) and
    that many seconds after it, within ``max_seconds``. Returns the requests and the timings
    (the fault's own, and how late the load fell behind)."""
    records: list[Request] = []
    lock = threading.Lock()
    candidates: deque[tuple[float, str]] = deque()  # (accepted at, txn id) for webhooks
    timings: dict[str, Any] = {"late_s": 0.0, "webhooks_skipped": 0}
    clients = _Clients([])
    base = world.stack.api_url
    began = time.monotonic()

    def send(record: Request, method: str, url: str, **kwargs: Any) -> httpx.Response | None:
        t0 = time.monotonic()
        answer = None
        try:
            answer = clients.get(client_timeout).request(method, url, **kwargs)
            record.status = answer.status_code
            record.envelope = answer.status_code < 400 or is_envelope_error(answer)
        except httpx.HTTPError as exc:
            record.error = type(exc).__name__
        record.elapsed = time.monotonic() - t0
        with lock:
            records.append(record)
        return answer

    def deposit(n: int) -> None:
        order_id = f"fleet-{n}-{secrets.token_hex(3)}"
        headers = {**world.headers, "Idempotency-Key": order_id}
        respond_async = n % 2 == 0
        if respond_async:
            headers["Prefer"] = "respond-async"
        body = transaction_body(world.psp, world.flow_target, payload=reference_payload(order_id))
        record = Request("deposit", order_id, time.monotonic() - began)
        record.respond_async = respond_async
        record.sent = {"headers": headers, "json": body}
        answer = send(record, "POST", f"{base}{V2}/transactions", headers=headers, json=body)
        if record.accepted and answer is not None:
            data = answer.json()["data"]
            record.txn_id = data["txnId"]
            if answer.status_code == 200 and data["status"] == "PG_ACCEPTED":
                with lock:
                    candidates.append((time.monotonic(), record.txn_id))

    def webhook() -> None:
        with lock:
            ready = bool(candidates) and time.monotonic() - candidates[0][0] >= 1.0
            _, txn_id = candidates.popleft() if ready else (0.0, None)
            if txn_id is None:
                timings["webhooks_skipped"] += 1
                return
        found = clients.get(client_timeout).get(
            f"{world.stack.sandbox_url}/_payments", params={"referenceId": txn_id}
        )
        payments = found.json()["payments"]
        assert len(payments) == 1, (txn_id, payments)  # answered PG_ACCEPTED: paid once
        body, headers = world.signed_completion(txn_id, payments[0]["id"])
        record = Request("webhook", txn_id, time.monotonic() - began)
        send(record, "POST", world.webhook_url(), content=body, headers=headers)

    def run_fault() -> None:
        assert fault is not None and fault_at is not None
        time.sleep(max(0.0, began + fault_at - time.monotonic()))
        timings["fault_started"] = time.monotonic() - began
        try:
            fault(timings, began)
        except BaseException as exc:  # raised again once the load is over
            timings["fault_error"] = exc
        timings["fault_ended"] = time.monotonic() - began

    fault_thread = threading.Thread(target=run_fault) if fault else None

    def sending(at: float) -> bool:
        if at < seconds:
            return True
        if after_fault is None or fault_thread is None or at >= max_seconds:
            return False
        if fault_thread.is_alive() or "fault_ended" not in timings:
            return True
        return at < timings["fault_ended"] + after_fault

    def schedule():
        """(at, kind, n) in time order, each rate on its own grid, until ``sending`` ends."""
        deposits, webhooks = 0, 1
        while True:
            next_deposit = deposits / deposit_rate
            next_webhook = webhooks / webhook_rate if webhook_rate else float("inf")
            if next_deposit <= next_webhook:
                at, kind, n = next_deposit, "deposit", deposits
                deposits += 1
            else:
                at, kind, n = next_webhook, "webhook", webhooks
                webhooks += 1
            if not sending(at):
                return
            yield at, kind, n

    if fault_thread:
        fault_thread.start()
    futures = []
    with ThreadPoolExecutor(senders, initializer=netns.enter, initargs=(LOAD_HOST,)) as pool:
        for at, kind, n in schedule():
            pause = began + at - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            else:
                timings["late_s"] = max(timings["late_s"], -pause)
            futures.append(pool.submit(deposit, n) if kind == "deposit" else pool.submit(webhook))
    clients.close()
    for future in futures:
        future.result()  # a fault of the load itself is the test's failure, never hidden
    if fault_thread:
        fault_thread.join()
    if "fault_error" in timings:
        raise timings.pop("fault_error")
    timings["load_ended"] = time.monotonic() - began
    return sorted(records, key=lambda r: r.started), timings


def counts(records: list[Request], settled: dict[str, Any]) -> dict[str, Any]:
    """The figures each fleet test reports: what was sent, answered, stored and settled."""
    failed = [r for r in records if r.error or (r.status is not None and r.status >= 500)]
    deposits = [r for r in records if r.kind == "deposit"]
    return {
        "sent": len(records),
        "deposits_sent": len(deposits),
        "webhooks_sent": len(records) - len(deposits),
        "accepted": sum(1 for r in records if r.accepted),
        "failed": len(failed),
        "stored": settled["transactions_checked"],
        "settled": settled["ended_correct"],
        "lost": settled["lost"],
        "doubled": settled["doubled"],
    }


def send_webhooks(world: FleetWorld, txn_ids: list[str], rate: float) -> list[Request]:
    """The PSP's signed COMPLETED notification for each of ``txn_ids`` (accepted at the
    PSP), ``rate`` a second, open loop from the load host, through the balancer."""
    payments = {}
    for payment in world.payments():
        payments.setdefault(payment["referenceId"], []).append(payment["id"])
    records: list[Request] = []
    lock = threading.Lock()
    clients = _Clients([])
    began = time.monotonic()

    def send(txn_id: str) -> None:
        (payment_id,) = payments[txn_id]  # paid once, or the phase before went wrong
        body, headers = world.signed_completion(txn_id, payment_id)
        record = Request("webhook", txn_id, time.monotonic() - began)
        t0 = time.monotonic()
        try:
            answer = clients.get(20.0).post(world.webhook_url(), content=body, headers=headers)
            record.status = answer.status_code
            record.envelope = answer.status_code < 400 or is_envelope_error(answer)
        except httpx.HTTPError as exc:
            record.error = type(exc).__name__
        record.elapsed = time.monotonic() - t0
        with lock:
            records.append(record)

    with ThreadPoolExecutor(8, initializer=netns.enter, initargs=(LOAD_HOST,)) as pool:
        futures = []
        for n, txn_id in enumerate(txn_ids):
            pause = began + n / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            futures.append(pool.submit(send, txn_id))
        for future in futures:
            future.result()
    clients.close()
    return records
