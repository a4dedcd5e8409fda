"""What a phase needs in place before it starts: request files for wrk, rows in the database,
payments at the sandbox.

Webhooks are signed here with Paymaxis's scheme written out (hex HMAC-SHA256 of the raw
body with the account's signing key), not with the connector's code, so the bench checks
the connector rather than agreeing with it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
import psycopg

from bench.world import Psp, Scene, World
from connectors.base import Action, PaymentRequest
from connectors.paymaxis_wire import create_body
from connectors.transport import dumps
from connxt.examples import reference_payload
from tests.support.flows import V2

TOKEN = "@N@"  # bench/lua/load.lua puts a per-request token here
AMOUNT, CURRENCY = "200.00", "USD"


def transaction_template(psp: Psp, action: str = "DEPOSIT") -> str:
    """Step 3's body as the reference shows it (~1 KB), the order id unique per request."""
    body = {
        "flowActionId": psp.action_id(action),
        "flowTargetId": psp.target["id"],
        "pspId": psp.id,
        "transactionType": action.lower(),
        "txnCurrency": CURRENCY,
        "txnAmount": 200,
        "executePayload": reference_payload(order_id=f"bench-{TOKEN}"),
    }
    return json.dumps(body, separators=(",", ":"))


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path


def paymaxis_webhook(payment_id: str, txn_id: str, signing_key: str) -> str:
    """One line for wrk: the ``Signature`` header, a tab, the body (what the sandbox sends)."""
    body = (
        f'{{"id":"{payment_id}","referenceId":"{txn_id}","paymentType":"DEPOSIT",'
        f'"state":"COMPLETED","amount":{AMOUNT},"currency":"{CURRENCY}"}}'
    )
    signature = hmac.new(signing_key.encode(), body.encode(), hashlib.sha256).hexdigest()
    return f"{signature}\t{body}\n"


def webhook_lines(psp: Psp, pairs: list[tuple[str, str]]) -> str:
    key = psp.credential["webhookSigningKey"]
    return "".join(paymaxis_webhook(payment, txn, key) for txn, payment in pairs)


_COLUMNS = (
    "id, brand_id, environment_id, psp_id, flow_action_id, flow_target_id, action,"
    " transaction_type, amount, currency, status, psp_txn_id, order_id, user_id,"
    " execute_payload, initiate_attempts, next_inquiry_at"
)


def insert_accepted(
    scene: Scene, world: World, pairs: list[tuple[str, str]], inquiry_due: bool
) -> None:
    """Deposits already PG_ACCEPTED at Paymaxis, as ``(txn_id, psp payment id)``, written
    straight into the phase's database (the API would take minutes to make this many).
    With ``inquiry_due`` their next status inquiry is due at once."""
    psp, tenant = world.paymaxis, world.tenant
    payload = json.dumps(reference_payload(order_id="bench-open"))
    due = datetime.now(UTC) if inquiry_due else None
    with (
        psycopg.connect(scene.dsn) as conn,
        conn.cursor() as cur,
        cur.copy(f"COPY transactions ({_COLUMNS}) FROM STDIN") as copy,
    ):
        for txn_id, payment_id in pairs:
            copy.write_row(
                (
                    txn_id,
                    tenant["brandId"],
                    tenant["environmentId"],
                    psp.id,
                    psp.action_id("DEPOSIT"),
                    psp.target["id"],
                    "DEPOSIT",
                    "deposit",
                    AMOUNT,
                    CURRENCY,
                    "PG_ACCEPTED",
                    payment_id,
                    f"bench-{txn_id}",
                    "cust_001",
                    payload,
                    1,
                    due,
                )
            )


def fake_pairs(count: int) -> list[tuple[str, str]]:
    """``(txn_id, payment id)`` for deposits the sandbox never saw (no worker will ask it)."""
    tag = secrets.token_hex(3)
    return [(f"txn_bench{tag}{i:07d}", f"pmx_bench{tag}{i:07d}") for i in range(count)]


async def _sandbox_payments(world: World, count: int, concurrency: int) -> list[tuple[str, str]]:
    """Open deposits at the sandbox's Paymaxis, made through its API as our connector would."""
    tag = secrets.token_hex(3)
    api_key = world.paymaxis.credential["apiKey"]
    public = world.stack.api_url
    out: list[tuple[str, str]] = []
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=world.stack.sandbox_url, limits=limits) as client:

        async def one(i: int) -> None:
            txn_id = f"txn_open{tag}{i:07d}"
            body = {
                "referenceId": txn_id,
                "paymentType": "DEPOSIT",
                "amount": 200,
                "currency": CURRENCY,
                "returnUrl": f"{public}{V2}/external/redirects/{txn_id}",
                "webhookUrl": f"{public}{V2}/external/webhooks/{world.paymaxis.id}",
            }
            answer = await client.post(
                "/paymaxis/api/v1/payments",
                json=body,
                headers={"Authorization": f"Bearer {api_key}", "Idempotency-Key": txn_id},
                timeout=30,
            )
            answer.raise_for_status()
            out.append((txn_id, answer.json()["result"]["id"]))

        gate = asyncio.Semaphore(concurrency)

        async def gated(i: int) -> None:
            async with gate:
                await one(i)

        await asyncio.gather(*(gated(i) for i in range(count)))
    return out


def sandbox_payments(world: World, count: int, concurrency: int = 32) -> list[tuple[str, str]]:
    return asyncio.run(_sandbox_payments(world, count, concurrency))


def sandbox_create_body(world: World) -> str:
    """What the Paymaxis connector POSTs to create a payment, the reference unique per
    request (its own body builder, so the floor follows the connector)."""
    txn_id = f"txn_{TOKEN}"
    public = world.stack.api_url
    request = PaymentRequest(
        txn_id,
        Action.DEPOSIT,
        Decimal(200),
        CURRENCY,
        reference_payload(order_id=f"bench-{TOKEN}"),
        f"{public}{V2}/external/redirects/{txn_id}",
        f"{public}{V2}/external/webhooks/{world.paymaxis.id}",
    )
    return dumps(create_body(request)).decode()
