"""Bytes from a machine to JSON: strip the framing, parse strictly, repair only if needed.

Real firmwares send JSON that a strict parser rejects (../shared/fixtures/asic-api/README.md,
quirks 1-3). `decode_reply` tries strict JSON first and then applies the documented repairs
one at a time, cumulatively, stopping at the first text that parses; the snapshot records
which repairs were needed, so a firmware that starts sending broken replies is visible.

Repairs that change structure (`}{`, `[,{`, bare `nan`, trailing commas) only touch text
outside string literals; the `\\'` repair only touches text inside them, so a value such as
Hiveon's `"chain_xtime6":"{}"` is never rewritten.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hashfarm.fleet.errors import ReplyError

__all__ = ["REPAIRS", "Decoded", "decode_reply"]

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)


def _outside_strings(pattern: str, repl: str) -> Callable[[str], str]:
    regex = re.compile(pattern)
    # One pass: a string literal matches the first branch and is kept as it is.
    either = re.compile(f"({_STRING.pattern})|{pattern}", re.DOTALL)

    def fix(text: str) -> str:
        if not regex.search(text):  # the common case: a C-speed scan, no rewrite
            return text
        return either.sub(lambda m: m.group(1) if m.group(1) is not None else repl, text)

    return fix


def _inside_strings(old: str, new: str) -> Callable[[str], str]:
    def fix(text: str) -> str:
        if old not in text:
            return text
        return _STRING.sub(lambda m: m.group().replace(old, new), text)

    return fix


# name -> text rewrite, in the order they are tried. Each names the firmware that needs it.
REPAIRS: tuple[tuple[str, Callable[[str], str]], ...] = (
    # bmminer/cgminer `stats` on S9, L3+, D3, Z11: two STATS objects with no comma.
    ("missing-comma-between-objects", _outside_strings(r"}\s*{", "},{")),
    # pyasic: "bmminer return having a specific comma".
    ("leading-comma-in-list", _outside_strings(r"\[\s*,\s*{", "[{")),
    # Avalon `summary` before the first average exists: `"MHS av":nan`. Not a number, so null
    # (the parser then reports the average as not available; never 0).
    ("bare-nan-or-inf", _outside_strings(r"(?<=[:\[,])\s*-?(?:nan|inf)\b", "null")),
    # Whatsminer `Firmware Version`: `"\'20200917.22.REL\'"`, an escape JSON does not have.
    ("backslash-quote-escape", _inside_strings("\\'", "'")),
    # btminer: `,}` and `,]`.
    ("trailing-comma", _outside_strings(r",\s*(?=[}\]])", "")),
)


@dataclass(frozen=True, slots=True)
class Decoded:
    """A parsed reply and the repairs it needed (empty when it was valid JSON)."""

    data: Any
    repairs: tuple[str, ...]


def _loads(text: str) -> Any:
    # strict=False: raw control characters (btminer's newlines) inside strings are allowed;
    # they are data, not structure.
    return json.loads(text, strict=False)


def decode_reply(raw: bytes, *, command: str = "reply") -> Decoded:
    """Decode one reply: strip cgminer's trailing NUL, decode UTF-8 (bad bytes replaced),
    parse strictly, then repair. Raises ReplyError naming the command, the first parse error
    and the repairs tried when nothing parses."""
    if raw.endswith(b"\x00"):  # cgminer sends len+1 bytes: its C string terminator
        raw = raw[:-1]
    text = raw.decode("utf-8", errors="replace").strip()
    if not text:
        raise ReplyError(f"{command}: empty reply")
    try:
        return Decoded(_loads(text), ())
    except json.JSONDecodeError as exc:
        first_error = exc
    except (ValueError, RecursionError) as exc:  # 5,000-digit integers, nesting 1,000 deep
        raise ReplyError(f"{command}: not JSON we accept ({exc})") from None
    applied: list[str] = []
    for name, fix in REPAIRS:
        fixed = fix(text)
        if fixed == text:
            continue
        text = fixed
        applied.append(name)
        try:
            return Decoded(_loads(text), tuple(applied))
        except json.JSONDecodeError:
            continue
        except (ValueError, RecursionError) as exc:
            raise ReplyError(f"{command}: not JSON we accept ({exc})") from None
    tried = ", ".join(applied) or "none applied"
    raise ReplyError(
        f"{command}: not JSON ({first_error.msg} at offset {first_error.pos}); repairs: {tried}"
    ) from first_error
