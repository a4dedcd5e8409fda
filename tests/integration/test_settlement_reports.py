"""Connectors read settlement reports from the sandbox over real HTTP, streamed: Paymaxis's
pages followed by cursor, Sticpay's CSV in its own words; anything short of a whole,
readable report is a ReportError naming what was wrong (connectors/*_reports.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import httpx
import pytest
from prometheus_client import REGISTRY

from connectors import paymaxis_reports
from connectors.base import (
    ReportError,
    ReportNotReady,
    SettlementLine,
    SettlementReports,
    SettlementType,
)
from connectors.paymaxis import PaymaxisConnector
from connectors.sticpay import SticpayConnector
from connectors.sticpay_reports import amount
from connectors.streaming import streamed
from connxt.http_errors import AnswerTooLarge
from sandbox.app import create_app
from sandbox.signing import sticpay_sign
from sandbox.testing import serve

PMX = {"apiKey": "pk_reports"}
STP = {"merchantEmail": "reports@example.com", "apiKey": "stp_reports_key"}


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    with serve(create_app()) as url:
        yield url


@pytest.fixture
def http(sandbox_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox_url, timeout=10) as client:
        client.post("/_control/reset")
        client.put("/_control/accounts", json=STP).raise_for_status()
        yield client


@pytest.fixture
def paymaxis(sandbox_url: str) -> PaymaxisConnector:
    return PaymaxisConnector(base_url=f"{sandbox_url}/paymaxis")


@pytest.fixture
def sticpay(sandbox_url: str) -> SticpayConnector:
    return SticpayConnector(base_url=f"{sandbox_url}/sticpay")


def paid_deposit(http: httpx.Client, reference: str, amount: str = "200.00") -> str:
    created = http.post(
        "/paymaxis/api/v1/payments",
        json={
            "paymentType": "DEPOSIT",
            "amount": amount,
            "currency": "USD",
            "referenceId": reference,
        },
        headers={"Authorization": f"Bearer {PMX['apiKey']}"},
    ).json()["result"]["id"]
    http.post(f"/_control/complete/{created}", json={"decision": "approve"}).raise_for_status()
    return created


def sticpay_payout(http: httpx.Client, reference: str, amount: str) -> str:
    fields = {
        "merchant_email": STP["merchantEmail"],
        "order_no": reference,
        "order_amount": amount,
        "order_currency": "USD",
        "receiver_email": "payee@example.com",
        "type": "WITHDRAW",
    }
    answer = http.post(
        "/sticpay/api/withdraw", data={**fields, "sign": sticpay_sign(fields, STP["apiKey"])}
    )
    return answer.json()["data"]["transaction_id"]


def test_both_connectors_offer_settlement_reports(paymaxis, sticpay):
    assert isinstance(paymaxis, SettlementReports) and paymaxis.settlement_zone == "UTC"
    assert isinstance(sticpay, SettlementReports) and sticpay.settlement_zone == "Asia/Seoul"


def test_paymaxis_pages_are_followed_and_read_exactly(http, paymaxis, monkeypatch):
    monkeypatch.setattr(paymaxis_reports, "PAGE_SIZE", 2)
    ids = [paid_deposit(http, f"txn_p{i}", f"{100 + i}.25") for i in range(5)]
    http.post("/_control/settlements/adjustments", json={"kind": "chargeback", "paymentId": ids[0]})
    lines = list(paymaxis.settlement_lines(PMX, datetime.now(UTC).date()))
    assert [line.psp_payment_id for line in lines] == [*ids, ids[0]]
    first = lines[0]
    assert first == SettlementLine(
        ids[0],
        "txn_p0",
        SettlementType.PAYMENT,
        Decimal("100.25"),
        Decimal("3.21"),
        Decimal("97.04"),
        "USD",
        first.settled_at,
    )
    assert first.settled_at.tzinfo is not None
    assert abs(first.settled_at - datetime.now(UTC)) < timedelta(minutes=1)
    chargeback = lines[-1]
    assert (chargeback.type, chargeback.gross, chargeback.net) == (
        SettlementType.CHARGEBACK,
        Decimal("100.25"),
        Decimal("-115.25"),
    )


def test_sticpay_file_is_read_in_seoul_with_its_amounts(http, sticpay):
    payment_id = sticpay_payout(http, "txn_s1", "1234.50")
    day = datetime.now(ZoneInfo("Asia/Seoul")).date()
    [line] = list(sticpay.settlement_lines(STP, day))
    assert line[:7] == (
        payment_id,
        "txn_s1",
        SettlementType.PAYOUT,
        Decimal("1234.50"),
        Decimal("18.52"),
        Decimal("-1253.02"),
        "USD",
    )
    assert line.settled_at.utcoffset() == timedelta(hours=9)
    assert abs(line.settled_at - datetime.now(UTC)) < timedelta(minutes=1)


@pytest.mark.parametrize(
    "text, value",
    [("1,234.50", "1234.50"), ("(12.00)", "-12.00"), ("7", "7"), ("1234567.8", "1234567.8")],
)
def test_sticpay_amounts(text, value):
    assert amount(text) == Decimal(value)


@pytest.mark.parametrize("text", ["1,23.00", "(12.00", "12.00)", "-12.00", "1e3", "", "12,3x"])
def test_sticpay_amounts_refused(text):
    with pytest.raises(ValueError):
        amount(text)


@pytest.mark.parametrize("broken", ["malformed", "truncated"])
def test_a_broken_report_is_an_error_naming_what_is_wrong(http, paymaxis, sticpay, broken):
    paid_deposit(http, "txn_b1")
    sticpay_payout(http, "txn_b2", "10.00")
    http.post("/_control/settlements/inject", json={"kind": broken}).raise_for_status()
    with pytest.raises(ReportError, match="unreadable" if broken == "malformed" else "not JSON"):
        list(paymaxis.settlement_lines(PMX, datetime.now(UTC).date()))
    seoul = datetime.now(ZoneInfo("Asia/Seoul")).date()
    with pytest.raises(ReportError, match="format" if broken == "malformed" else "cut short"):
        list(sticpay.settlement_lines(STP, seoul))


def test_a_day_not_begun_has_no_report_yet(paymaxis, sticpay):
    with pytest.raises(ReportNotReady):
        list(paymaxis.settlement_lines(PMX, date.today() + timedelta(days=3)))
    with pytest.raises(ReportNotReady):
        list(sticpay.settlement_lines(STP, date.today() + timedelta(days=3)))


def test_refused_credentials_and_an_unreachable_psp_are_report_errors(sticpay):
    with pytest.raises(ReportError, match="INVALID_SIGN"):
        list(sticpay.settlement_lines({**STP, "apiKey": "wrong"}, date(2025, 1, 15)))
    nowhere = PaymaxisConnector(base_url="http://127.0.0.1:9/paymaxis")
    with pytest.raises(ReportError, match="ConnectError"):
        list(nowhere.settlement_lines(PMX, date(2025, 1, 15)))


def test_a_synthetic_day_streams_with_its_cap_and_metrics(http, paymaxis, sandbox_url):
    spec = {
        "psp": "paymaxis",
        "account": PMX["apiKey"],
        "date": "2025-01-15",
        "lines": 25_000,
        "seed": 5,
    }
    http.post("/_control/settlements/synthetic", json=spec).raise_for_status()
    before = (
        REGISTRY.get_sample_value(
            "connxt_psp_request_seconds_count",
            {"psp": "Paymaxis", "method": "GET", "status": "200"},
        )
        or 0
    )
    count = sum(1 for _ in paymaxis.settlement_lines(PMX, date(2025, 1, 15)))
    assert count == 25_000
    after = REGISTRY.get_sample_value(
        "connxt_psp_request_seconds_count", {"psp": "Paymaxis", "method": "GET", "status": "200"}
    )
    assert after - before == 3  # three pages of at most 10,000
    url = f"{sandbox_url}/paymaxis/api/v1/settlements?date=2025-01-15&limit=10000"
    with (
        pytest.raises(AnswerTooLarge, match="over 100000|past 100000"),
        streamed(
            "GET",
            url,
            psp="Paymaxis",
            cap_bytes=100_000,
            headers={"Authorization": f"Bearer {PMX['apiKey']}"},
        ) as answer,
    ):
        answer.read()
