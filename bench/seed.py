"""What a phase needs in place before it starts: request files for wrk, rows in the database,
payments at the sandbox.

Webhooks are signed here with Paymaxis's scheme written out (hex HMAC-SHA256 of the raw
body with the account's signing key), not with the connector's code, so the bench checks
the connector rather than agreeing with it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import tempfile
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import psycopg

from api_gateway.transactions.examples import reference_payload
from bench import wrk
from bench.world import Psp, Scene, World
from connectors.base import Action, PaymentRequest
from connectors.paymaxis_messages import create_body
from connectors.transport import dumps
from tests.support.flows import V2

TOKEN = "@N@"  # bench/lua/load.lua puts a per-request token here
SANDBOX_CREATE = "/paymaxis/api/v1/payments"
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


def sandbox_payments(world: World, count: int, files: Path) -> list[tuple[str, str]]:
    """``count`` open deposits at the sandbox's Paymaxis, created through its API with the
    connector's body (by wrk: thousands take seconds); ``(txn_id, payment id)`` pairs."""
    body = files / "sandbox-open.json"
    body.write_text(sandbox_create_body(world))
    capture = Path(tempfile.mkdtemp(prefix="bench-capture-", dir=files))
    auth = {"Authorization": f"Bearer {world.paymaxis.credential['apiKey']}"}
    wrk.run(
        wrk.Load(
            url=world.stack.sandbox_url,
            path=SANDBOX_CREATE,
            file=body,
            headers=auth,
            per_request_header="Idempotency-Key: txn_@N@",
            limit=count,
            duration_s=300,
            tag=f"open{secrets.token_hex(3)}",
            capture=capture,
        )
    )
    pairs = []
    for path in capture.iterdir():
        for line in path.read_text().splitlines():
            txn_id, _, payment_id = line.partition("\t")
            if txn_id.startswith("txn_") and payment_id:
                pairs.append((txn_id, payment_id))
    return pairs


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
