"""Paymaxis settlement reports: ``GET /api/v1/settlements?date=YYYY-MM-DD`` in cursor pages.

Each page is ``{"result": [line, ...], "nextCursor": "..." | null}``; a line names the
payment (``paymentId``), our reference (``referenceId``), its ``type`` and its money as
decimal strings (``grossAmount``, ``fee``, ``netAmount``), with ``settledAt`` in UTC. The
day is a UTC day.

Pages are fetched one ahead, on a thread, while the caller stores the lines of the page
before: the PSP writes the next page while we write this one down.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import orjson

from connectors.base import (
    ReportError,
    ReportNotReady,
    SettlementLine,
    SettlementType,
    settlement_net,
)
from connectors.streaming import streamed
from connxt.http_errors import TransportError
from connxt.settings import get_settings

PSP = "Paymaxis"
PAGE_SIZE = 10_000  # the API's largest page
MAX_PAGES = 100_000  # a cursor that never ends is a broken API, not a big day
TYPES = {
    "PAYMENT": SettlementType.PAYMENT,
    "REFUND": SettlementType.REFUND,
    "PAYOUT": SettlementType.PAYOUT,
    "CHARGEBACK": SettlementType.CHARGEBACK,
    "FEE_ADJUSTMENT": SettlementType.FEE_ADJUSTMENT,
}
_NOT_DECIMAL = frozenset("eEnNiI_ +")
_CURRENCY = re.compile(r"[A-Z]{3}")


def settlement_lines(base_url: str, api_key: str, day: date) -> Iterator[SettlementLine]:
    """Every line of the account's report of ``day``; ReportError when it cannot be read
    whole (after the lines read so far)."""
    url = f"{base_url}/api/v1/settlements"
    pool = ThreadPoolExecutor(1, thread_name_prefix="paymaxis-report")
    try:
        pending: Future[Any] | None = pool.submit(_page, url, api_key, day, None, 1)
        seen: set[str] = set()
        number = 0
        while pending is not None:
            page, index = pending.result(), len(seen) + 1
            items, cursor = _items(page, index)
            if cursor is not None and (cursor in seen or len(seen) >= MAX_PAGES):
                raise ReportError(f"page {index} leads back to a page already read")
            if cursor is not None:
                seen.add(cursor)
                pending = pool.submit(_page, url, api_key, day, cursor, index + 1)
            else:
                pending = None
            for item in items:
                number += 1
                yield line_of(item, number)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _page(url: str, api_key: str, day: date, cursor: str | None, index: int) -> Any:
    params = {"date": day.isoformat(), "limit": str(PAGE_SIZE)}
    if cursor is not None:
        params["cursor"] = cursor
    cap = get_settings().settlement_report_max_bytes
    try:
        with streamed(
            "GET",
            f"{url}?{urlencode(params)}",
            psp=PSP,
            cap_bytes=cap,
            headers={"Authorization": f"Bearer {api_key}"},
        ) as answer:
            body = answer.read()
            status = answer.status_code
    except TransportError as exc:
        raise ReportError(f"page {index}: {type(exc).__name__}: {exc}") from exc
    if status == 404:
        raise ReportNotReady(f"Paymaxis has no settlement report for {day}: {_message(body)}")
    if status != 200:
        raise ReportError(f"page {index}: HTTP {status}: {_message(body)}")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ReportError(f"page {index} is not JSON (cut short?): {exc}") from exc


def _message(body: bytes) -> str:
    try:
        found = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:200].decode(errors="replace")
    return str(found.get("message") or found.get("error") or "") if isinstance(found, dict) else ""


def _items(page: Any, index: int) -> tuple[list[Any], str | None]:
    items = page.get("result") if isinstance(page, dict) else None
    cursor = page.get("nextCursor") if isinstance(page, dict) else None
    if not isinstance(items, list) or not (cursor is None or isinstance(cursor, str)):
        raise ReportError(f"page {index} is not a page of settlement lines")
    return items, cursor or None


def line_of(item: Any, number: int) -> SettlementLine:
    """One line as the report writes it; ReportError naming the line when it is not one.
    Written for a million calls a report: checks by class and substring, no patterns."""
    try:
        kind = TYPES[item["type"]]
        gross, fee, net = _amounts(item["grossAmount"], item["fee"], item["netAmount"])
        currency = item["currency"]
        settled_at = datetime.fromisoformat(item["settledAt"])
        payment_id, reference = item.get("paymentId"), item.get("referenceId")
    except (KeyError, TypeError, ValueError) as exc:
        raise ReportError(f"line {number} is unreadable: {type(exc).__name__} {exc}") from exc
    if currency.__class__ is not str or len(currency) != 3 or not _CURRENCY.fullmatch(currency):
        raise ReportError(f"line {number}: currency {currency!r} is not an ISO 4217 code")
    if settled_at.tzinfo is None:
        raise ReportError(f"line {number}: settledAt has no time zone")
    if not (payment_id is None or payment_id.__class__ is str) or not (
        reference is None or reference.__class__ is str
    ):
        raise ReportError(f"line {number}: paymentId and referenceId are text")
    if net != settlement_net(kind, gross, fee):
        raise ReportError(f"line {number}: netAmount {net} is not grossAmount and fee as {kind}")
    return SettlementLine(
        payment_id or None, reference or None, kind, gross, fee, net, currency, settled_at
    )


def _amounts(gross: Any, fee: Any, net: Any) -> tuple[Decimal, Decimal, Decimal]:
    # Decimal text only: a JSON number would have been read as a float, and Decimal() also
    # takes forms no PSP writes ("1e3", "NaN", "Infinity", "1_000", " 5", "+5").
    if not (gross.__class__ is str and fee.__class__ is str and net.__class__ is str):
        raise ValueError("amounts are not decimal text")
    if not (gross and fee and net) or not _NOT_DECIMAL.isdisjoint(gross + fee + net):
        raise ValueError(f"amounts {gross!r}, {fee!r}, {net!r} are not decimal text")
    try:
        return Decimal(gross), Decimal(fee), Decimal(net)
    except ArithmeticError:
        raise ValueError(f"amounts {gross!r}, {fee!r}, {net!r} are not numbers") from None
