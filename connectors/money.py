"""ISO 4217 currencies and their minor units: amounts are Decimal, never float.

A PSP is sent exactly the amount the merchant asked for. An amount with more decimal places
than its currency has is refused rather than rounded, because a silently rounded charge is
a different charge.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

# Active ISO 4217 codes (list one, 2025), without precious metals, testing and fund codes
# that no PSP settles in.
_ACTIVE = """
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


ISO_4217 = _codes(_ACTIVE)

# Exceptions to the default of two places.
_PLACES: dict[str, int] = {
    **dict.fromkeys(_codes("BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF"), 0),
    "XPF": 0,
    **dict.fromkeys(_codes("BHD IQD JOD KWD LYD OMR TND"), 3),
    **dict.fromkeys(_codes("CLF UYW"), 4),
}


def is_iso4217(code: str) -> bool:
    """True for an active ISO 4217 alphabetic code (upper case, as the standard writes it)."""
    return code in ISO_4217


def minor_units(currency: str) -> int:
    """Decimal places of the currency's minor unit; 2 for codes we do not know."""
    return _PLACES.get(currency.upper(), 2)


def fits_minor_units(amount: Decimal, currency: str) -> bool:
    """True when ``amount`` needs no more places than the currency has."""
    if not amount.is_finite():
        return False
    return amount == amount.quantize(Decimal(1).scaleb(-minor_units(currency)))


def quantize(amount: Decimal, currency: str) -> Decimal:
    """The amount with exactly the currency's places; ValueError if that would round it."""
    if not fits_minor_units(amount, currency):
        raise ValueError(f"{amount} has more decimal places than {currency} allows")
    return amount.quantize(Decimal(1).scaleb(-minor_units(currency)))


def format_amount(amount: Decimal, currency: str) -> str:
    """Plain decimal text with the currency's places: ``10.5 USD`` → ``"10.50"``."""
    return f"{quantize(amount, currency):f}"


# No payment comes near this many digits before the point; anything beyond is unreadable.
_MAX_REPORTED_DIGITS = 18


def reported_amount(value: object) -> Decimal | None:
    """An amount as a PSP wrote it (JSON number or decimal text), exactly; None when it is
    absent or unreadable, which a settlement treats as "not said", never as zero."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | Decimal):
        amount = Decimal(value)
    elif isinstance(value, str) and value.strip():
        try:
            amount = Decimal(value.strip())
        except InvalidOperation:
            return None
    else:
        return None
    if not amount.is_finite() or amount.adjusted() >= _MAX_REPORTED_DIGITS:
        return None
    return amount
