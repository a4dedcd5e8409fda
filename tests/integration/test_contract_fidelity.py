"""What a client written only from the reference expects of every answer: amounts as JSON
numbers written exactly, a bad `pspId` named as a field, timestamps with their zone."""

from __future__ import annotations

import json
import re
from decimal import Decimal

import httpx
import pytest

from tests.support.flows import V2, create_psp, target, transaction_body
from tests.support.merchant import notifications_for, notified_tenant
from tests.support.stack import wait_until

ZONED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
# An amount no float can carry: float() of it would print 99999999999999.98.
BIG = "99999999999999.99"
# The answers' and notifications' shapes do not depend on the broker under the worker.
pytestmark = pytest.mark.any_broker


@pytest.fixture
def paymaxis(client, tenant):
    _, headers = tenant
    flow_target = target(client, headers, "Paymaxis")
    psp = create_psp(client, headers, flow_target, {"apiKey": "pmx_contract"})
    return headers, flow_target, psp


def post_raw(client, headers: dict, body: dict, amount_text: str) -> httpx.Response:
    """Step 3 with ``txnAmount`` written as this JSON number text, respond-async."""
    raw = json.dumps({**body, "txnAmount": "AMOUNT"}).replace('"AMOUNT"', amount_text)
    return client.post(
        f"{V2}/transactions",
        content=raw,
        headers={**headers, "Prefer": "respond-async", "Content-Type": "application/json"},
    )


def exact(text: str) -> dict:
    """The answer parsed with every JSON number as a Decimal, as a careful client would."""
    return json.loads(text, parse_float=Decimal, parse_int=Decimal)


@pytest.mark.parametrize(
    ("sent", "written"), [("200", "200.00"), ("12.5", "12.50"), (BIG, BIG), ("0.1", "0.10")]
)
def test_txn_amount_is_a_json_number_written_exactly(client, paymaxis, sent, written):
    headers, flow_target, psp = paymaxis
    created = post_raw(client, headers, transaction_body(psp, flow_target), sent)
    assert created.status_code == 202, created.text
    txn_id = created.json()["data"]["txnId"]

    one = client.get(f"{V2}/transactions/{txn_id}", headers=headers)
    assert f'"txnAmount":{written},' in one.text, one.text
    amount = exact(one.text)["data"]["txnAmount"]
    assert isinstance(amount, Decimal) and str(amount) == written

    listed = client.get(f"{V2}/transactions", headers=headers)
    assert f'"txnAmount":{written},' in listed.text, listed.text


def test_unknown_psp_in_step3_is_a_400_naming_psp_id(client, paymaxis):
    headers, flow_target, psp = paymaxis
    body = transaction_body({**psp, "id": "psp_doesnotexist"}, flow_target)
    answer = client.post(f"{V2}/transactions", headers=headers, json=body)
    assert answer.status_code == 400, answer.text
    assert [e["field"] for e in answer.json()["errors"]] == ["pspId"]


def test_another_tenants_psp_in_step3_is_a_400_naming_psp_id(client, paymaxis, make_tenant):
    _, flow_target, psp = paymaxis
    _, other = make_tenant("elsewhere", "live")
    body = transaction_body(psp, flow_target)
    answer = client.post(f"{V2}/transactions", headers=other, json=body)
    assert answer.status_code == 400, answer.text
    errors = answer.json()["errors"]
    assert [e["field"] for e in errors] == ["pspId"]
    # Said the same way as an unknown id: nothing confirms the PSP exists elsewhere.
    assert errors[0]["message"] == "unknown PSP"


def zoned_fields(value, path: str = "") -> dict[str, str]:
    """Every `...At` field of an answer, wherever it is nested, by its path."""
    found: dict[str, str] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            if key.endswith("At") and isinstance(item, str):
                found[f"{path}.{key}"] = item
            found.update(zoned_fields(item, f"{path}.{key}"))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found.update(zoned_fields(item, f"{path}[{i}]"))
    return found


def test_timestamps_in_answers_carry_their_zone(client, paymaxis):
    headers, flow_target, psp = paymaxis
    created = post_raw(client, headers, transaction_body(psp, flow_target), "10")
    txn_id = created.json()["data"]["txnId"]
    stamps: dict[str, str] = {}
    for path in (
        f"/psps/{psp['id']}",
        "/psps",
        f"/transactions/{txn_id}",
        "/transactions",
        f"/transactions/{txn_id}/events",
    ):
        answer = client.get(f"{V2}{path}", headers=headers)
        assert answer.status_code == 200, answer.text
        stamps.update({path + k: v for k, v in zoned_fields(answer.json()["data"]).items()})
    assert {k.rsplit(".", 1)[-1] for k in stamps} >= {"createdAt", "updatedAt"}
    unzoned = {k: v for k, v in stamps.items() if not ZONED.match(v)}
    assert not unzoned


@pytest.mark.integration
def test_withdrawal_answer_and_merchant_notification_carry_the_exact_amount(
    api, stack, make_tenant
):
    issued, headers = notified_tenant(stack, make_tenant, "exact")
    flow_target = target(api, headers, "Paymaxis")
    psp = create_psp(api, headers, flow_target, {"apiKey": "pmx_exact"})
    raw = json.dumps({**transaction_body(psp, flow_target, "WITHDRAW"), "txnAmount": "AMOUNT"})
    keyed = {**headers, "Content-Type": "application/json", "Idempotency-Key": "w-1"}
    answer = api.post(f"{V2}/transactions", content=raw.replace('"AMOUNT"', "12.5"), headers=keyed)
    assert answer.status_code == 200, answer.text
    assert exact(answer.text)["data"]["status"] == "SUCCESS", answer.text
    assert '"txnAmount":12.50,' in answer.text, answer.text
    txn_id = answer.json()["data"]["txnId"]
    # The stored answer, replayed for the same key, writes the amount as exactly.
    replay = api.post(f"{V2}/transactions", content=raw.replace('"AMOUNT"', "12.5"), headers=keyed)
    assert exact(replay.text)["data"] == exact(answer.text)["data"]
    assert str(exact(replay.text)["data"]["txnAmount"]) == "12.50"

    (received,) = wait_until(lambda: notifications_for(stack, txn_id), what="notification")
    assert '"txnAmount":12.50,' in received["raw"], received["raw"]
    assert ZONED.match(exact(received["raw"])["data"]["updatedAt"])
    listed = api.get(f"{V2}/transactions/{txn_id}/notifications", headers=headers).json()
    stamps = zoned_fields(listed["data"])
    assert stamps and all(ZONED.match(v) for v in stamps.values()), stamps
