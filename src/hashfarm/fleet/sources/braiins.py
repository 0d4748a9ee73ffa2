"""Braiins OS: bosminer's cgminer-compatible `temps`/`fans` extensions and the REST API
(`GET /api/v1/miner/stats`, `GET /api/v1/miner/errors`).

bosminer's `summary` is the shared cgminer parser (MH/s `MHS *` keys). `temps` reports a
`Board` and a `Chip` reading per chain; bosminer 0.2 does not measure chips and sends
`Chip: 0.0`, so 0.0 there means "not reported", not a broken sensor. REST values carry their
unit in the key (`{"gigahash_per_second": ...}`, `{"watt": ...}`); an unknown unit is an
error, never a guess.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from hashfarm.fleet.errors import ReplyError
from hashfarm.fleet.model import (
    ErrorCategory,
    Fan,
    Hashboard,
    Hashrates,
    MachineError,
    MachineSnapshot,
    PowerSource,
)
from hashfarm.fleet.sources.cgminer import section
from hashfarm.fleet.sources.values import GH, KH, MH, TH, hashrate_hs, obj, opt_float, opt_int

__all__ = ["parse_fans", "parse_rest_errors", "parse_rest_stats", "parse_temps"]

_RATE_UNITS = {
    "hash_per_second": 1,
    "kilohash_per_second": KH,
    "megahash_per_second": MH,
    "gigahash_per_second": GH,
    "terahash_per_second": TH,
}
_SENSOR = re.compile(r"Sensor (hb(\d+)\.\d+)\[")
_HASHBOARD = re.compile(r"\{HB:(\d+)\}|Hashboard (\d+)")


def parse_temps(reply: Mapping[str, Any], model: str | None, backend: str) -> MachineSnapshot:
    """`temps`: per chain (`ID` 6/7/8 on an S9) a board reading; `Chip: 0.0` is absent."""
    boards = []
    for row in section(reply, "TEMPS", "temps"):
        board = opt_float(row, "Board")
        chip = opt_float(row, "Chip")
        boards.append(
            Hashboard(
                slot=opt_int(row, "ID") or 0,
                present=True,
                board_temps_c=(board,) if board else (),
                chip_temps_c=(chip,) if chip else (),
            )
        )
    return MachineSnapshot(backend=backend, boards=tuple(boards))


def parse_fans(reply: Mapping[str, Any], model: str | None, backend: str) -> MachineSnapshot:
    """`fans`: every controller slot (4 on an S9 that has 2 fans); `Speed` is % duty.
    How many should spin is a hardware fact (see fleet.hardware), not in this reply."""
    fans = tuple(
        Fan(slot=opt_int(row, "ID") or 0, rpm=opt_int(row, "RPM") or 0)
        for row in section(reply, "FANS", "fans")
    )
    return MachineSnapshot(backend=backend, fans=fans)


def _rate(value: Any, key: str) -> int | None:
    if value is None:
        return None
    tagged = obj(value, key)
    if len(tagged) != 1:
        raise ReplyError(f"{key}: expected one unit-tagged value, got {dict(tagged)!r}")
    unit, number = next(iter(tagged.items()))
    if unit not in _RATE_UNITS:
        raise ReplyError(f"{key}: unknown hashrate unit {unit!r}")
    return hashrate_hs({key: number}, key, _RATE_UNITS[unit])


def parse_rest_stats(reply: Mapping[str, Any], model: str | None, backend: str) -> MachineSnapshot:
    """`/api/v1/miner/stats`: real hashrate over 5 s ... 24 h, nominal, power in W."""
    stats = obj(reply.get("miner_stats"), "miner/stats: miner_stats")
    real = obj(stats.get("real_hashrate", {}), "miner/stats: real_hashrate")
    power_stats = obj(reply.get("power_stats", {}), "miner/stats: power_stats")
    consumption = power_stats.get("approximated_consumption")
    power = None
    if consumption is not None:
        watts = obj(consumption, "approximated_consumption")
        if set(watts) != {"watt"}:
            raise ReplyError(f"approximated_consumption: expected watt, got {dict(watts)!r}")
        power = opt_float(watts, "watt")
    return MachineSnapshot(
        backend=backend,
        hashrate=Hashrates(
            five_sec_hs=_rate(real.get("last_5s"), "last_5s"),
            one_min_hs=_rate(real.get("last_1m"), "last_1m"),
            fifteen_min_hs=_rate(real.get("last_15m"), "last_15m"),
            average_hs=_rate(real.get("since_restart"), "since_restart"),
            nominal_hs=_rate(stats.get("nominal_hashrate"), "nominal_hashrate"),
        ),
        power_w=power,
        power_source=PowerSource.REPORTED if power is not None else None,
    )


def _list(value: Any, key: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ReplyError(f"miner/errors: {key} is {type(value).__name__}, not a list")
    return value


def _error(row: Mapping[str, Any]) -> MachineError:
    message = str(row.get("message", ""))
    codes = [obj(c, "error_codes[]") for c in _list(row.get("error_codes"), "error_codes")]
    components = [obj(c, "components[]") for c in _list(row.get("components"), "components")]
    code = str(codes[0].get("code")) if codes else None
    sensor = _SENSOR.search(message)
    board_match = _HASHBOARD.search(message)
    board = next((opt_int(c, "index") for c in components if c.get("name") == "Hashboard"), None)
    if sensor:
        category, board = ErrorCategory.SENSOR, int(sensor.group(2))
    elif code and code.startswith("V"):  # V*: voltage / PSU codes (V2: overcurrent)
        category = ErrorCategory.POWER
    elif board is not None or board_match:
        category = ErrorCategory.HASHBOARD
        if board is None and board_match:
            board = int(board_match.group(1) or board_match.group(2))
    else:
        category = ErrorCategory.OTHER
    return MachineError(
        category=category,
        message=message,
        code=code,
        board=board,
        sensor=sensor.group(1) if sensor else None,
        at=str(row["timestamp"]) if "timestamp" in row else None,
    )


def parse_rest_errors(reply: Mapping[str, Any], model: str | None, backend: str) -> MachineSnapshot:
    """`/api/v1/miner/errors`: the firmware's error log, each sorted into a category (sensor
    read failures, V* power codes, hashboard errors)."""
    rows = reply.get("errors")
    if not isinstance(rows, list):
        raise ReplyError("miner/errors: no errors list")
    return MachineSnapshot(backend=backend, errors=tuple(_error(obj(r, "errors[]")) for r in rows))
