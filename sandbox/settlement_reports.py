"""Settlement reports as each simulated PSP publishes them (lines: sandbox.settlements).

- Paymaxis: ``GET /paymaxis/api/v1/settlements?date=YYYY-MM-DD[&cursor=…][&limit=…]``
  (Bearer API key), JSON in cursor pages: ``{"status", "timestamp", "date", "result":
  [line, …], "nextCursor"}``, ``nextCursor`` null on the last page. Amounts are decimal
  strings (``"grossAmount": "200.00"``), so that no client reads them as floats; the day is
  a UTC day; ``settledAt`` is UTC.
- Sticpay: ``POST /sticpay/api/settlement`` (signed form: ``merchant_email``,
  ``settle_date=YYYYMMDD``, ``sign``) answers a CSV file, streamed: a header row, a row per
  line, and a last row ``TOTAL ROWS,<n>``. Its day and times are Seoul's (KST, no
  offset written), its amounts are written ``"1,234.50"`` with thousands separators, and a
  negative net in parentheses, ``(12.00)``, as its accountants write it.

A report for a day that has not begun in the PSP's time zone does not exist yet (404).
Today's is served as it stands so far.
"""

from __future__ import annotations

import base64
import csv
import functools
import io
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from sandbox import paymaxis, sticpay
from sandbox.common import api_fault, context, read_fields
from sandbox.money import places
from sandbox.settlements import (
    TARIFFS,
    TIME_ZONES,
    Line,
    Synthetic,
    amount_text,
    report_lines,
    synthetic_count,
)
from sandbox.state import now_iso

router = APIRouter(tags=["settlements"])

PAGE_DEFAULT, PAGE_MAX = 1000, 10_000
STICPAY_TYPES = {
    "PAYMENT": "DEPOSIT",
    "PAYOUT": "WITHDRAW",
    "REFUND": "REFUND",
    "CHARGEBACK": "CHARGEBACK",
    "FEE_ADJUSTMENT": "FEE ADJ",
}
STICPAY_HEADER = [
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
_CSV_ROWS_PER_CHUNK = 2000


def _future(psp: str, day: date) -> bool:
    return day > datetime.now(TIME_ZONES[psp]).date()


# -- Paymaxis: JSON cursor pages ------------------------------------------------------------


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o{offset}".encode()).decode().rstrip("=")


def _offset(cursor: str | None) -> int | None:
    if not cursor:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        return int(text[1:]) if text.startswith("o") and int(text[1:]) >= 0 else None
    except (ValueError, UnicodeDecodeError):
        return None


def _paymaxis_line(line: Line, broken: bool) -> str:
    gross = "12,3x" if broken else amount_text(line.gross, line.places)
    return (
        f'{{"id":{json.dumps(line.line_id)},"paymentId":{json.dumps(line.payment_id)},'
        f'"referenceId":{json.dumps(line.reference)},"type":"{line.kind}",'
        f'"grossAmount":"{gross}","fee":"{amount_text(line.fee, line.places)}",'
        f'"netAmount":"{amount_text(line.net, line.places)}","currency":"{line.currency}",'
        f'"settledAt":"{line.settled_at.astimezone(UTC).isoformat(timespec="milliseconds")[:-6]}Z"}}'
    )


@functools.lru_cache(maxsize=8)
def _synthetic_amounts(psp: str, currency: str, style: str) -> list[str]:
    """The gross, fee and net of every residue of a synthetic report, as ``style`` writes
    them (sandbox.settlements.Synthetic)."""
    currency_places, tariff = places(currency), TARIFFS[psp]["PAYMENT"]
    out = []
    for residue in range(Synthetic.PERIOD):
        gross = 100 + residue
        fee = tariff.fee(gross, currency_places)
        if style == "json":
            texts = (amount_text(v, currency_places) for v in (gross, fee, gross - fee))
            out.append('"grossAmount":"{}","fee":"{}","netAmount":"{}"'.format(*texts))
        else:
            texts = (_sticpay_amount(v, currency_places) for v in (gross, fee, gross - fee))
            out.append(",".join(f'"{t}"' if "," in t else t for t in texts))
    return out


@functools.lru_cache(maxsize=8)
def _clock(prefix: str, separator: str) -> list[str]:
    """``prefix`` and every second of a day, ``HH:MM:SS``."""
    return [f"{prefix}{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(86_400)]


def _paymaxis_synthetic(spec: Synthetic, start: int, stop: int) -> str:
    amounts = _synthetic_amounts(spec.psp, spec.currency, "json")
    clock = _clock(f"{spec.day}T", ":")
    seed, prefix, step, currency = spec.seed, spec.reference_prefix, spec.step_ms, spec.currency
    return ",".join(
        f'{{"id":"stl_s{seed}_{i}","paymentId":"pmx_s{seed}_{i:08d}",'
        f'"referenceId":"{prefix}{i:08d}","type":"PAYMENT",{amounts[spec.residue(i)]},'
        f'"currency":"{currency}","settledAt":"{clock[i * step // 1000]}.{i * step % 1000:03d}Z"}}'
        for i in range(start, stop)
    )


@router.get("/paymaxis/api/v1/settlements")
async def paymaxis_settlements(
    request: Request, date: str = "", cursor: str | None = None, limit: int = PAGE_DEFAULT
) -> Response:
    api_key, refused = await paymaxis._guard(request)
    if refused is not None:
        return refused
    owner = str(api_key)
    try:
        day = datetime.strptime(date, "%Y-%m-%d").date()
    except ValueError:
        return paymaxis._error(400, "date must be YYYY-MM-DD")
    offset = _offset(cursor)
    if offset is None:
        return paymaxis._error(400, "cursor is not one this API gave")
    if _future("paymaxis", day):
        return paymaxis._error(404, f"no settlement report for {day} yet")
    limit = max(1, min(limit, PAGE_MAX))
    sandbox = context(request)
    ledger = sandbox.ledger
    total = synthetic_count(ledger, "paymaxis", owner, day)
    broken = ledger.broken
    if total is not None:
        spec = ledger.synthetic[("paymaxis", owner, day)]
        items = _paymaxis_synthetic(spec, offset, min(offset + limit, total))
        more = offset + limit < total
    else:
        lines = list(report_lines(sandbox.store, ledger, "paymaxis", owner, day))
        page, more = lines[offset : offset + limit], offset + limit < len(lines)
        items = ",".join(
            _paymaxis_line(line, broken == "malformed" and i == 0) for i, line in enumerate(page)
        )
    next_cursor = json.dumps(_cursor(offset + limit)) if more else "null"
    body = (
        f'{{"status":200,"timestamp":"{now_iso()}","date":"{day}","result":[{items}],'
        f'"nextCursor":{next_cursor}}}'
    ).encode()
    if broken == "truncated" and not more:
        body = body[: len(body) // 2]  # the last page ends mid-line
    return Response(body, media_type="application/json")


# -- Sticpay: a CSV file ---------------------------------------------------------------------


def _sticpay_amount(value: int, currency_places: int) -> str:
    negative = value < 0
    whole, part = divmod(abs(value), 10**currency_places) if currency_places else (abs(value), 0)
    text = f"{whole:,}" + (f".{part:0{currency_places}d}" if currency_places else "")
    return f"({text})" if negative else text


def _sticpay_row(line: Line, broken: bool) -> list[str]:
    local = line.settled_at.astimezone(TIME_ZONES["sticpay"])
    return [
        local.strftime("%Y%m%d"),
        line.payment_id or "",
        line.reference or "",
        STICPAY_TYPES[line.kind],
        line.currency,
        "abc" if broken else _sticpay_amount(line.gross, line.places),
        _sticpay_amount(line.fee, line.places),
        _sticpay_amount(line.net, line.places),
        local.strftime("%Y/%m/%d %H:%M:%S"),
    ]


def _csv_chunks(lines: Iterator[Line], broken: str | None) -> Iterator[bytes]:
    """The file, a few thousand rows per chunk: never held whole."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(STICPAY_HEADER)
    count = 0
    for line in lines:
        writer.writerow(_sticpay_row(line, broken == "malformed" and count == 0))
        count += 1
        if count % _CSV_ROWS_PER_CHUNK == 0:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    if broken != "truncated":  # a cut file ends without its count
        writer.writerow(["TOTAL ROWS", str(count)])
    yield buffer.getvalue().encode()


def _sticpay_synthetic(spec: Synthetic, broken: str | None) -> Iterator[bytes]:
    amounts = _synthetic_amounts(spec.psp, spec.currency, "csv")
    settle_date = f"{spec.day:%Y%m%d}"
    clock = _clock(f"{spec.day:%Y/%m/%d} ", ":")
    seed, prefix, step, currency = spec.seed, spec.reference_prefix, spec.step_ms, spec.currency
    yield (",".join(STICPAY_HEADER) + "\r\n").encode()
    for start in range(0, spec.lines, _CSV_ROWS_PER_CHUNK):
        stop = min(start + _CSV_ROWS_PER_CHUNK, spec.lines)
        yield "".join(
            f"{settle_date},stp_s{seed}_{i:08d},{prefix}{i:08d},DEPOSIT,{currency},"
            f"{amounts[spec.residue(i)]},{clock[i * step // 1000]}\r\n"
            for i in range(start, stop)
        ).encode()
    if broken != "truncated":
        yield f"TOTAL ROWS,{spec.lines}\r\n".encode()


@router.post("/sticpay/api/settlement")
async def sticpay_settlement(request: Request) -> Response:
    sandbox = context(request)
    status = await api_fault(sandbox.store, "sticpay")
    if status is not None:
        return sticpay._error(status, "UNAVAILABLE", "sandbox fault injection")
    fields = await read_fields(request)
    if not fields.get("merchant_email") or not fields.get("settle_date"):
        return sticpay._error(
            400, "MISSING_PARAMETER", "merchant_email and settle_date are required"
        )
    if not sticpay._signed(sandbox.store, fields):
        return sticpay._error(401, "INVALID_SIGN", "sign does not match")
    try:
        day = datetime.strptime(fields["settle_date"], "%Y%m%d").date()
    except ValueError:
        return sticpay._error(400, "INVALID_DATE", "settle_date must be YYYYMMDD")
    if _future("sticpay", day):
        return sticpay._error(404, "REPORT_NOT_READY", f"no settlement file for {day} yet")
    owner, ledger = fields["merchant_email"], sandbox.ledger
    if synthetic_count(ledger, "sticpay", owner, day) is not None:
        chunks = _sticpay_synthetic(ledger.synthetic[("sticpay", owner, day)], ledger.broken)
    else:
        lines = iter(list(report_lines(sandbox.store, ledger, "sticpay", owner, day)))
        chunks = _csv_chunks(lines, ledger.broken)
    return StreamingResponse(
        chunks,
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="settlement_{day:%Y%m%d}.csv"'},
    )
