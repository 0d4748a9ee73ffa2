"""Strict parsing of what a client puts in a URL or a request body (sans-I/O, no aiohttp).

Every handler reads its input through these functions, so a value that is not exactly what
the route documents becomes a `BadRequest` (HTTP 400 with a JSON message naming the
parameter) and never an exception deeper down: `str.isdigit()` accepts "²" and "٣", which
`int()` then refuses, so digits are matched as ASCII only.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Collection, Iterable, Mapping
from typing import Any

_DIGITS = re.compile(r"[0-9]{1,9}")  # ASCII only; nine digits are far above any bound here
SHOWN_MAX = 80  # characters of a bad value echoed back in an error message


class BadRequest(Exception):
    """Input that does not match the route's contract; the message is shown to the client."""


def shown(value: object) -> str:
    """`value` as an error message quotes it: repr, cut to SHOWN_MAX characters."""
    text = repr(value)
    return text if len(text) <= SHOWN_MAX else text[: SHOWN_MAX - 3] + "..."


def query_args(pairs: Iterable[tuple[str, str]], allowed: Collection[str]) -> dict[str, str]:
    """The query string as a dict; an unknown or repeated parameter is a BadRequest."""
    args: dict[str, str] = {}
    for name, value in pairs:
        if name not in allowed:
            takes = ", ".join(sorted(allowed)) or "no parameters"
            raise BadRequest(f"unknown query parameter {shown(name)} (this route takes {takes})")
        if name in args:
            raise BadRequest(f"query parameter {name!r} given more than once")
        args[name] = value
    return args


def int_arg(args: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """`args[name]` as a decimal integer in [low, high], or `default` when absent."""
    raw = args.get(name)
    if raw is None:
        return default
    if _DIGITS.fullmatch(raw) is None or not low <= int(raw) <= high:
        raise BadRequest(f"{name} must be an integer from {low} to {high}, not {shown(raw)}")
    return int(raw)


def ip_arg(raw: object, name: str = "ip") -> str:
    """One IPv4 or IPv6 address in the canonical text form the pool keys bans by; an
    IPv4-mapped IPv6 address (::ffff:a.b.c.d, how a dual-stack listener sees IPv4) is a.b.c.d."""
    if not isinstance(raw, str):
        raise BadRequest(f"{name} must be an IP address as a string, not {shown(raw)}")
    try:
        ip = ipaddress.ip_address(raw)
    except ValueError:
        raise BadRequest(f"{name} must be one IPv4 or IPv6 address, not {shown(raw)}") from None
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return str(mapped or ip)


def seconds_arg(raw: object, name: str, high: float) -> float | None:
    """A duration in (0, high] seconds from JSON (int or float, not bool); None stays None."""
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise BadRequest(f"{name} must be a number of seconds, not {shown(raw)}")
    if not (math.isfinite(raw) and 0 < raw <= high):
        raise BadRequest(f"{name} must be more than 0 and at most {high:g}, not {shown(raw)}")
    return float(raw)


def json_object(doc: Any, allowed: Collection[str]) -> dict[str, Any]:
    """A JSON body that must be an object holding only `allowed` keys."""
    if not isinstance(doc, dict):
        raise BadRequest(f"the body must be a JSON object, not {type(doc).__name__}")
    unknown = sorted(set(doc) - set(allowed))
    if unknown:
        raise BadRequest(f"unknown field {shown(unknown[0])} (allowed: {', '.join(allowed)})")
    return doc
