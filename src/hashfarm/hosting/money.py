"""Exact amounts for hosting bills: cents as integers, kWh and rates as `Fraction`.

Every money amount on an invoice is an integer number of cents of the contract's currency.
Rates (per kWh, per month) and energy are exact fractions, parsed from decimal text, never
floats. One rounding rule, stated once: **each invoice line is rounded to the cent
half-to-even (banker's rounding) from its exact value; totals are the sums of the rounded
lines**, so an invoice always adds up on paper. Satoshi amounts (revenue share) are rounded
down, in the customer's favour.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from fractions import Fraction

from hashfarm.hosting.errors import HostingError

CENTS_PER_UNIT = 100
BPS = 10_000  # one basis point is 1/10,000
JOULES_PER_KWH = 3_600_000

_DECIMAL = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")


def parse_decimal(text: str, what: str = "amount") -> Fraction:
    """An exact fraction from decimal text ("0.065", "12", "-3.5"); no exponents, no floats."""
    s = str(text).strip()
    if not _DECIMAL.fullmatch(s):
        raise HostingError(f"{what}: {text!r} is not a decimal number")
    try:
        return Fraction(Decimal(s))
    except InvalidOperation as exc:  # pragma: no cover - the pattern already refused it
        raise HostingError(f"{what}: {text!r} is not a decimal number") from exc


def parse_cents(text: str, what: str = "amount") -> int:
    """Cents from a money amount in currency units ("45.10" -> 4510); sub-cent is refused."""
    value = parse_decimal(text, what) * CENTS_PER_UNIT
    if value.denominator != 1:
        raise HostingError(f"{what}: {text!r} has fractions of a cent")
    return value.numerator


def parse_percent_bps(text: str, what: str = "percent") -> int:
    """Basis points from a percentage ("12.5" -> 1250); finer than a basis point is refused."""
    value = parse_decimal(text, what) * 100
    if value.denominator != 1:
        raise HostingError(f"{what}: {text!r} is finer than a basis point (0.01 %)")
    return value.numerator


def round_cents(units: Fraction) -> int:
    """An exact amount in currency units as cents, rounded half to even."""
    return round(units * CENTS_PER_UNIT)  # Fraction.__round__ rounds half to even


def fmt_cents(cents: int) -> str:
    """Cents as currency units with two decimals ("-12.05")."""
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(cents), CENTS_PER_UNIT)
    return f"{sign}{whole:,}.{part:02d}"


def fmt_fraction(value: Fraction, places: int = 3) -> str:
    """An exact value shown with `places` decimals (half to even); display only."""
    scaled = round(value * 10**places)
    sign = "-" if scaled < 0 else ""
    whole, part = divmod(abs(scaled), 10**places)
    return f"{sign}{whole}.{part:0{places}d}" if places else f"{sign}{whole}"


def fmt_decimal(value: Fraction) -> str:
    """An exact value as plain decimal text when it has one ("0.065"), else six decimals."""
    d, twos, fives = value.denominator, 0, 0
    while d % 2 == 0:
        d, twos = d // 2, twos + 1
    while d % 5 == 0:
        d, fives = d // 5, fives + 1
    if d != 1:
        return fmt_fraction(value, 6)
    places = max(twos, fives)  # value * 10**places is a whole number
    text = fmt_fraction(value, places)
    return text.rstrip("0").rstrip(".") if "." in text else text


def to_text(value: Fraction) -> str:
    """An exact fraction as "n/d" text (storage); `from_text` reads it back."""
    return f"{value.numerator}/{value.denominator}"


def from_text(text: str) -> Fraction:
    """The inverse of `to_text`."""
    return Fraction(text)
