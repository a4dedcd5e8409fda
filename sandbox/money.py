"""Amounts and currencies as the stand-in PSPs see them, written here rather than taken
from ``connectors``: the sandbox is the other side of every PSP conversation, so sharing
code with the connectors would let one mistake agree with itself (docs/ARCHITECTURE.md
§7.1). A real PSP knows the currencies it settles in and their minor units; so does this
one, from ISO 4217 as published (the list is written out again here on purpose).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, TypeGuard

# Active ISO 4217 codes (list one, 2025), without precious metals, testing and fund codes.
_ISO_4217_TEXT = """
AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD
BTN BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUP CVE CZK DJF DKK DOP DZD
EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD
IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL
MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN
PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN
SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES
VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG
"""


def _codes(text: str) -> frozenset[str]:
    return frozenset(text.split())


_ISO_4217 = _codes(_ISO_4217_TEXT)
_ZERO_PLACES = _codes("BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF")
_THREE_PLACES = _codes("BHD IQD JOD KWD LYD OMR TND")
_FOUR_PLACES = _codes("CLF UYW")


def valid_currency(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and value in _ISO_4217


def places(currency: str) -> int:
    if currency in _ZERO_PLACES:
        return 0
    if currency in _THREE_PLACES:
        return 3
    return 4 if currency in _FOUR_PLACES else 2


def fits(amount: Decimal, currency: str) -> bool:
    """True when ``amount`` needs no more places than the currency has."""
    step = Decimal(1).scaleb(-places(currency))
    return amount.is_finite() and amount == amount.quantize(step)


def money(amount: Decimal, currency: str) -> Decimal:
    """The amount with exactly the currency's places (it is never rounded: amounts that do
    not fit are refused where they arrive)."""
    if not fits(amount, currency):
        raise ValueError(f"{amount} has more decimal places than {currency} allows")
    return amount.quantize(Decimal(1).scaleb(-places(currency)))


def money_text(amount: Decimal, currency: str) -> str:
    """Plain decimal text with the currency's places: ``10.5 USD`` → ``"10.50"``."""
    return f"{money(amount, currency):f}"


def dumps(value: Any) -> bytes:
    """JSON with Decimals written as exact numbers (a float would round them)."""
    return _encode(value).encode()


def loads(raw: bytes | str) -> Any:
    """JSON with every non-integer number read as Decimal."""
    return json.loads(raw, parse_float=Decimal)


def _encode(value: Any) -> str:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("amounts must be finite")
        return f"{value:f}"
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{_encode(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_encode(v) for v in value) + "]"
    return json.dumps(value)
