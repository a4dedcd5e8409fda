"""`connxt demo`, settlement reconciliation: the demo day reconciled against the sandbox's
settlement reports, with one difference of each kind injected, each shown in its class.

Paymaxis (UTC days, a 2-day settlement window): four paid withdrawals, one settling 1.00
short (``amount``), one twice (``duplicate``), one a day late (``delay``), one clean; and a
payment nobody made (``unknown``). Sticpay (Seoul days): two paid withdrawals, one missing
from its file (``drop``). `make run` gives Sticpay a settlement window of 0 days
(CONNXT_RECON_SETTLEMENT_WINDOWS), so what it has not settled by the run is missing, not
pending: the demo shows both classes side by side.
"""

from __future__ import annotations

import json
import secrets
import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from commands.demo import DemoFailed, expect, heading, operation, poll, transaction

V2 = "/connxt/v2"
RUN_WAIT_SECONDS = 60
# What each injected difference must come out as.
EXPECTED = {
    "amount": "amount_mismatch",
    "duplicate": "duplicate",
    "delay": "pending",
    "unknown": "missing_at_connxt",
    "drop": "missing_at_psp",
}
# The PSPs' settlement days, as their documentation gives them.
ZONES = {"Paymaxis": "UTC", "Sticpay": "Asia/Seoul"}


def reconcile_demo_day(
    api: httpx.Client, sandbox: httpx.Client, paymaxis_psp: dict[str, Any]
) -> None:
    heading("Settlement reconciliation: the demo day against the PSPs' books")
    targets = expect(api.get(f"{V2}/flow-types/definitions", params={"type": "PSP"}), "Step 1")
    by_name = {t["name"]: t for t in targets["targets"]}

    injected: dict[str, str] = {}  # kind → our txnId (or the PSP's payment id)
    paid = [_withdrawal(api, by_name["Paymaxis"], paymaxis_psp) for _ in range(4)]
    for kind, (txn_id, payment_id) in zip(("amount", "duplicate", "delay"), paid, strict=False):
        expect(_inject(sandbox, kind, payment_id), "Sandbox", False)
        injected[kind] = txn_id
    # On the account of the latest payment: the demo's Paymaxis account.
    injected["unknown"] = expect(_inject(sandbox, "unknown"), "Sandbox", False)["paymentId"]
    sticpay_psp = _sticpay_account(api, sandbox, by_name["Sticpay"])
    _withdrawal(api, by_name["Sticpay"], sticpay_psp)  # settled as it should be
    dropped, dropped_payment = _withdrawal(api, by_name["Sticpay"], sticpay_psp)
    expect(_inject(sandbox, "drop", dropped_payment), "Sandbox", False)
    injected["drop"] = dropped
    for kind, what in injected.items():
        print(f"injected {kind:9} on {what}")

    found: dict[str, str] = {}  # txnId or payment id → class
    for name, psp in (("Paymaxis", paymaxis_psp), ("Sticpay", sticpay_psp)):
        run = _run(api, psp, name)
        found.update(_differences(api, run))
    print()
    wrong = []
    for kind, what in injected.items():
        got = found.get(what, "matched")
        mark = "ok" if got == EXPECTED[kind] else f"WANTED {EXPECTED[kind]}"
        print(f"    {kind:9} -> {got:18} {mark}")
        if got != EXPECTED[kind]:
            wrong.append(kind)
    if wrong:
        raise DemoFailed(f"injected differences not in their class: {', '.join(wrong)}")
    print("each injected difference is in its class; see them on the console's Reconciliation page")


def _sticpay_account(api: httpx.Client, sandbox: httpx.Client, flow_target: dict) -> dict:
    credential = {"merchantEmail": f"demo-{secrets.token_hex(3)}@example.com"}
    credential["apiKey"] = secrets.token_hex(12)
    expect(sandbox.put("/_control/accounts", json=credential), "Sandbox", False)
    body = {
        "name": f"Demo Sticpay {secrets.token_hex(2)}",
        "credential": json.dumps(credential),
        "flowTargetId": flow_target["id"],
        "operations": [operation(a) for a in flow_target["actions"] if a.get("definition")],
    }
    psp = expect(api.post(f"{V2}/psps/external", json=body), "Step 2 (Sticpay)")
    print(f"a Sticpay account too: PSP {psp['id']}")
    return psp


def _withdrawal(api: httpx.Client, flow_target: dict, psp: dict) -> tuple[str, str]:
    body = transaction(flow_target, psp, "WITHDRAW", str(int(time.time() * 1000)))
    data = expect(api.post(f"{V2}/transactions", json=body), "WITHDRAW")
    return data["txnId"], data["pspTxnId"]


def _inject(sandbox: httpx.Client, kind: str, payment_id: str | None = None, **more: str):
    body = {"kind": kind, **({"paymentId": payment_id} if payment_id else {}), **more}
    return sandbox.post("/_control/settlements/inject", json=body)


def _run(api: httpx.Client, psp: dict, name: str) -> dict:
    day = datetime.now(ZoneInfo(ZONES[name])).date().isoformat()
    asked = api.post(f"{V2}/reconciliation/runs", json={"pspId": psp["id"], "date": day})
    if asked.status_code != 202:
        raise DemoFailed(f"POST /reconciliation/runs: HTTP {asked.status_code}: {asked.text[:300]}")
    run_id = asked.json()["data"]["id"]

    run: dict[str, Any] = {}

    def finished() -> bool:
        run.update(expect(api.get(f"{V2}/reconciliation/runs/{run_id}"), "GET run"))
        return run["status"] in ("COMPLETED", "FAILED")

    poll(finished, RUN_WAIT_SECONDS, 0.5)
    if run["status"] != "COMPLETED":
        raise DemoFailed(f"run {run_id} is {run['status']}: {run['error'] or 'not done in time'}")
    share = run["matchedShare"]
    print(
        f"\n{name} {day}: run {run_id} COMPLETED, {run['lines']} lines, {run['matched']} matched"
        f" ({share:.0%}), differences: "
        + ", ".join(f"{k} {v}" for k, v in run["differences"].items() if v)
    )
    return run


def _differences(api: httpx.Client, run: dict) -> dict[str, str]:
    items = expect(api.get(f"{V2}/reconciliation/runs/{run['id']}/differences"), "GET diffs")
    found: dict[str, str] = {}
    for d in items["items"]:
        key = str(d["txnId"] or (d["theirs"] or {}).get("pspPaymentId"))
        ours = d["ours"] or {}
        theirs = d["theirs"] or {}
        print(
            f"    {d['class']:18} {key}  ours: {ours.get('status', '-')} {ours.get('amount') or ''}"
            f"  PSP: {theirs.get('type', '-')} {theirs.get('gross') or ''}"
        )
        found[key] = d["class"]
    return found
