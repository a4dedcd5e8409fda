"""`connxt demo`: the reference's Steps 1-3 over HTTP with the tenant's token, as a client
would, then the customer on the sandbox's hosted Paymaxis page and the merchant's receiver,
then the day's settlement reconciliation (commands/demo_recon.py)."""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable
from typing import Any

import httpx

from api_gateway.transactions.examples import reference_payload

V2 = "/connxt/v2"
SECRET_ENV = "CONNXT_DEMO_NOTIFICATION_SECRET"
SUCCESS_WAIT_SECONDS = 20
NOTIFICATION_WAIT_SECONDS = 15


class DemoFailed(Exception):
    """A step did not answer as the reference says it should."""


def run_demo(
    api_url: str, sandbox_url: str, token: str, notification_secret: str | None = None
) -> int:
    """Walk through Steps 1-3, a customer approval, a withdrawal, and the day's settlement
    reconciliation (commands.demo_recon); 0 when all went well."""
    secret = notification_secret or os.environ.get(SECRET_ENV) or None
    print(f"Connxt demo against {api_url} as {mask(token)} (sandbox PSPs at {sandbox_url})")
    try:
        with (
            httpx.Client(base_url=api_url, headers={"X-SECRET-TOKEN": token}, timeout=30) as api,
            httpx.Client(base_url=sandbox_url, timeout=10) as sandbox,
        ):
            configure_merchant(sandbox, secret)
            flow_target = step1(api)
            psp = step2(api, sandbox, flow_target)
            txn_id, redirect_url = step3(api, flow_target, psp)
            customer_approves(redirect_url)
            wait_for_success(api, txn_id)
            show_events(api, txn_id)
            show_notification(sandbox, txn_id, verify_expected=secret is not None)
            withdrawal(api, flow_target, psp)
            from commands.demo_recon import reconcile_demo_day

            reconcile_demo_day(api, sandbox, psp)
    except DemoFailed as exc:
        print(f"\nDEMO FAILED: {exc}")
        return 1
    except httpx.HTTPError as exc:
        print(f"\nDEMO FAILED: {type(exc).__name__} talking to {exc.request.url}: {exc}")
        return 1
    print(
        "\nDemo complete: deposit approved and notified, withdrawal paid, the day reconciled"
        " against the PSPs' settlement reports."
    )
    return 0


def mask(value: str) -> str:
    """Enough of a secret to recognise it, never the whole of it."""
    return value[:6] + "…" if len(value) > 10 else "…"


def heading(text: str) -> None:
    print(f"\n== {text} " + "=" * max(0, 74 - len(text)))


def expect(answer: httpx.Response, what: str, envelope: bool = True) -> Any:
    """The JSON answer (the API's: its `data`), or a DemoFailed saying what came back."""
    try:
        if answer.status_code != 200:
            raise ValueError(answer.status_code)
        body = answer.json()
        return body["data"] if envelope else body
    except (ValueError, KeyError, TypeError):
        raise DemoFailed(f"{what}: HTTP {answer.status_code}: {answer.text[:300]}") from None


def poll(check: Callable[[], Any], seconds: float, interval: float = 0.25) -> Any:
    """The first truthy result of ``check`` within ``seconds``, else None."""
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if result or time.monotonic() >= deadline:
            return result
        time.sleep(interval)


def operation(action: dict) -> dict[str, str]:
    definition_id = action["definition"]["id"]
    return {"flowActionId": action["id"], "flowDefinitionId": definition_id, "status": "ENABLED"}


def transaction(flow_target: dict, psp: dict, action: str, order_id: str) -> dict[str, Any]:
    action_id = next(a["id"] for a in flow_target["actions"] if a["name"] == action)
    return {
        "flowActionId": action_id,
        "flowTargetId": flow_target["id"],
        "pspId": psp["id"],
        "transactionType": "deposit" if action == "DEPOSIT" else "withdrawal",
        "txnCurrency": "USD",
        "txnAmount": 200,
        "executePayload": reference_payload(order_id),
    }


def configure_merchant(sandbox: httpx.Client, secret: str | None) -> None:
    heading("Merchant receiver")
    if secret is None:
        print(f"no notification secret given (nor {SECRET_ENV}): signatures will not be checked")
        return
    expect(sandbox.put("/_control/merchant", json={"secret": secret}), "Sandbox", False)
    print(f"the sandbox's merchant receiver verifies signatures with {mask(secret)}")


def step1(api: httpx.Client) -> dict[str, Any]:
    heading("Step 1: GET /flow-types/definitions?type=PSP")
    data = expect(api.get(f"{V2}/flow-types/definitions", params={"type": "PSP"}), "Step 1")
    for target in data["targets"]:
        print(f"{target['name']:10} {target['id']}  {target['status']}")
        for action in target["actions"]:
            definition = (action.get("definition") or {}).get("id", "-")
            print(f"    {action['name']:9} flowActionId {action['id']}  definition {definition}")
    found = [t for t in data["targets"] if t["name"] == "Paymaxis"]
    if not found:
        raise DemoFailed("Step 1 lists no Paymaxis target (was `connxt catalog sync` run?)")
    return found[0]


def step2(api: httpx.Client, sandbox: httpx.Client, flow_target: dict) -> dict[str, Any]:
    heading("Step 2: POST /psps/external")
    credential = {"apiKey": f"pmx_{secrets.token_hex(12)}"}
    credential["webhookSigningKey"] = secrets.token_hex(16)
    expect(sandbox.put("/_control/accounts", json=credential), "Sandbox", False)
    print(f"registered apiKey {mask(credential['apiKey'])} and its signing key with the sandbox")
    body = {
        "name": f"Demo Paymaxis {secrets.token_hex(2)}",
        "credential": json.dumps(credential),
        "flowTargetId": flow_target["id"],
        "operations": [operation(a) for a in flow_target["actions"] if a.get("definition")],
    }
    psp = expect(api.post(f"{V2}/psps/external", json=body), "Step 2")
    print(f'PSP {psp["id"]} "{psp["name"]}" {psp["status"]}, credential {psp["credential"]}')
    names = {a["id"]: a["name"] for a in flow_target["actions"]}
    ops = [f"{names.get(o['flowActionId'])} {o['status']}" for o in psp["operations"]]
    print("    operations: " + ", ".join(ops))
    return psp


def step3(api: httpx.Client, flow_target: dict, psp: dict) -> tuple[str, str]:
    heading("Step 3: POST /transactions (DEPOSIT)")
    order_id = str(int(time.time() * 1000))
    body = transaction(flow_target, psp, "DEPOSIT", order_id)
    data = expect(api.post(f"{V2}/transactions", json=body), "Step 3")
    try:
        redirect_url = data["data"]["data"]["navigation"]["value"]
    except (KeyError, TypeError):
        raise DemoFailed(f"Step 3 answered no redirect: {json.dumps(data)[:300]}") from None
    print(f"transaction {data['txnId']} for order {order_id}: {data['status']}")
    print(f"send the customer to data.data.data.navigation.value:\n    {redirect_url}")
    return data["txnId"], redirect_url


def customer_approves(redirect_url: str) -> None:
    heading("The customer approves on the hosted page")
    with httpx.Client(timeout=10, follow_redirects=False) as browser:
        answer = browser.post(redirect_url, data={"decision": "approve"})
        if answer.status_code != 303:
            raise DemoFailed(f"hosted page answered {answer.status_code}, wanted 303")
        location = answer.headers["location"]
        print(f"POST decision=approve -> 303 Location: {location}")
        back = browser.get(location)
        print(f"the browser follows it: {back.status_code} {back.headers.get('location', '')}")


def wait_for_success(api: httpx.Client, txn_id: str) -> None:
    heading(f"GET /transactions/{txn_id} until SUCCESS")

    seen: list[str] = []

    def succeeded() -> bool:
        seen.append(expect(api.get(f"{V2}/transactions/{txn_id}"), "GET transaction")["status"])
        return seen[-1] == "SUCCESS"

    if not poll(succeeded, SUCCESS_WAIT_SECONDS):
        raise DemoFailed(f"{txn_id} is {seen[-1]}, not SUCCESS, after {SUCCESS_WAIT_SECONDS} s")
    print(f"{txn_id}: SUCCESS")


def show_events(api: httpx.Client, txn_id: str) -> None:
    heading("Its events: GET /transactions/{id}/events")
    items = expect(api.get(f"{V2}/transactions/{txn_id}/events"), "GET events")["items"]
    for event in items:
        print(f"    {event['fromStatus']:>11} -> {event['toStatus']:12} ({event['source']})")


def show_notification(sandbox: httpx.Client, txn_id: str, verify_expected: bool) -> None:
    heading("The merchant's notification (sandbox receiver)")

    def ours() -> dict | None:
        received = expect(sandbox.get("/merchant/notifications"), "Receiver", False)
        for note in received["notifications"]:
            body = note.get("body")
            if isinstance(body, dict) and (body.get("data") or {}).get("txnId") == txn_id:
                return note
        return None

    note = poll(ours, NOTIFICATION_WAIT_SECONDS, interval=0.5)
    if note is None:
        raise DemoFailed(
            f"no notification for {txn_id} within {NOTIFICATION_WAIT_SECONDS} s: is the "
            "environment's notification URL set (`connxt tenants notification-url ... --url "
            f"{sandbox.base_url}merchant/notifications`)?"
        )
    print(
        f"webhook-id {note['webhookId']}, type {note['body'].get('type')}, "
        f"status {note['body']['data'].get('status')}, verified: {note['verified']}"
    )
    if verify_expected and not note["verified"]:
        raise DemoFailed("the notification's signature did not verify with the notification secret")


def withdrawal(api: httpx.Client, flow_target: dict, psp: dict) -> None:
    heading("A withdrawal: POST /transactions (WITHDRAW)")
    body = transaction(flow_target, psp, "WITHDRAW", str(int(time.time() * 1000)))
    data = expect(api.post(f"{V2}/transactions", json=body), "WITHDRAW")
    print(f"transaction {data['txnId']}: {data['status']} (PSP id {data.get('pspTxnId')})")
    if data["status"] != "SUCCESS":
        raise DemoFailed(f"the withdrawal answered {data['status']}, wanted SUCCESS")
