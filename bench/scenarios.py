"""The measured scenarios and their floors; each returns plain dicts for the report."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

import httpx

from bench.harness import Env, db_statuses, success_times
from bench.load import LoadResult, gather_bounded, healthz, run_load
from tests.support.flows import V2, reference_payload, transaction_body

CONCURRENCY = 16


def _deposit_body(env: Env, index: int, tag: str) -> dict[str, Any]:
    payload = reference_payload(order_id=f"bench-{tag}-{index}")
    return transaction_body(env.psp, env.flow_target, payload=payload)


async def floor_healthz(env: Env, count: int = 1200) -> LoadResult:
    return await run_load(
        "GET /healthz (API floor)", env.stack.api_url, healthz, count, CONCURRENCY, time_limit_s=6
    )


async def floor_sandbox(env: Env, count: int = 600) -> LoadResult:
    """The sandbox's own create rate, with the body and headers the connector sends."""
    from connectors.base import Action, PaymentRequest
    from connectors.paymaxis_wire import create_body
    from connectors.transport import dumps

    api = env.stack.api_url
    auth = {"Authorization": f"Bearer {env.api_key}", "Content-Type": "application/json"}

    async def create(client: httpx.AsyncClient, index: int) -> tuple[bool, str, Any]:
        txn_id = f"txn_floor_{index}"
        request = PaymentRequest(
            txn_id,
            Action.DEPOSIT,
            Decimal(200),
            "USD",
            reference_payload(f"floor-{index}"),
            f"{api}{V2}/external/redirects/{txn_id}",
            f"{api}{V2}/external/webhooks/floor",
        )
        headers = {**auth, "Idempotency-Key": txn_id}
        answer = await client.post(
            "/paymaxis/api/v1/payments", content=dumps(create_body(request)), headers=headers
        )
        state = answer.json().get("result", {}).get("state") if answer.status_code == 200 else None
        return state == "CHECKOUT", f"{answer.status_code} {state}", None

    result = await run_load(
        "POST sandbox /paymaxis/api/v1/payments (PSP floor)",
        env.stack.sandbox_url,
        create,
        count,
        CONCURRENCY,
        time_limit_s=6,
    )
    # Forget the floor's payments (accounts stay) so the measured path scans no extra ones.
    httpx.post(f"{env.stack.sandbox_url}/_control/reset", timeout=10).raise_for_status()
    return result


def _create_request(env: Env, tag: str, respond_async: bool):
    headers = {**env.headers, **({"Prefer": "respond-async"} if respond_async else {})}

    async def create(client: httpx.AsyncClient, index: int) -> tuple[bool, str, Any]:
        answer = await client.post(
            f"{V2}/transactions", headers=headers, json=_deposit_body(env, index, tag)
        )
        try:
            data = answer.json().get("data") or {}
        except ValueError:
            data = {}
        status = data.get("status")
        if respond_async:
            # 202 is asked for, but the answer is built from the stored row: a worker that
            # finished first makes it 200 PG_ACCEPTED. Both are usable; outcomes tell apart.
            ok = answer.status_code in (200, 202) and bool(data.get("txnId"))
        else:
            ok = answer.status_code == 200 and status == "PG_ACCEPTED"
        return ok, f"{answer.status_code} {status}", data.get("txnId")

    return create


async def warm_up(env: Env) -> None:
    """Open pools in the API and in every worker child before anything is timed."""
    await run_load("warm-up healthz", env.stack.api_url, healthz, 64, 8, time_limit_s=10)
    await run_load(
        "warm-up deposits",
        env.stack.api_url,
        _create_request(env, "warm", False),
        8,
        4,
        time_limit_s=20,
    )


async def deposits(env: Env, count: int = 300) -> LoadResult:
    return await run_load(
        "POST /transactions (sync, 200 PG_ACCEPTED)",
        env.stack.api_url,
        _create_request(env, "sync", False),
        count,
        CONCURRENCY,
        time_limit_s=45,
    )


async def _wait_accepted(env: Env, txn_ids: list[str], timeout_s: float = 45) -> dict[str, Any]:
    """Watch PostgreSQL (cheap, leaves the API alone) then confirm every one with GET."""
    began, statuses = time.perf_counter(), {}
    while time.perf_counter() - began < timeout_s:
        statuses = db_statuses(txn_ids)
        if statuses.get("PG_ACCEPTED", 0) >= len(txn_ids):
            break
        await asyncio.sleep(0.2)
    waited = time.perf_counter() - began
    async with httpx.AsyncClient(base_url=env.stack.api_url, timeout=30) as client:

        async def status(txn_id: str) -> str | None:
            answer = await client.get(f"{V2}/transactions/{txn_id}", headers=env.headers)
            return (answer.json().get("data") or {}).get("status")

        seen = await gather_bounded(txn_ids, status, CONCURRENCY)
    return {
        "wait_s": round(waited, 2),
        "db_statuses": statuses,
        "get_confirmed_pg_accepted": sum(s == "PG_ACCEPTED" for s in seen),
    }


async def _psp_payments(env: Env, txn_ids: list[str]) -> dict[str, dict[str, Any]]:
    from connectors.transport import loads

    async with httpx.AsyncClient(base_url=env.stack.sandbox_url, timeout=30) as client:

        async def lookup(txn_id: str) -> tuple[str, dict[str, Any] | None]:
            answer = await client.get("/_payments", params={"referenceId": txn_id})
            found = [
                p
                for p in loads(answer.content)["payments"]
                if p.get("psp") == "paymaxis" and p.get("paymentType") == "DEPOSIT"
            ]
            return txn_id, (found[-1] if found else None)

        return {t: p for t, p in await gather_bounded(txn_ids, lookup, CONCURRENCY) if p}


def _signed_webhook(env: Env, payment: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    from connectors.signing import paymaxis_signature
    from connectors.transport import dumps

    body = dumps(
        {
            "id": payment["id"],
            "referenceId": payment["referenceId"],
            "state": "COMPLETED",
            "amount": payment["amount"],
            "currency": payment["currency"],
            "paymentType": payment["paymentType"],
        }
    )
    return body, {
        "Content-Type": "application/json",
        "Signature": paymaxis_signature(body, env.signing_key),
    }


async def webhooks(env: Env, count: int = 300, settle_timeout_s: float = 60) -> dict[str, Any]:
    created = await run_load(
        "POST /transactions (Prefer: respond-async)",
        env.stack.api_url,
        _create_request(env, "async", True),
        count,
        CONCURRENCY,
        time_limit_s=30,
    )
    txn_ids = [created.values[i] for i in sorted(created.values)]
    accepted = await _wait_accepted(env, txn_ids)
    payments = await _psp_payments(env, txn_ids)
    targets = [t for t in txn_ids if t in payments]
    signed = [_signed_webhook(env, payments[t]) for t in targets]
    path = f"{V2}/external/webhooks/{env.psp['id']}"

    async def deliver(client: httpx.AsyncClient, index: int) -> tuple[bool, str, Any]:
        body, headers = signed[index]
        answer = await client.post(path, content=body, headers=headers)
        dup = (answer.json().get("data") or {}).get("duplicate") if answer.is_success else None
        return answer.is_success, f"{answer.status_code}" + (" duplicate" if dup else ""), None

    started_epoch, started = time.time(), time.perf_counter()
    delivered = await run_load(
        "POST /external/webhooks (signed COMPLETED)",
        env.stack.api_url,
        deliver,
        len(signed),
        CONCURRENCY,
        time_limit_s=30,
    )
    burst_done = time.perf_counter() - started
    settled_s, statuses = None, {}
    while time.perf_counter() - started < settle_timeout_s:
        statuses = db_statuses(targets)
        if statuses.get("SUCCESS", 0) >= len(targets):
            settled_s = time.perf_counter() - started
            break
        await asyncio.sleep(0.05)
    stamps = sorted(success_times(targets))
    server_last = (stamps[-1] - started_epoch) if stamps else None
    return {
        "create_async": created,
        "wait_pg_accepted": accepted,
        "psp_ids_found": len(payments),
        "delivered": delivered,
        "settle": {
            "webhooks": len(targets),
            "success": len(stamps),
            "final_statuses": statuses,
            "burst_s": round(burst_done, 3),
            "all_success_s": round(settled_s, 3) if settled_s else None,
            "last_success_event_s": round(server_last, 3) if server_last else None,
            "drain_after_burst_s": round(settled_s - burst_done, 3) if settled_s else None,
            "success_per_s": round(len(stamps) / settled_s, 1) if settled_s else None,
            "timed_out": settled_s is None,
        },
    }
