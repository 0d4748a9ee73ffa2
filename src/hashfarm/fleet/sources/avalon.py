"""Canaan Avalon (cgminer 4.11 `avalon10` driver): the `MM ID` blobs in `stats`/`estats`,
and `devs`.

Most data sits in one string of `Key[value]` / `Key[v1 v2 ...]` items (README quirk 10);
values hold spaces and colons and one key holds a space (`Nonce Mask[25]`), so the blob is
read by bracket matching. The key is `MM ID0` on the A1246/A1566 and `MM ID0:Summary` (its
text wrapped in `'STATS':{...}`) on the Avalon Q.

What the numbers are, checked on the captures:
- `MGHS` (per board) adds up to `GHSavg`: 26907.01 + 26025.06 + 26724.56 = 79656.63 on the
  A1246, 59459.52 + 61407.83 + 63139.66 = 184007.01 against 184007.00 on the A1566. It is
  the average since start, so a board's short windows stay None (pyasic shows it as the
  board's current hashrate, the lifetime-average-as-current bug users report).
- `GHSspd` is the real-time speed (0.00 on the idle Avalon Q, whose `GHSavg` is 44499.41):
  the model's short window. `GHSmm` is the expected rate (nominal).
- `WALLPOWER` is wall power in W; where it is absent, `PS[6]` (equal to `WALLPOWER` on the
  A1566: `PS[... 3731] WALLPOWER[3731]`). All-zero `PS` (POW_I2C[FAILED]) is no reading.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from hashfarm.fleet.errors import ReplyError
from hashfarm.fleet.model import (
    Fan,
    Hashboard,
    Hashrates,
    MachineSnapshot,
    MinerState,
    PowerSource,
)
from hashfarm.fleet.sources.cgminer import section, summary_hashrates
from hashfarm.fleet.sources.values import GH, hashrate_hs, opt_float, opt_int

__all__ = ["parse_blob", "parse_devs", "parse_stats"]

_MM_KEY = re.compile(r"^MM ID\d+(?::Summary)?$")
_FAN = re.compile(r"^Fan(\d+)$")
_SENTINEL_C = -273.0  # cgminer's "no reading" (absolute zero), never a temperature


def parse_blob(text: str) -> dict[str, str]:
    """`"Ver[1246-83] Fan1[5344] MGHS[1 2 3]"` -> {"Ver": "1246-83", "Fan1": "5344", ...}.
    A key is the text between the previous `]` and `[`, after any `'STATS':{` wrapper."""
    items: dict[str, str] = {}
    pos = 0
    while (open_at := text.find("[", pos)) != -1:
        close_at = text.find("]", open_at)
        if close_at == -1:
            raise ReplyError(f"MM ID blob: unclosed '[' at offset {open_at}")
        key = text[pos:open_at].split("{")[-1].strip()
        if not key:
            raise ReplyError(f"MM ID blob: value without a key at offset {open_at}")
        items[key] = text[open_at + 1 : close_at].strip()
        pos = close_at + 1
    return items


def _numbers(items: Mapping[str, str], key: str) -> list[float]:
    raw = items.get(key)
    if raw is None or raw == "":
        return []
    try:
        values = [float(part.rstrip("%")) for part in raw.split()]
    except ValueError:
        raise ReplyError(f"MM ID blob: {key}[{raw}] is not a list of numbers") from None
    if not all(math.isfinite(v) for v in values):
        raise ReplyError(f"MM ID blob: {key}[{raw}] holds a non-finite number")
    return values


def _one(items: Mapping[str, str], key: str) -> float | None:
    values = _numbers(items, key)
    return values[0] if values else None


def _ghs(value: float | None, key: str) -> int | None:
    return None if value is None else hashrate_hs({key: repr(value)}, key, GH)


def _state(items: Mapping[str, str]) -> MinerState | None:
    """`SYSTEMSTATU[Work: In Work, Hash Board: 3 ]` -> the work state. (`Hash Board` counts
    the boards the controller sees, which is not the count the model should have.)"""
    status = items.get("SYSTEMSTATU")
    if status is None:
        return None
    parts = dict(p.split(":", 1) for p in status.split(",") if ":" in p)
    work = parts.get("Work", "").strip()
    state = {"In Work": MinerState.MINING, "In Idle": MinerState.IDLE}.get(work)
    if state is None:
        raise ReplyError(f"MM ID blob: unknown SYSTEMSTATU work state {work!r}")
    return state


def _power(items: Mapping[str, str]) -> float | None:
    wall = _one(items, "WALLPOWER")
    if wall:
        return wall
    ps = _numbers(items, "PS")
    return ps[6] if len(ps) > 6 and ps[6] > 0 else None


def _snapshot(items: Mapping[str, str], backend: str) -> MachineSnapshot:
    state = _state(items)
    board_avg = _numbers(items, "MGHS")
    board_tmax = _numbers(items, "MTmax")
    boards = tuple(
        Hashboard(
            slot=i,
            present=True,
            hashrate=Hashrates(average_hs=_ghs(avg, f"MGHS[{i}]")),
            chip_temps_c=(board_tmax[i],) if i < len(board_tmax) and board_tmax[i] > 0 else (),
        )
        for i, avg in enumerate(board_avg)
    )
    fans = tuple(
        Fan(slot=int(m.group(1)), rpm=int(_one(items, k) or 0))
        for k in items
        if (m := _FAN.match(k))
    )
    power = _power(items)
    ver = items.get("Ver")
    return MachineSnapshot(
        backend=backend,
        firmware=ver,
        state=state,
        uptime_s=int(e) if (e := _one(items, "Elapsed")) is not None else None,
        hashrate=Hashrates(
            five_sec_hs=_ghs(_one(items, "GHSspd"), "GHSspd"),
            average_hs=_ghs(_one(items, "GHSavg"), "GHSavg"),
            nominal_hs=_ghs(_one(items, "GHSmm"), "GHSmm"),
        ),
        boards=boards,
        fans=fans,
        fans_expected=len(fans),  # the blob lists the fans the controller drives
        power_w=power,
        power_source=PowerSource.REPORTED if power is not None else None,
        hardware_errors=int(hw) if (hw := _one(items, "HW")) is not None else None,
    )


def parse_stats(reply: Mapping[str, Any], model: str | None, backend: str) -> MachineSnapshot:
    """`stats` or `estats`: the first STATS row holding an `MM ID` blob (pool rows ignored)."""
    for row in section(reply, "STATS", "stats"):
        keys = [k for k in row if _MM_KEY.match(k)]
        if keys:
            if len(keys) > 1:  # several modules (MM Count > 1): not in any capture yet
                raise ReplyError(f"stats: {len(keys)} MM ID blobs; only one is supported")
            return _snapshot(parse_blob(str(row[keys[0]])), backend)
    raise ReplyError("stats: no 'MM ID' blob in any STATS row")


def parse_devs(reply: Mapping[str, Any], model: str | None, backend: str) -> MachineSnapshot:
    """`devs`: one AVA10 device; MH/s windows (`MHS 30s` has no slot), `Temperature -273`
    is cgminer's no-reading sentinel and is reported as a bad sensor, not a temperature."""
    rows = section(reply, "DEVS", "devs")
    if not rows:
        raise ReplyError("devs: empty DEVS list")
    row = rows[0]
    temp = opt_float(row, "Temperature")
    bad = (f"Temperature={temp:g}",) if temp is not None and temp <= _SENTINEL_C else ()
    return MachineSnapshot(
        backend=backend,
        hashrate=summary_hashrates(row, model),
        uptime_s=opt_int(row, "Device Elapsed"),
        board_temps_c=(temp,) if temp is not None and not bad else (),
        bad_sensors=bad,
        hardware_errors=opt_int(row, "Hardware Errors"),
    )
