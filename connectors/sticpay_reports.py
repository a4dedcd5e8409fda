"""Sticpay settlement files: a signed ``POST /api/settlement`` answers a CSV file.

Sticpay's own words: columns ``Settle Date`` (``YYYYMMDD``), ``Transaction No``, ``Merchant
Order No`` (our reference), ``Type`` (``DEPOSIT``, ``WITHDRAW``, ``REFUND``, ``CHARGEBACK``,
``FEE ADJ``), ``Currency``, ``Gross``, ``Fee``, ``Net`` and ``Settled Time (KST)``; amounts
with thousands separators (``1,234.50``) and negatives in parentheses (``(12.00)``); times
in Seoul without an offset; the day a Seoul day. The last row, ``TOTAL ROWS,<n>``, is how a
complete file is told from one cut short. Columns are found by name, not position.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import orjson

from connectors.base import (
    ReportError,
    ReportNotReady,
    SettlementLine,
    SettlementType,
    settlement_net,
)
from connectors.signing import sticpay_sign
from connectors.streaming import streamed
from connxt.http_errors import TransportError
from connxt.settings import get_settings

PSP = "Sticpay"
ZONE = "Asia/Seoul"
_SEOUL = ZoneInfo(ZONE)
TYPES = {
    "DEPOSIT": SettlementType.PAYMENT,
    "WITHDRAW": SettlementType.PAYOUT,
    "REFUND": SettlementType.REFUND,
    "CHARGEBACK": SettlementType.CHARGEBACK,
    "FEE ADJ": SettlementType.FEE_ADJUSTMENT,
}
COLUMNS = (
    "Settle Date",
    "Transaction No",
    "Merchant Order No",
    "Type",
    "Currency",
    "Gross",
    "Fee",
    "Net",
    "Settled Time (KST)",
)
TRAILER = "TOTAL ROWS"
_AMOUNT = re.compile(r"(\()?(\d{1,3}(?:,\d{3})*|\d+)(\.\d{1,8})?(?(1)\))")
_CURRENCY = re.compile(r"[A-Z]{3}")
_TIME = re.compile(r"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d")


def settlement_lines(
    base_url: str, merchant: str, api_key: str, day: date
) -> Iterator[SettlementLine]:
    """Every row of the merchant's file of ``day``, streamed; ReportError when the file
    cannot be read whole (after the rows read so far)."""
    fields = {"merchant_email": merchant, "settle_date": f"{day:%Y%m%d}"}
    form = urlencode({**fields, "sign": sticpay_sign(fields, api_key)}).encode()
    try:
        with streamed(
            "POST",
            f"{base_url}/api/settlement",
            psp=PSP,
            cap_bytes=get_settings().settlement_report_max_bytes,
            body=form,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        ) as answer:
            if answer.status_code != 200:
                _refused(answer.status_code, answer.read()[:65536], day)
            rows = csv.reader(line.decode("utf-8") for line in answer.lines())
            yield from _lines(rows, fields["settle_date"])
    except TransportError as exc:
        raise ReportError(f"the file could not be read: {type(exc).__name__}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ReportError(f"the file is not UTF-8 text: {exc}") from exc


def _refused(status: int, body: bytes, day: date) -> None:
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        answer = {}
    code = answer.get("code") if isinstance(answer, dict) else None
    message = answer.get("message") if isinstance(answer, dict) else None
    if status == 404:
        raise ReportNotReady(f"Sticpay has no settlement file for {day}: {code} {message}")
    raise ReportError(f"HTTP {status}: {code} {message}")


def _lines(rows: Iterator[list[str]], settle_date: str) -> Iterator[SettlementLine]:
    header = next(rows, None)
    if header is None:
        raise ReportError("the file is empty: not even its header")
    missing = [name for name in COLUMNS if name not in header]
    if missing:
        raise ReportError(f"the file has no column {', '.join(missing)}")
    at = [header.index(name) for name in COLUMNS]
    count = 0
    for row in rows:
        if row and row[0] == TRAILER:
            if len(row) < 2 or row[1] != str(count) or next(rows, None) is not None:
                raise ReportError(f"the file's {TRAILER} row does not close its {count} rows")
            return
        count += 1
        yield _line(row, at, count, settle_date)
    raise ReportError(f"the file ends after {count} rows without its {TRAILER} row: cut short")


def _line(row: list[str], at: list[int], number: int, settle_date: str) -> SettlementLine:
    try:
        day, payment_id, reference, kind, currency, gross, fee, net, settled = (row[i] for i in at)
    except IndexError:
        raise ReportError(f"row {number} has {len(row)} of the file's columns") from None
    if day != settle_date:
        raise ReportError(f"row {number} settles on {day}, not in the file of {settle_date}")
    if kind not in TYPES:
        raise ReportError(f"row {number}: type {kind!r} is not one of Sticpay's")
    if not _CURRENCY.fullmatch(currency):
        raise ReportError(f"row {number}: currency {currency!r} is not an ISO 4217 code")
    if not _TIME.fullmatch(settled):
        raise ReportError(f"row {number}: settled time {settled!r} is not YYYY/MM/DD HH:MM:SS")
    try:
        amounts = [amount(text) for text in (gross, fee, net)]
    except ValueError as exc:
        raise ReportError(f"row {number}: {exc}") from None
    settled_at = datetime.fromisoformat(settled.replace("/", "-")).replace(tzinfo=_SEOUL)
    if amounts[2] != settlement_net(TYPES[kind], amounts[0], amounts[1]):
        raise ReportError(f"row {number}: Net {net} is not Gross and Fee as {kind}")
    gross_amount, fee_amount, net_amount = amounts
    return SettlementLine(
        payment_id or None,
        reference or None,
        TYPES[kind],
        gross_amount,
        fee_amount,
        net_amount,
        currency,
        settled_at,
    )


def amount(text: str) -> Decimal:
    """``"1,234.50"`` → 1234.50, ``"(12.00)"`` → -12.00; ValueError for anything else."""
    found = _AMOUNT.fullmatch(text)
    if found is None:
        raise ValueError(f"amount {text!r} is not in Sticpay's format")
    value = Decimal(found.group(2).replace(",", "") + (found.group(3) or ""))
    return -value if found.group(1) else value
