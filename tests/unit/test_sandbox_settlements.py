"""The sandbox's settlement reports: what its payments really did, each PSP in its own
format, falsified on demand (sandbox.settlements, settlement_reports, settlement_control).

Read the way a PSP's client would read them: Paymaxis's JSON pages followed by cursor,
Sticpay's CSV file in Seoul's day with its own amount format.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from sandbox.app import create_app
from sandbox.signing import sticpay_sign

PMX = {"Authorization": "Bearer pk_report"}
STP_EMAIL, STP_KEY = "report@example.com", "stp_report_key"
KST = ZoneInfo("Asia/Seoul")


@pytest.fixture
def sandbox():
    with TestClient(create_app()) as client:
        client.put("/_control/accounts", json={"apiKey": STP_KEY, "merchantEmail": STP_EMAIL})
        yield client


def deposit(sandbox, reference: str, amount: str = "200.00", currency: str = "USD") -> str:
    body = {"paymentType": "DEPOSIT", "amount": amount, "currency": currency}
    created = sandbox.post(
        "/paymaxis/api/v1/payments", json={**body, "referenceId": reference}, headers=PMX
    )
    payment_id = created.json()["result"]["id"]
    sandbox.post(f"/_control/complete/{payment_id}", json={"decision": "approve"})
    return payment_id


def paymaxis_report(sandbox, day: date, limit: int = 2) -> list[dict]:
    """Every page, followed by cursor, as a client reads them."""
    lines, cursor = [], None
    while True:
        params = {"date": str(day), "limit": limit, **({"cursor": cursor} if cursor else {})}
        page = sandbox.get("/paymaxis/api/v1/settlements", params=params, headers=PMX)
        assert page.status_code == 200, page.text
        lines += page.json()["result"]
        cursor = page.json()["nextCursor"]
        if cursor is None:
            return lines


def sticpay_report(sandbox, day: date) -> tuple[int, str]:
    fields = {"merchant_email": STP_EMAIL, "settle_date": f"{day:%Y%m%d}"}
    answer = sandbox.post(
        "/sticpay/api/settlement", data={**fields, "sign": sticpay_sign(fields, STP_KEY)}
    )
    return answer.status_code, answer.text


def today(zone=UTC) -> date:
    return datetime.now(zone).date()


def test_a_paymaxis_report_lists_what_settled_with_the_tariffs_fee(sandbox):
    paid = deposit(sandbox, "txn_a")
    unpaid = sandbox.post(
        "/paymaxis/api/v1/payments",
        json={"paymentType": "DEPOSIT", "amount": "5", "currency": "USD", "referenceId": "txn_b"},
        headers=PMX,
    ).json()["result"]["id"]
    payout = sandbox.post(
        "/paymaxis/api/v1/payments",
        json={
            "paymentType": "WITHDRAWAL",
            "amount": "50",
            "currency": "USD",
            "referenceId": "txn_c",
        },
        headers=PMX,
    ).json()["result"]["id"]
    lines = paymaxis_report(sandbox, today())
    by_payment = {line["paymentId"]: line for line in lines}
    assert unpaid not in by_payment  # never paid, never settled
    assert by_payment[paid] | {"settledAt": None} == {
        "id": f"stl_{paid}",
        "paymentId": paid,
        "referenceId": "txn_a",
        "type": "PAYMENT",
        "grossAmount": "200.00",
        "fee": "6.10",  # 2.9% + 0.30
        "netAmount": "193.90",
        "currency": "USD",
        "settledAt": None,
    }
    assert (by_payment[payout]["type"], by_payment[payout]["fee"]) == ("PAYOUT", "1.00")
    assert by_payment[payout]["netAmount"] == "-51.00"  # money that left the balance


def test_each_injected_difference_falsifies_the_report_as_named(sandbox):
    ids = {
        kind: deposit(sandbox, f"txn_{kind}") for kind in ("amount", "drop", "duplicate", "delay")
    }
    for kind, payment_id in ids.items():
        assert (
            sandbox.post(
                "/_control/settlements/inject", json={"kind": kind, "paymentId": payment_id}
            ).status_code
            == 200
        )
    unknown = sandbox.post("/_control/settlements/inject", json={"kind": "unknown"}).json()[
        "paymentId"
    ]
    lines = paymaxis_report(sandbox, today())
    counts = {
        payment_id: [line["paymentId"] for line in lines].count(payment_id)
        for payment_id in [*ids.values(), unknown]
    }
    assert counts == {
        ids["amount"]: 1,
        ids["drop"]: 0,
        ids["duplicate"]: 2,
        ids["delay"]: 0,
        unknown: 1,
    }
    assert (
        next(line for line in lines if line["paymentId"] == ids["amount"])["grossAmount"]
        == "199.00"
    )
    # The delayed line settles tomorrow, whose report does not exist yet.
    future = sandbox.get(
        "/paymaxis/api/v1/settlements",
        params={"date": str(today() + timedelta(days=1))},
        headers=PMX,
    )
    assert future.status_code == 404


def test_chargebacks_and_fee_adjustments_name_their_payment(sandbox):
    paid = deposit(sandbox, "txn_cb", amount="80.00")
    sandbox.post(
        "/_control/settlements/adjustments", json={"kind": "chargeback", "paymentId": paid}
    )
    sandbox.post(
        "/_control/settlements/adjustments", json={"kind": "fee_adjustment", "amount": "2.50"}
    )
    lines = paymaxis_report(sandbox, today())
    chargeback = next(line for line in lines if line["type"] == "CHARGEBACK")
    assert (chargeback["paymentId"], chargeback["referenceId"]) == (paid, "txn_cb")
    assert (chargeback["grossAmount"], chargeback["fee"], chargeback["netAmount"]) == (
        "80.00",
        "15.00",
        "-95.00",
    )
    fee = next(line for line in lines if line["type"] == "FEE_ADJUSTMENT")
    assert (fee["paymentId"], fee["grossAmount"], fee["fee"], fee["netAmount"]) == (
        None,
        "0.00",
        "2.50",
        "-2.50",
    )


def test_a_sticpay_file_is_a_seoul_day_in_its_own_amount_format(sandbox):
    fields = {
        "merchant_email": STP_EMAIL,
        "order_no": "txn_stp",
        "order_amount": "1234.50",
        "order_currency": "USD",
        "receiver_email": "payee@example.com",
        "type": "WITHDRAW",
    }
    paid = sandbox.post(
        "/sticpay/api/withdraw", data={**fields, "sign": sticpay_sign(fields, STP_KEY)}
    )
    payment_id = paid.json()["data"]["transaction_id"]
    status, text = sticpay_report(sandbox, today(KST))
    assert status == 200
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == [
        "Settle Date",
        "Transaction No",
        "Merchant Order No",
        "Type",
        "Currency",
        "Gross",
        "Fee",
        "Net",
        "Settled Time (KST)",
    ]
    assert rows[-1] == ["TOTAL ROWS", "1"]
    row = rows[1]
    assert row[:8] == [
        f"{today(KST):%Y%m%d}",
        payment_id,
        "txn_stp",
        "WITHDRAW",
        "USD",
        "1,234.50",
        "18.52",
        "(1,253.02)",
    ]
    settled = datetime.strptime(row[8], "%Y/%m/%d %H:%M:%S").replace(tzinfo=KST)
    assert abs(settled - datetime.now(UTC)) < timedelta(minutes=1)  # Seoul time, no offset written


def test_broken_reports_are_served_broken(sandbox):
    deposit(sandbox, "txn_broken")
    sandbox.post("/_control/settlements/inject", json={"kind": "truncated"})
    page = sandbox.get("/paymaxis/api/v1/settlements", params={"date": str(today())}, headers=PMX)
    with pytest.raises(ValueError):
        page.json()
    assert sticpay_report(sandbox, today(KST))[1].count("TOTAL ROWS") == 0
    sandbox.post("/_control/settlements/inject", json={"kind": "malformed"})
    assert paymaxis_report(sandbox, today())[0]["grossAmount"] == "12,3x"
    sandbox.post("/_control/reset")
    assert paymaxis_report(sandbox, today()) == []  # payments and faults forgotten


def test_a_synthetic_report_follows_its_formula_in_both_formats(sandbox):
    spec = {"account": "pk_report", "date": "2025-01-15", "lines": 25, "seed": 3}
    sandbox.post("/_control/settlements/synthetic", json={**spec, "psp": "paymaxis"})
    lines = paymaxis_report(sandbox, date(2025, 1, 15), limit=10)
    assert len(lines) == 25
    i = 17
    gross = 100 + (i * 7919 + 3) % 99900
    assert lines[i]["paymentId"] == f"pmx_s3_{i:08d}"
    assert lines[i]["referenceId"] == f"txn_s{i:08d}"
    assert lines[i]["grossAmount"] == f"{gross // 100}.{gross % 100:02d}"
    assert (
        lines[i]["settledAt"]
        == f"2025-01-15T{i * (86_400_000 // 25) // 3_600_000:02d}:" + lines[i]["settledAt"][14:]
    )
    sandbox.post(
        "/_control/settlements/synthetic", json={**spec, "psp": "sticpay", "account": STP_EMAIL}
    )
    status, text = sticpay_report(sandbox, date(2025, 1, 15))
    rows = list(csv.reader(io.StringIO(text)))
    assert status == 200 and len(rows) == 27 and rows[-1] == ["TOTAL ROWS", "25"]
    assert rows[1 + i][1:4] == [f"stp_s3_{i:08d}", f"txn_s{i:08d}", "DEPOSIT"]
    assert rows[1 + i][5] == f"{gross // 100}.{gross % 100:02d}"


def test_bad_requests_get_the_psps_refusals(sandbox):
    assert (
        sandbox.get(
            "/paymaxis/api/v1/settlements", params={"date": "2025-13-01"}, headers=PMX
        ).status_code
        == 400
    )
    assert (
        sandbox.get(
            "/paymaxis/api/v1/settlements",
            params={"date": "2025-01-01", "cursor": "nope"},
            headers=PMX,
        ).status_code
        == 400
    )
    assert (
        sandbox.get("/paymaxis/api/v1/settlements", params={"date": "2025-01-01"}).status_code
        == 401
    )
    fields = {"merchant_email": STP_EMAIL, "settle_date": "20250101", "sign": "0" * 64}
    assert sandbox.post("/sticpay/api/settlement", data=fields).status_code == 401
    assert (
        sandbox.post(
            "/_control/settlements/inject", json={"kind": "drop", "paymentId": "pmx_none"}
        ).status_code
        == 404
    )
