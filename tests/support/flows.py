"""Client-side helpers: the reference's Steps 1–3 as a merchant would run them."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import httpx

from api_gateway.transactions.examples import reference_payload

V2 = "/connxt/v2"


def target(client: httpx.Client | Any, headers: dict[str, str], name: str) -> dict[str, Any]:
    answer = client.get(f"{V2}/flow-types/definitions", params={"type": "PSP"}, headers=headers)
    assert answer.status_code == 200, answer.text
    return next(t for t in answer.json()["data"]["targets"] if t["name"] == name)


def action_id(flow_target: dict[str, Any], name: str) -> str:
    return next(a["id"] for a in flow_target["actions"] if a["name"] == name)


def create_psp(
    client: Any,
    headers: dict[str, str],
    flow_target: dict[str, Any],
    credential: dict[str, str],
    name: str = "Main",
) -> dict[str, Any]:
    operations = [
        {"flowActionId": a["id"], "flowDefinitionId": a["definition"]["id"], "status": "ENABLED"}
        for a in flow_target["actions"]
    ]
    answer = client.post(
        f"{V2}/psps/external",
        headers=headers,
        json={
            "name": name,
            "credential": json.dumps(credential),
            "flowTargetId": flow_target["id"],
            "operations": operations,
        },
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def transaction_body(
    psp: dict[str, Any],
    flow_target: dict[str, Any],
    action: str = "DEPOSIT",
    amount: Any = 200,
    currency: str = "USD",
    payload: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "flowActionId": action_id(flow_target, action),
        "flowTargetId": flow_target["id"],
        "pspId": psp["id"],
        "transactionType": action.lower(),
        "txnCurrency": currency,
        "txnAmount": amount,
        "executePayload": payload or reference_payload(),
        **extra,
    }


def stored_deposit(
    client: Any, headers: dict[str, str], psp: dict[str, Any], flow_target: dict[str, Any]
) -> str:
    """A deposit stored through Step 3 without waiting for its initiation
    (``Prefer: respond-async``): its id."""
    created = client.post(
        f"{V2}/transactions",
        headers={**headers, "Prefer": "respond-async"},
        json=transaction_body(psp, flow_target),
    )
    assert created.status_code == 202, created.text
    return str(created.json()["data"]["txnId"])


def wait_status(
    client: Any, headers: dict[str, str], txn_id: str, statuses: set[str], timeout: float = 20
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    data: dict[str, Any] = {}
    while time.monotonic() < deadline:
        data = client.get(f"{V2}/transactions/{txn_id}", headers=headers).json()["data"]
        if data["status"] in statuses:
            return data
        time.sleep(0.1)
    raise AssertionError(f"{txn_id} stayed {data.get('status')}, wanted {statuses}")


def events(client: Any, headers: dict[str, str], txn_id: str) -> list[tuple[str, str]]:
    items = client.get(f"{V2}/transactions/{txn_id}/events", headers=headers).json()["data"]
    return [(e["fromStatus"], e["toStatus"]) for e in items["items"]]


def paymaxis_psp(
    client: Any, sandbox_url: str, headers: dict[str, str], name: str = "Main"
) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """A Paymaxis PSP with a webhook signing key the sandbox signs with: (target, psp, cred)."""
    credential = {
        "apiKey": f"pmx_{secrets.token_hex(6)}",
        "webhookSigningKey": secrets.token_hex(16),
    }
    httpx.put(f"{sandbox_url}/_control/accounts", json=credential)
    flow_target = target(client, headers, "Paymaxis")
    return flow_target, create_psp(client, headers, flow_target, credential, name), credential


def sandbox_payments(sandbox_url: str, txn_id: str) -> list[dict[str, Any]]:
    """What the sandbox PSPs hold for our transaction."""
    answer = httpx.get(f"{sandbox_url}/_payments", params={"referenceId": txn_id})
    return answer.json()["payments"]


def customer_decides(sandbox_url: str, txn_id: str, decision: str = "approve") -> None:
    """The customer approves (or declines) on the PSP's page, as its buttons would."""
    (payment,) = sandbox_payments(sandbox_url, txn_id)
    httpx.post(f"{sandbox_url}/_control/complete/{payment['id']}", json={"decision": decision})


def open_paymaxis_account(world: Any) -> None:
    """A chaos or fleet world's tenant (``world.tenant``) gets a Paymaxis account with a
    fresh credential the sandbox knows, and the sandbox's merchant checks notifications
    with the tenant's secret. Sets ``headers``, ``credential``, ``flow_target`` and ``psp``
    on the world."""
    world.headers = {"X-SECRET-TOKEN": world.tenant["token"]}
    world.sandbox("PUT", "/_control/merchant", json={"secret": world.tenant["notificationSecret"]})
    world.credential = {
        "apiKey": f"pmx_{secrets.token_hex(6)}",
        "webhookSigningKey": secrets.token_hex(16),
    }
    world.sandbox("PUT", "/_control/accounts", json=world.credential)
    with world.client() as api:
        world.flow_target = target(api, world.headers, "Paymaxis")
        world.psp = create_psp(api, world.headers, world.flow_target, world.credential)
