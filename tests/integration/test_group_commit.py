"""Group commit against real PostgreSQL: many requests per statement, each answered only
for what was stored, one bad item failing alone, an Idempotency-Key deciding once."""

from __future__ import annotations

import asyncio
import secrets
from decimal import Decimal

import orjson
import psycopg
import pytest
from psycopg.rows import dict_row
from sqlalchemy import text

from api_gateway.transactions.examples import reference_payload
from connxt.ids import random_id
from connxt.settings import get_settings
from storage.aio import ingress_pool, libpq_url
from storage.db import session_scope
from storage.group_commit import GroupCommit
from storage.transaction_writer import IdempotencyRow, NewTransaction, Stored, TransactionWriter
from tests.support.flows import V2, create_psp, target

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("background_held")]


@pytest.fixture
def tenant(make_tenant):
    """A tenant of its own: nothing another module left behind can be in its way."""
    return make_tenant(f"group-commit-{secrets.token_hex(4)}", "test")


@pytest.fixture
def psp(client, tenant):
    issued, headers = tenant
    flow_target = target(client, headers, "Paymaxis")
    created = create_psp(client, headers, flow_target, {"apiKey": "pmx_group_commit"})
    deposit = next(a["id"] for a in flow_target["actions"] if a["name"] == "DEPOSIT")
    return issued, created, flow_target["id"], deposit


def new(psp, *, order_id: str = "order-1", key: str | None = None) -> NewTransaction:
    issued, created, target_id, action_id = psp
    return NewTransaction(
        id=random_id("txn"),
        brand_id=issued.brand_id,
        environment_id=issued.environment_id,
        psp_id=created["id"],
        flow_action_id=action_id,
        flow_target_id=target_id,
        action="DEPOSIT",
        transaction_type="deposit",
        amount=Decimal("12.50"),
        currency="USD",
        order_id=order_id,
        user_id="cust_001",
        execute_payload=orjson.dumps(reference_payload(order_id)).decode(),
        queue="psp.paymaxis",
        idempotency=IdempotencyRow(key, "0" * 64) if key else None,
    )


async def submit_all(items: list[NewTransaction], concurrency: int = 1) -> list:
    pool = ingress_pool(get_settings())
    await pool.open(wait=True, timeout=10)
    try:
        committer = GroupCommit(
            pool, TransactionWriter(60), max_batch=256, concurrency=concurrency, deadline_seconds=5
        )
        return await asyncio.gather(
            *(committer.submit(item) for item in items), return_exceptions=True
        )
    finally:
        await pool.close()


def stored_rows(ids: list[str]) -> dict[str, tuple]:
    with session_scope() as session:
        rows = session.execute(
            text(
                "SELECT t.id, t.status, t.amount, t.created_at,"
                " (SELECT count(*) FROM transaction_events e WHERE e.txn_id = t.id) AS events,"
                " (SELECT count(*) FROM outbox o WHERE o.args->>'txn_id' = t.id)"
                " FROM transactions t WHERE t.id = ANY(:ids)"
            ),
            {"ids": ids},
        ).all()
    return {row[0]: tuple(row[1:]) for row in rows}


def test_concurrent_requests_share_statements_and_each_is_stored(psp):
    items = [new(psp, order_id=f"order-{i}") for i in range(40)]
    results = asyncio.run(submit_all(items))
    assert results == [Stored.CREATED] * 40
    rows = stored_rows([t.id for t in items])
    assert len(rows) == 40
    assert {amount for _, amount, _, _, _ in rows.values()} == {Decimal("12.50")}
    # Rows of one statement share its transaction's start time: fewer statements than rows.
    assert len({created_at for _, _, created_at, _, _ in rows.values()}) < 40


def test_one_statement_writes_the_row_its_event_its_message_and_its_key(psp):
    """Read inside the writing transaction (rolled back), so that no running relay has
    published (and deleted) the outbox rows yet."""
    items = [new(psp, order_id="keyed", key="key-1"), new(psp, order_id="plain")]

    async def write_and_look() -> tuple[list, list]:
        conn = await psycopg.AsyncConnection.connect(
            libpq_url(get_settings().database_url), row_factory=dict_row
        )
        try:
            results = await TransactionWriter(60).write(conn, items)
            cursor = await conn.execute(
                "SELECT t.id, t.status,"
                " (SELECT count(*) FROM transaction_events e WHERE e.txn_id = t.id) AS events,"
                " (SELECT array_agg(o.task || ' ' || o.queue) FROM outbox o"
                "   WHERE o.args->>'txn_id' = t.id) AS messages,"
                " (SELECT count(*) FROM idempotency_keys k WHERE k.resource_id = t.id) AS keys"
                " FROM transactions t WHERE t.id = ANY(%s) ORDER BY t.order_id",
                [[t.id for t in items]],
            )
            return results, [tuple(row.values()) for row in await cursor.fetchall()]
        finally:
            await conn.rollback()
            await conn.close()

    results, rows = asyncio.run(write_and_look())
    assert results == [Stored.CREATED, Stored.CREATED]
    keyed, plain = items[0].id, items[1].id
    assert rows == [
        (keyed, "CREATED", 1, ["transactions.initiate psp.paymaxis"], 1),
        (plain, "CREATED", 1, ["transactions.initiate psp.paymaxis"], 0),
    ]


def test_a_value_the_database_refuses_fails_its_request_alone(psp):
    good = [new(psp, order_id=f"fine-{i}") for i in range(6)]
    bad = new(psp, order_id="nul\x00byte")  # validation refuses it; here it reaches storage
    results = asyncio.run(submit_all([*good[:3], bad, *good[3:]]))
    assert isinstance(results[3], psycopg.DataError)
    assert [r for i, r in enumerate(results) if i != 3] == [Stored.CREATED] * 6
    assert set(stored_rows([t.id for t in [*good, bad]])) == {t.id for t in good}


def test_an_idempotency_key_creates_one_transaction(psp):
    first, again = new(psp, key="order-77"), new(psp, key="order-77")
    assert asyncio.run(submit_all([first])) == [Stored.CREATED]
    assert asyncio.run(submit_all([again])) == [Stored.KEY_TAKEN]
    assert set(stored_rows([first.id, again.id])) == {first.id}


def test_the_ingress_answers_202_only_for_a_stored_transaction(client, psp, tenant):
    issued, created, target_id, action_id = psp
    _, headers = tenant
    body = {
        "flowActionId": action_id,
        "flowTargetId": target_id,
        "pspId": created["id"],
        "txnCurrency": "USD",
        "txnAmount": 12.5,
        "executePayload": reference_payload("order-202"),
    }
    answer = client.post(
        f"{V2}/transactions", headers={**headers, "Prefer": "respond-async"}, json=body
    )
    assert answer.status_code == 202, answer.text
    txn_id = answer.json()["data"]["txnId"]
    # Stored before the answer; a worker running in this test process (the stack of an
    # earlier test) may have taken it further since.
    assert stored_rows([txn_id])[txn_id][0] in ("CREATED", "INITIATED", "PG_ACCEPTED")
