"""Reading the values firmwares send: numbers as numbers or strings, unit scales, dash strings.

Every helper either returns the value or raises ReplyError naming the key; "not reported"
(a missing key, `""`) is None, which the caller decides about. Hashrates are converted with
Decimal from the number's shortest text, so `"504.56"` MH/s is exactly 504,560,000 H/s (a
float product would give 504,559,999.99999994).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from hashfarm.fleet.errors import ReplyError

__all__ = [
    "GH",
    "KH",
    "MAX_HASHRATE_HS",
    "MH",
    "TH",
    "dash_temps",
    "hashrate_hs",
    "obj",
    "opt_float",
    "opt_int",
    "suffixed",
]

KH, MH, GH, TH = 10**3, 10**6, 10**9, 10**12  # H/s per kH/s, MH/s, GH/s, TH/s

# No machine reports more than the whole Bitcoin network (about 10^21 H/s in 2025): a larger
# reading is garbage, refused before it reaches arithmetic (a 5,000-digit "hashrate" would
# overflow the fault ratio).
MAX_HASHRATE_HS = 10**21

_SUFFIX = {"": 1, "k": KH, "m": MH, "g": GH, "t": TH, "p": 10**15}


def obj(value: Any, what: str) -> Mapping[str, Any]:
    """`value` as a JSON object, or ReplyError naming `what`."""
    if not isinstance(value, Mapping):
        raise ReplyError(f"{what}: expected an object, got {type(value).__name__}")
    return value


def _decimal(value: Any, key: str) -> Decimal | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ReplyError(f"{key}: expected a number, got {value!r}")
    try:
        number = Decimal(value.strip() if isinstance(value, str) else repr(value))
    except InvalidOperation:
        raise ReplyError(f"{key}: expected a number, got {value!r}") from None
    if not number.is_finite():
        raise ReplyError(f"{key}: not a finite number: {value!r}")
    return number


def _finite(value: float, key: str, raw: Any) -> float:
    if not math.isfinite(value):
        raise ReplyError(f"{key}: not a finite number: {str(raw)[:40]!r}")
    return value


def opt_float(data: Mapping[str, Any], key: str) -> float | None:
    """`data[key]` as a float; None when absent or `""`; ReplyError when not a number."""
    number = _decimal(data.get(key), key)
    if number is None:
        return None
    return _finite(float(number), key, data.get(key))


def opt_int(data: Mapping[str, Any], key: str) -> int | None:
    """`data[key]` as an int (an integral float or string is accepted)."""
    number = _decimal(data.get(key), key)
    if number is None:
        return None
    if number != number.to_integral_value():
        raise ReplyError(f"{key}: expected a whole number, got {data.get(key)!r}")
    return int(number)


def hashrate_hs(data: Mapping[str, Any], key: str, scale: int) -> int | None:
    """`data[key]` in units of `scale` H/s (MH, GH...), as whole H/s (rounded half-even)."""
    number = _decimal(data.get(key), key)
    if number is None:
        return None
    if number < 0:
        raise ReplyError(f"{key}: negative hashrate {data.get(key)!r}")
    hs = (number * scale).to_integral_value()
    if hs > MAX_HASHRATE_HS:
        raise ReplyError(f"{key}: {str(data.get(key))[:40]!r} is more than the whole network")
    return int(hs)


def suffixed(value: Any, key: str) -> float | None:
    """A number that may carry an SI suffix: `"524K"`, `"483k"`, `"32K"`, `12345`, `"0"`."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        text = value.strip()
        scale = _SUFFIX.get(text[-1:].lower()) if text and text[-1].isalpha() else 1
        if scale is None:
            raise ReplyError(f"{key}: unknown suffix in {value!r}")
        digits = text[:-1] if text[-1:].isalpha() else text
        number = _decimal(digits, key)
        return None if number is None else _finite(float(number * scale), key, value)
    number = _decimal(value, key)
    return None if number is None else _finite(float(number), key, value)


def dash_temps(value: Any, key: str) -> tuple[float, ...]:
    """X19 packs 4 sensors as `"73-45-64-65"`; `"0-0-0-0"` or `""` is an unpopulated slot."""
    if value is None or value == "":
        return ()
    if not isinstance(value, str):
        raise ReplyError(f"{key}: expected a dash string, got {value!r}")
    try:
        temps = tuple(float(part) for part in value.split("-"))
    except ValueError:
        raise ReplyError(f"{key}: expected numbers joined by '-', got {value!r}") from None
    return tuple(_finite(t, key, value) for t in temps)
