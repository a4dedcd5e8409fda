"""Customers' personal data does not stay: redacted by beat's retention sweep a set time
after the transaction ended, or at once by `connxt customers erase` (an open transaction
as soon as it ends).

A whole installation of its own (tests/chaos/world.py), logging at DEBUG, takes three
customers' deposits through the PSP with a marker in every personal field. Then every text,
JSON and binary column of every table (found in information_schema, so a table added
later is scanned too) and every line the api, worker and beat wrote are searched: before,
to show the markers are there to be found; after, to show none is left.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from api_gateway.transactions.examples import reference_payload
from tests.chaos.world import build_world, destroy_world
from tests.support.flows import V2, transaction_body
from tests.support.stack import wait_until

pytestmark = pytest.mark.integration

TAG = secrets.token_hex(3)


def markers(who: str) -> dict[str, str]:
    """A value no other test writes, for every personal field of one customer."""
    mark = f"zq{TAG}{who}"
    digits = str(int(TAG, 16)).zfill(8) + {"a": "11", "b": "22", "c": "33"}[who]
    return {
        "firstName": f"First{mark}",
        "lastName": f"Last{mark}",
        "email": f"mail.{mark}@customer.example",
        "phoneNumber": f"7{digits}",
        "line1": f"{mark} Main Street",
        "line2": f"Flat {mark}",
        "city": f"City{mark}",
        "state": f"State{mark}",
        "zipCode": f"Zip{mark}",
        "accountName": f"Holder{mark}",
        "accountNumber": f"Acct{mark}",
        "dateOfBirth": f"Born{mark}",
        "documentNumber": f"Doc{mark}",
        "description": f"Gift for {mark}",
        "nickname": f"Nick{mark}",
    }


def payload(who: str) -> dict:
    m = markers(who)
    body = reference_payload(f"order-{TAG}-{who}")
    body["body"]["order"]["description"] = m["description"]
    body["body"]["customAttributes"] = {"nickname": m["nickname"]}
    body["body"]["customer"] = {
        "id": f"cust-{TAG}-{who}",
        "firstName": m["firstName"],
        "lastName": m["lastName"],
        "email": m["email"],
        "phone": {"phoneNumber": m["phoneNumber"], "countryCode": "44"},
        "address": {
            "line1": m["line1"],
            "line2": m["line2"],
            "city": m["city"],
            "state": m["state"],
            "zipCode": m["zipCode"],
            "country": "GB",
        },
        "accountName": m["accountName"],
        "accountNumber": m["accountNumber"],
        "dateOfBirth": m["dateOfBirth"],
        "documentNumber": m["documentNumber"],
    }
    return body


@pytest.fixture(scope="module")
def world():
    log_dir = Path(tempfile.mkdtemp(prefix="connxt-pii-"))
    built = build_world(
        "pii",
        log_dir,
        extra_env={
            "CONNXT_LOG_LEVEL": "DEBUG",
            "CONNXT_PII_RETENTION_DAYS": "1",
            "CONNXT_RETENTION_INTERVAL_SECONDS": "1",
        },
    )
    try:
        yield built
    finally:
        destroy_world(built)
        shutil.rmtree(log_dir, ignore_errors=True)


def found_in_database(world, values: list[str]) -> list[str]:
    """``table.column: value`` for every value found in any text, JSON, array or binary
    column of any table."""
    columns = world.query(
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'public' AND data_type IN "
        "('text', 'character varying', 'character', 'json', 'jsonb', 'bytea', 'ARRAY')"
    )
    assert {table for table, _, _ in columns} >= {
        "transactions",
        "transaction_events",
        "inbox",
        "outbox",
        "idempotency_keys",
        "notifications",
        "notification_attempts",
        "audit_log",
        "environments",
        "psps",
    }
    found = []
    for table, column, data_type in columns:
        shown = f"encode({column}, 'escape')" if data_type == "bytea" else f"{column}::text"
        for (text_,) in world.query(f"SELECT {shown} FROM {table} WHERE {column} IS NOT NULL"):
            found += [f"{table}.{column}: {value}" for value in values if value in text_]
    return found


def found_in_logs(world, values: list[str]) -> list[str]:
    found = []
    for name in ("api", world.worker_name, "beat"):
        text_ = world.stack.log(name)
        found += [f"{name} log: {value}" for value in values if value in text_]
    return found


def deposit(world, api, who: str) -> str:
    body = transaction_body(world.psp, world.flow_target, payload=payload(who))
    answer = api.post(
        f"{V2}/transactions",
        headers={**world.headers, "Idempotency-Key": f"key-{TAG}-{who}"},
        json=body,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]["txnId"]


def approve(world, txn_id: str) -> None:
    (payment,) = world.payments(txn_id)
    world.sandbox("POST", f"/_control/complete/{payment['id']}", json={"decision": "approve"})


def redacted_at(world, txn_id: str):
    return world.query("SELECT personal_data_redacted_at FROM transactions WHERE id = %s", txn_id)[
        0
    ][0]


def erase(world, who: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "commands.cli", "customers", "erase", "--brand", "shop",
         "--customer-id", f"cust-{TAG}-{who}", "--json"],
        env={**os.environ, **world.stack.env},
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def test_no_personal_data_stays_after_retention_and_erasure(world):
    every = [v for who in "abc" for v in markers(who).values()]
    with world.client(timeout=30) as api:
        ended_long_ago = deposit(world, api, "a")
        erased_at_once = deposit(world, api, "b")
        erased_when_ended = deposit(world, api, "c")
        approve(world, ended_long_ago)
        approve(world, erased_at_once)
    settled = world.wait_statuses([ended_long_ago, erased_at_once], {"SUCCESS"}, timeout=60)
    assert set(settled.values()) == {"SUCCESS"}, settled
    assert world.statuses([erased_when_ended]) == {erased_when_ended: "PG_ACCEPTED"}

    def notified(txn_ids) -> bool:
        told = {
            n["body"]["data"]["txnId"]
            for n in world.merchant_notifications()
            if isinstance(n["body"], dict) and n["verified"]
        }
        return set(txn_ids) <= told

    wait_until(lambda: notified([ended_long_ago, erased_at_once]), timeout=60, what="notified")

    # The markers are where a scan finds them: the payload, the PSP's exchanges and
    # webhooks, the stored answer of the idempotency key.
    before = found_in_database(world, markers("a").values())
    for where in (
        "transactions.execute_payload",
        "transactions.psp_meta",
        "inbox.body",
        "idempotency_keys.response_body",
    ):
        assert any(f.startswith(where) for f in before), (where, before)

    # Retention: a day after it ended (CONNXT_PII_RETENTION_DAYS=1), beat's sweep redacts it.
    world.query(
        "UPDATE transactions SET updated_at = now() - interval '25 hours' WHERE id = %s "
        "RETURNING id",
        ended_long_ago,
    )
    wait_until(lambda: redacted_at(world, ended_long_ago), timeout=60, what="retention")
    assert redacted_at(world, erased_at_once) is None  # ended an hour ago: not yet

    # Erasure: the ended transaction at once; the open one when it ends.
    assert erase(world, "b") == {"redacted": 1, "pending": 0}
    assert redacted_at(world, erased_at_once) is not None
    assert erase(world, "c") == {"redacted": 0, "pending": 1}
    assert redacted_at(world, erased_when_ended) is None  # its PSP payment is still open
    approve(world, erased_when_ended)
    world.wait_statuses([erased_when_ended], {"SUCCESS"}, timeout=60)
    wait_until(lambda: redacted_at(world, erased_when_ended), timeout=60, what="pending erasure")
    wait_until(lambda: notified([erased_when_ended]), timeout=60, what="notified")
    time.sleep(2)  # anything still being written about them (a late PSP notification)

    assert found_in_database(world, every) == []
    assert found_in_logs(world, every) == []

    # What the money needs stays: amounts, ids, statuses, the customer's id.
    (row,) = world.query(
        "SELECT status, amount, order_id, user_id, execute_payload, psp_meta "
        "FROM transactions WHERE id = %s",
        ended_long_ago,
    )
    status, amount, order_id, user_id, kept_payload, meta = row
    assert (status, int(amount), order_id, user_id) == (
        "SUCCESS",
        200,
        f"order-{TAG}-a",
        f"cust-{TAG}-a",
    )
    assert kept_payload["body"]["customer"] == {"id": f"cust-{TAG}-a"}
    assert kept_payload["body"]["order"]["money"] == {"amount": 12, "currency": "USD"}
    assert meta["pspState"] and all(x["request"] is None for x in meta["http"])
    with world.client() as api:
        shown = api.get(f"{V2}/transactions/{ended_long_ago}", headers=world.headers)
        assert shown.status_code == 200 and shown.json()["data"]["status"] == "SUCCESS"
        # A retry of the first request still answers, rebuilt from the redacted row.
        replay = api.post(
            f"{V2}/transactions",
            headers={**world.headers, "Idempotency-Key": f"key-{TAG}-a"},
            json=transaction_body(world.psp, world.flow_target, payload=payload("a")),
        )
        assert replay.status_code == 200, replay.text
        assert replay.json()["data"]["txnId"] == ended_long_ago

    # The erasures are in the audit trail, naming the customer by a digest only.
    erased = world.query(
        "SELECT subject, after FROM audit_log WHERE action = 'customer.erased' ORDER BY id"
    )
    assert [after["redacted"] for _, after in erased] == [1, 0]
    assert all(subject.startswith("customer sha256:") for subject, _ in erased)
    assert not any(f"cust-{TAG}" in subject for subject, _ in erased)
