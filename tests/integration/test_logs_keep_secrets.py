"""Secrets and customer data never reach a log: not in our own lines, not in what httpx,
Celery, uvicorn or SQLAlchemy print, not in a database error's text.

The stack test runs a whole installation of its own (tests/chaos/world.py) at DEBUG, takes
a deposit and a withdrawal through it with known secrets and a known customer e-mail, and
reads every line the api, worker and beat processes wrote.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from api_gateway.transactions.examples import reference_payload
from storage.db import session_scope
from tests.chaos.world import build_world, destroy_world
from tests.support.flows import V2, create_psp, target, transaction_body
from tests.support.stack import wait_until

pytestmark = pytest.mark.integration

TAG = secrets.token_hex(4)
EMAIL = f"ada.{TAG}@customer.example"
PAYMAXIS = {"apiKey": f"pmx-KNOWN-{TAG}", "webhookSigningKey": f"whk-KNOWN-{TAG}"}
STICPAY = {"merchantEmail": f"till.{TAG}@shop.example", "apiKey": f"stk-KNOWN-{TAG}"}
# A merchant that authenticates our notifications with a token in its URL, as many do.
MERCHANT_TOKEN = f"mtk-KNOWN-{TAG}"


def test_database_errors_carry_no_statement_parameters(db):
    with pytest.raises(DBAPIError) as caught, session_scope() as session:
        value = f"{MERCHANT_TOKEN} {EMAIL}"
        session.execute(text("SELECT CAST(:value AS text), 1 / 0"), {"value": value})
    message = str(caught.value)
    assert "division by zero" in message
    assert MERCHANT_TOKEN not in message and EMAIL not in message


@pytest.fixture(scope="module")
def world():
    log_dir = Path(tempfile.mkdtemp(prefix="connxt-logs-"))
    built = build_world("logs", log_dir, extra_env={"CONNXT_LOG_LEVEL": "DEBUG"})
    try:
        yield built
    finally:
        destroy_world(built)
        shutil.rmtree(log_dir, ignore_errors=True)


def test_no_process_logs_a_secret_or_a_customer_email(world):
    world.sandbox("PUT", "/_control/accounts", json=PAYMAXIS)
    world.sandbox("PUT", "/_control/accounts", json=STICPAY)
    receiver = f"{world.stack.sandbox_url}/merchant/notifications?token={MERCHANT_TOKEN}"
    world.query(
        "UPDATE environments SET notification_url = %s WHERE id = %s RETURNING id",
        receiver,
        world.tenant["environmentId"],
    )
    payload = reference_payload(f"order-{TAG}")
    payload["body"]["customer"]["email"] = EMAIL
    with world.client(timeout=30) as api:
        paymaxis_target = target(api, world.headers, "Paymaxis")
        paymaxis = create_psp(api, world.headers, paymaxis_target, PAYMAXIS, name="Known")
        sticpay_target = target(api, world.headers, "Sticpay")
        sticpay = create_psp(api, world.headers, sticpay_target, STICPAY, name="Known")

        body = transaction_body(paymaxis, paymaxis_target, payload=payload)
        answer = api.post(f"{V2}/transactions", headers=world.headers, json=body)
        assert answer.status_code == 200, answer.text
        deposit = answer.json()["data"]["txnId"]
        (payment,) = world.payments(deposit)
        world.sandbox("POST", f"/_control/complete/{payment['id']}", json={"decision": "approve"})

        body = transaction_body(sticpay, sticpay_target, action="WITHDRAW", payload=payload)
        answer = api.post(f"{V2}/transactions", headers=world.headers, json=body)
        assert answer.status_code == 200, answer.text
        withdrawal = answer.json()["data"]["txnId"]

        # A wrong token and a bad request: answers that are logged, too.
        assert (
            api.get(f"{V2}/psps", headers={"X-SECRET-TOKEN": f"sec_{TAG}{TAG}"}).status_code == 401
        )
        assert (
            api.post(f"{V2}/transactions", headers=world.headers, json={"x": EMAIL}).status_code
            == 400
        )

    def notified() -> bool:
        told = {
            n["body"]["data"]["txnId"]
            for n in world.merchant_notifications()
            if isinstance(n["body"], dict)
        }
        return {deposit, withdrawal} <= told

    wait_until(notified, timeout=60, what="both merchant notifications")
    logs = {name: world.stack.log(name) for name in ("api", world.worker_name, "beat")}
    known = [*PAYMAXIS.values(), *STICPAY.values(), MERCHANT_TOKEN, EMAIL, world.tenant["token"]]
    known.append(world.tenant["notificationSecret"].removeprefix("whsec_"))
    for name, text_ in logs.items():
        for secret in known:
            assert secret not in text_, f"{secret} in the {name} log ({world.stack.log_dir})"
    # What shows that the loggers were talking: our lines at DEBUG (the PSP calls' too),
    # Celery's own lines, and the redaction at work (the merchant's URL token).
    assert "http.request" in logs["api"]
    worker = logs[world.worker_name]
    assert "connectors.http.response" in worker and "ready." in worker
    assert "token=***" in logs[world.worker_name]
