"""What each simulated PSP settled, per account and day: the lines of its settlement report.

A line is what a payment really did at the PSP: a completed deposit settles as a
``PAYMENT``, a paid withdrawal as a ``PAYOUT``, a refund as a ``REFUND``, each at the time it
completed, with the PSP's fee from its tariff. Chargebacks and fee adjustments are added
through ``/_control`` (they have no API of their own at a PSP either). The day is the PSP's
settlement day in its own time zone: UTC for Paymaxis, Seoul for Sticpay.

Tests and the demo can falsify a report (``inject``): a line that settles 1.00 less
(``amount``), none at all (``drop``), twice (``duplicate``), a day late (``delay``), or a line
for a payment nobody made (``unknown``). Reports can also be served broken
(``malformed``, ``truncated``), as a PSP's file sometimes is.

Money is counted in minor units here (integers): a report of a million lines is written
at the speed of integer arithmetic, and no rounding ever happens in between.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Literal
from zoneinfo import ZoneInfo

from sandbox.money import places
from sandbox.state import Payment, Store

Psp = Literal["paymaxis", "sticpay"]
Kind = Literal["PAYMENT", "REFUND", "PAYOUT", "CHARGEBACK", "FEE_ADJUSTMENT"]
Injection = Literal["amount", "drop", "duplicate", "delay"]

# The PSP's own time zone: its settlement day runs from midnight to midnight there.
TIME_ZONES: dict[str, ZoneInfo] = {"paymaxis": ZoneInfo("UTC"), "sticpay": ZoneInfo("Asia/Seoul")}

# What each PSP succeeds with, in its own words, and which line each payment type makes.
SETTLED_STATES = {"paymaxis": "COMPLETED", "sticpay": "SUCCESS"}
LINE_KIND: dict[str, Kind] = {"DEPOSIT": "PAYMENT", "WITHDRAWAL": "PAYOUT", "REFUND": "REFUND"}


@dataclass(frozen=True)
class Tariff:
    """A fee of ``percent_tenths`` tenths of a percent of the gross plus ``fixed_minor``
    minor units (of a two-place currency; scaled to the currency's places)."""

    percent_tenths: int
    fixed_minor: int = 0

    def fee(self, gross_minor: int, currency_places: int) -> int:
        fixed = self.fixed_minor * 10**currency_places // 100
        return (gross_minor * self.percent_tenths + 500) // 1000 + fixed


TARIFFS: dict[str, dict[str, Tariff]] = {
    "paymaxis": {
        "PAYMENT": Tariff(29, 30),  # 2.9% + 0.30
        "PAYOUT": Tariff(10, 50),  # 1.0% + 0.50
        "REFUND": Tariff(0, 0),
        "CHARGEBACK": Tariff(0, 1500),  # 15.00 per dispute
        "FEE_ADJUSTMENT": Tariff(0, 0),
    },
    "sticpay": {
        "PAYMENT": Tariff(35),  # 3.5%
        "PAYOUT": Tariff(15),  # 1.5%
        "REFUND": Tariff(0),
        "CHARGEBACK": Tariff(0, 2000),  # 20.00 per dispute
        "FEE_ADJUSTMENT": Tariff(0),
    },
}
# Money leaving the merchant's balance: the net is negative.
_OUTGOING = frozenset({"REFUND", "PAYOUT", "CHARGEBACK", "FEE_ADJUSTMENT"})


@dataclass(frozen=True)
class Line:
    """One settlement line; amounts in the currency's minor units."""

    line_id: str
    psp: str
    owner: str
    kind: Kind
    payment_id: str | None  # the PSP's id of the payment it settles (None: account-level)
    reference: str | None  # the merchant's reference (Connxt's transaction id)
    gross: int
    fee: int
    currency: str
    settled_at: datetime

    @property
    def net(self) -> int:
        return -(self.gross + self.fee) if self.kind in _OUTGOING else self.gross - self.fee

    @property
    def places(self) -> int:
        return places(self.currency)


def minor(amount: Decimal, currency: str) -> int:
    return int(amount.scaleb(places(currency)).to_integral_value())


def day_bounds(psp: str, day: date) -> tuple[datetime, datetime]:
    """The settlement day ``day`` of ``psp`` as a UTC interval [start, end)."""
    zone = TIME_ZONES[psp]
    start = datetime(day.year, day.month, day.day, tzinfo=zone)
    return start.astimezone(UTC), (start + timedelta(days=1)).astimezone(UTC)


@dataclass
class Adjustment:
    """A chargeback or fee adjustment the PSP booked on an account."""

    psp: str
    owner: str
    kind: Kind
    amount: int  # minor units: the disputed amount, or the fee charged
    currency: str
    payment_id: str | None
    reference: str | None
    settled_at: datetime
    line_id: str = field(default_factory=lambda: f"adj_{secrets.token_hex(8)}")


@dataclass(frozen=True)
class Synthetic:
    """A report of ``lines`` payments made up from a seed, for benchmarks: never stored,
    written line by line as it is read. Line ``i`` settles payment ``{psp}_s{seed}_{i}``
    for reference ``{reference_prefix}{i:08d}`` (zero-padded to eight digits), gross
    ``(100 + (i * 7919 + seed) % 99900)`` minor units, at ``i × (86,400,000 // lines)``
    milliseconds into the PSP's day.
    """

    psp: str
    owner: str
    day: date
    lines: int
    seed: int
    currency: str
    reference_prefix: str

    # Grosses repeat every 99,900 lines: each report format writes each amount once
    # (sandbox.settlement_reports), so a million lines cost string joins, not arithmetic.
    PERIOD = 99_900

    def residue(self, i: int) -> int:
        return (i * 7919 + self.seed) % self.PERIOD

    @property
    def step_ms(self) -> int:
        """Milliseconds between two lines' settlement times."""
        return 86_400_000 // max(self.lines, 1)


class Ledger:
    """The settlement side of the sandbox's memory (kept on ``Store.settlements``)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.injected: dict[str, set[str]] = {}  # payment id → what to falsify
        self.adjustments: list[Adjustment] = []  # chargebacks, fee adjustments, unknowns
        self.synthetic: dict[tuple[str, str, date], Synthetic] = {}
        # How the next reports are served, when not as they should be.
        self.broken: Literal["malformed", "truncated"] | None = None

    def reset(self) -> None:
        with self.lock:
            self.injected.clear()
            self.adjustments.clear()
            self.synthetic.clear()
            self.broken = None

    def inject(self, payment_id: str, kind: str) -> None:
        with self.lock:
            self.injected.setdefault(payment_id, set()).add(kind)

    def add(self, adjustment: Adjustment) -> None:
        with self.lock:
            self.adjustments.append(adjustment)


def _settled_at(payment: Payment) -> datetime:
    return datetime.fromisoformat(payment.updated_at)


def _payment_lines(payment: Payment, faults: Collection[str]) -> list[Line]:
    """What one payment put in the reports: nothing, one line, or two (duplicated)."""
    if "drop" in faults:
        return []
    kind = LINE_KIND.get(payment.payment_type)
    if kind is None:
        return []
    gross = minor(payment.amount, payment.currency)
    if "amount" in faults:
        gross -= 10 ** places(payment.currency)  # 1.00 less (1 in a currency without cents)
    fee = TARIFFS[payment.psp][kind].fee(gross, places(payment.currency))
    settled_at = _settled_at(payment) + (timedelta(days=1) if "delay" in faults else timedelta())
    line = Line(
        f"stl_{payment.id}",
        payment.psp,
        payment.owner,
        kind,
        payment.id,
        payment.reference_id or None,
        gross,
        fee,
        payment.currency,
        settled_at,
    )
    if "duplicate" in faults:
        return [line, Line(**{**line.__dict__, "line_id": f"{line.line_id}_2"})]
    return [line]


def _adjustment_line(adjustment: Adjustment) -> Line:
    """A chargeback (the disputed amount, plus the PSP's dispute fee), a fee adjustment
    (a fee alone), or an unknown payment (settled with the usual fee)."""
    currency_places = places(adjustment.currency)
    if adjustment.kind == "FEE_ADJUSTMENT":
        gross, fee = 0, adjustment.amount
    else:
        gross = adjustment.amount
        fee = TARIFFS[adjustment.psp][adjustment.kind].fee(gross, currency_places)
    return Line(
        adjustment.line_id,
        adjustment.psp,
        adjustment.owner,
        adjustment.kind,
        adjustment.payment_id,
        adjustment.reference,
        gross,
        fee,
        adjustment.currency,
        adjustment.settled_at,
    )


def report_lines(store: Store, ledger: Ledger, psp: str, owner: str, day: date) -> Iterator[Line]:
    """The account's report for its settlement day ``day``, in settlement order (a
    synthetic report is written by each format itself: sandbox.settlement_reports)."""
    start, end = day_bounds(psp, day)
    settled = SETTLED_STATES[psp]
    with store.lock, ledger.lock:
        payments = [p for p in store.payments.values() if p.psp == psp and p.owner == owner]
        lines = [
            line
            for p in payments
            if p.state == settled
            for line in _payment_lines(p, ledger.injected.get(p.id, set()))
        ]
        lines += [
            _adjustment_line(a) for a in ledger.adjustments if a.psp == psp and a.owner == owner
        ]
    chosen = [line for line in lines if start <= line.settled_at < end]
    yield from sorted(chosen, key=lambda line: (line.settled_at, line.line_id))


def synthetic_count(ledger: Ledger, psp: str, owner: str, day: date) -> int | None:
    spec = ledger.synthetic.get((psp, owner, day))
    return None if spec is None else spec.lines


def amount_text(value: int, currency_places: int) -> str:
    """Minor units as plain decimal text: 12345, 2 places → ``"123.45"``."""
    sign, value = ("-", -value) if value < 0 else ("", value)
    if currency_places == 0:
        return f"{sign}{value}"
    whole, part = divmod(value, 10**currency_places)
    return f"{sign}{whole}.{part:0{currency_places}d}"
