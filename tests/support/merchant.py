"""A merchant as the tests see one: notifications received (by the sandbox's receiver,
or by a receiver of the test's own on loopback), reviews listed, the operator's CLI at
hand."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from sqlalchemy import select

from storage.db import session_scope
from storage.models import Environment, Notification, NotificationAttempt
from tests.support.flows import V2, sandbox_payments, transaction_body


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # A batch's notifications arrive at once (64 connections): the standard library's
    # backlog of 5 would leave some waiting a second for a retried SYN.
    request_queue_size = 128


class Receiver:
    """A merchant's notification receiver on loopback: answers every POST with ``status``
    after ``delay`` seconds, or drops the connection unanswered while ``drops`` lasts.
    ``seen`` holds each POST's ``webhook-id`` header and body, dropped ones included."""

    def __init__(self, status: int = 503) -> None:
        self.status, self.delay, self.drops = status, 0.0, 0
        self.seen: list[tuple[str | None, bytes]] = []
        merchant = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # the standard library's name
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                merchant.seen.append((self.headers.get("webhook-id"), body))
                if merchant.drops:
                    merchant.drops -= 1
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                time.sleep(merchant.delay)
                self.send_response(merchant.status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_args) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def hits(self) -> int:
        return len(self.seen)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def delivery_record(notification_id: str) -> tuple[Notification, list[NotificationAttempt]]:
    """The notification as stored, and every attempt made to deliver it."""
    with session_scope() as session:
        attempts = session.scalars(
            select(NotificationAttempt).where(
                NotificationAttempt.notification_id == notification_id
            )
        ).all()
        return session.get(Notification, notification_id), list(attempts)


def notified_tenant(stack: Any, make_tenant: Any, brand: str = "shop") -> tuple[Any, dict]:
    """A tenant whose notifications go to the sandbox's merchant receiver, verified there."""
    issued, headers = make_tenant(brand, "live")
    with session_scope() as session:
        environment = session.get(Environment, issued.environment_id)
        environment.notification_url = f"{stack.sandbox_url}/merchant/notifications"
    httpx.put(f"{stack.sandbox_url}/_control/merchant", json={"secret": issued.notification_secret})
    return issued, headers


def deposit(api: httpx.Client, headers: dict, flow_target: dict, psp: dict, **extra: Any) -> str:
    """Step 3 for a deposit (200 USD unless told otherwise); the transaction id."""
    answer = api.post(
        f"{V2}/transactions", headers=headers, json=transaction_body(psp, flow_target, **extra)
    )
    assert answer.status_code in (200, 202), answer.text
    return answer.json()["data"]["txnId"]


def payment_of(stack: Any, txn_id: str) -> dict:
    (payment,) = sandbox_payments(stack.sandbox_url, txn_id)
    return payment


def pay(stack: Any, txn_id: str, **paid: str) -> dict:
    """The customer approves at the PSP; ``amount``/``currency`` when paying other money."""
    payment = payment_of(stack, txn_id)
    answer = httpx.post(
        f"{stack.sandbox_url}/_control/complete/{payment['id']}",
        json={"decision": "approve", **paid},
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def notifications_for(stack: Any, txn_id: str, event_type: str | None = None) -> list[dict]:
    """What the merchant's receiver got for the transaction (of one type, if given)."""
    received = httpx.get(f"{stack.sandbox_url}/merchant/notifications").json()["notifications"]
    return [
        n
        for n in received
        if isinstance(n["body"], dict)
        and n["body"].get("data", {}).get("txnId") == txn_id
        and (event_type is None or n["body"].get("type") == event_type)
    ]


def history(api: httpx.Client, headers: dict, txn_id: str) -> list[dict]:
    """The transaction's event rows as the API shows them."""
    answer = api.get(f"{V2}/transactions/{txn_id}/events", headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]["items"]


def reasons(api: httpx.Client, headers: dict, txn_id: str) -> list[str | None]:
    return [event["reason"] for event in history(api, headers, txn_id)]


def transaction(api: httpx.Client, headers: dict, txn_id: str) -> dict:
    answer = api.get(f"{V2}/transactions/{txn_id}", headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def review_list(api: httpx.Client, headers: dict) -> list[dict]:
    """`GET /transactions?review=true`: what waits for an operator."""
    answer = api.get(f"{V2}/transactions", headers=headers, params={"review": "true"})
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]["items"]
