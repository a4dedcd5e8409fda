"""The reference's whole flow, as a client sees it, through the real processes.

Step 1 → Step 2 → Step 3 → the customer approves on the hosted Paymaxis page → the browser
comes back through Connxt → the transaction ends SUCCESS → the merchant's receiver gets one
verified notification. Then `connxt demo` does the same in-process.
"""

from __future__ import annotations

import json
import re
import secrets
import time

import httpx
import pytest

from tests.support.flows import V2, create_psp, events, target, transaction_body, wait_status

pytestmark = pytest.mark.integration


def set_notification_url(environment_id: str, url: str) -> None:
    """What `connxt tenants notification-url` does, for the tenant the test just made."""
    from storage.db import session_scope
    from storage.models import Environment

    with session_scope() as session:
        session.get(Environment, environment_id).notification_url = url


def received_for(stack, txn_id: str) -> list[dict]:
    answer = httpx.get(f"{stack.sandbox_url}/merchant/notifications")
    assert answer.status_code == 200, answer.text
    return [
        n
        for n in answer.json()["notifications"]
        if isinstance(n["body"], dict) and (n["body"].get("data") or {}).get("txnId") == txn_id
    ]


def poll(check, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    result = None
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {result!r})")


def settle_notifications(api, headers) -> None:
    """Wait until each finished transaction's notification is delivered: the `db` fixture's
    clean-up otherwise races a worker still recording an attempt (a foreign-key error)."""
    txns = api.get(f"{V2}/transactions", headers=headers).json()["data"]["items"]
    for txn in txns:
        if txn["status"] not in ("SUCCESS", "FAILED", "REJECTED"):
            continue
        path = f"{V2}/transactions/{txn['txnId']}/notifications"

        def delivered(path=path):
            items = api.get(path, headers=headers).json()["data"]["items"]
            return bool(items) and all(n["status"] == "DELIVERED" for n in items)

        poll(delivered, 15, f"{txn['txnId']}'s notification to be delivered")


@pytest.fixture
def api(stack, db):
    from tests.support.contract import checked

    with httpx.Client(base_url=stack.api_url, timeout=30) as client:
        httpx.post(f"{stack.sandbox_url}/_control/reset")
        yield checked(client)
        httpx.put(f"{stack.sandbox_url}/_control", json={"fail": "none", "delay_ms": 0})
        httpx.put(f"{stack.sandbox_url}/_control/merchant", json={"secret": None})


@pytest.fixture
def merchant(api, stack, make_tenant):
    """A fresh tenant whose notifications go to the sandbox's verifying receiver."""
    issued, headers = make_tenant(f"reference-{secrets.token_hex(3)}", "e2e")
    set_notification_url(issued.environment_id, f"{stack.sandbox_url}/merchant/notifications")
    answer = httpx.put(
        f"{stack.sandbox_url}/_control/merchant", json={"secret": issued.notification_secret}
    )
    assert answer.json() == {"secretSet": True}
    return issued, headers


def step1(api, headers) -> dict:
    flow_target = target(api, headers, "Paymaxis")
    assert flow_target["id"].startswith("ftg_")
    assert flow_target["status"] == "ENABLED"
    assert "apiKey" in flow_target["credentialSchema"]["required"]
    assert {"paymentMethods", "countries", "currencies"} <= set(flow_target["inputSchema"])
    actions = {a["name"]: a for a in flow_target["actions"]}
    assert {"DEPOSIT", "WITHDRAW"} <= set(actions)
    for name in ("DEPOSIT", "WITHDRAW"):
        assert actions[name]["id"].startswith("fat_")
        assert actions[name]["definition"]["id"].startswith("fld_")
    return flow_target


def step2(api, headers, stack, issued, flow_target) -> dict:
    credential = {"apiKey": f"pmx_{secrets.token_hex(8)}"}
    credential["webhookSigningKey"] = secrets.token_hex(16)
    registered = httpx.put(f"{stack.sandbox_url}/_control/accounts", json=credential)
    assert registered.json() == {"psp": "paymaxis", "webhookSigningKey": True}
    name = f"Reference Paymaxis {secrets.token_hex(2)}"
    psp = create_psp(api, headers, flow_target, credential, name=name)
    assert psp["id"].startswith("psp_")
    assert psp["name"] == name
    assert psp["credential"] == "***ENCRYPTED***"
    assert psp["brandId"] == issued.brand_id
    assert psp["environmentId"] == issued.environment_id
    assert psp["flowTargetId"] == flow_target["id"]
    assert psp["status"] == "ENABLED"
    sent = [
        {"flowActionId": a["id"], "flowDefinitionId": a["definition"]["id"], "status": "ENABLED"}
        for a in flow_target["actions"]
    ]
    assert sorted(psp["operations"], key=json.dumps) == sorted(sent, key=json.dumps)
    assert psp["flowTarget"]["id"] == flow_target["id"]
    supported = {a["flowActionName"] for a in psp["flowTarget"]["supportedActions"]}
    assert {"DEPOSIT", "WITHDRAW"} <= supported
    for secret in credential.values():
        assert secret not in json.dumps(psp)
    return psp


def step3(api, headers, stack, psp, flow_target) -> tuple[str, str]:
    body = transaction_body(psp, flow_target)
    answer = api.post(f"{V2}/transactions", headers=headers, json=body)
    assert answer.status_code == 200, answer.text
    envelope = answer.json()
    assert envelope["code"] == "200"
    data = envelope["data"]
    assert data["success"] is True
    assert data["error"] is None
    assert set(data["meta"]) >= {"logs", "http"}
    inner = data["data"]
    assert inner["__type"] == "success"
    navigation = inner["data"]["navigation"]
    assert navigation["type"] == "redirect"
    assert navigation["contentType"] == "url"
    assert navigation["value"].startswith(f"{stack.sandbox_url}/paymaxis/checkout/")
    assert inner["data"]["status"] == "success"
    assert inner["data"]["orderId"] == "1758818848508"
    assert inner["data"]["userId"] == "cust_001"
    return data["txnId"], navigation["value"]


def customer_approves(stack, redirect_url: str, txn_id: str) -> None:
    with httpx.Client(timeout=10, follow_redirects=False) as browser:
        page = browser.get(redirect_url)
        assert page.status_code == 200
        decided = browser.post(redirect_url, data={"decision": "approve"})
        assert decided.status_code == 303, decided.text
        location = decided.headers["location"]
        assert location == f"{stack.api_url}{V2}/external/redirects/{txn_id}"
        back = browser.get(location)
        assert back.status_code == 303, back.text
        landing = back.headers["location"]
        assert landing
        if landing.startswith(stack.api_url):  # our own result page
            assert landing == f"{stack.api_url}{V2}/external/result/{txn_id}"
            assert browser.get(landing).status_code == 200


def test_reference_flow_end_to_end(api, merchant, stack):
    issued, headers = merchant
    flow_target = step1(api, headers)
    psp = step2(api, headers, stack, issued, flow_target)
    txn_id, redirect_url = step3(api, headers, stack, psp, flow_target)
    customer_approves(stack, redirect_url, txn_id)

    final = wait_status(api, headers, txn_id, {"SUCCESS", "FAILED", "REJECTED"})
    assert final["status"] == "SUCCESS", final
    assert events(api, headers, txn_id) == [
        ("NEW", "CREATED"),
        ("CREATED", "INITIATED"),
        ("INITIATED", "PG_ACCEPTED"),
        ("PG_ACCEPTED", "SUCCESS"),
    ]

    poll(lambda: received_for(stack, txn_id), 15, f"a merchant notification for {txn_id}")
    time.sleep(1.5)  # room for a duplicate to show up, if one were going to
    received = received_for(stack, txn_id)
    assert len(received) == 1, received
    note = received[0]
    assert note["verified"] is True, note
    assert note["answered"] == 204
    assert note["body"]["data"]["status"] == "SUCCESS"

    def delivered():
        answer = api.get(f"{V2}/transactions/{txn_id}/notifications", headers=headers)
        assert answer.status_code == 200, answer.text
        items = answer.json()["data"]["items"]
        return items if items and items[0]["status"] == "DELIVERED" else None

    items = poll(delivered, 10, "the notification to read DELIVERED")
    assert len(items) == 1, items
    assert items[0]["id"] == note["webhookId"]
    assert items[0]["eventType"] == "transaction.success"
    assert items[0]["deliveries"][-1]["statusCode"] == 204
    settle_notifications(api, headers)


def test_demo_runs_against_the_stack(api, merchant, stack, capsys):
    from commands.demo import run_demo

    issued, headers = merchant
    code = run_demo(stack.api_url, stack.sandbox_url, issued.token, issued.notification_secret)
    out = capsys.readouterr().out
    settle_notifications(api, headers)
    assert code == 0, out
    assert issued.token not in out
    assert issued.notification_secret not in out
    assert "verified: True" in out
    # The day reconciled, one injected difference of each kind in its class.
    for kind, klass in (
        ("amount", "amount_mismatch"),
        ("duplicate", "duplicate"),
        ("delay", "pending"),
        ("unknown", "missing_at_connxt"),
        ("drop", "missing_at_psp"),
    ):
        assert re.search(rf"{kind}\s+-> {klass}\s+ok", out), out
