"""Antminer `stats` as bmminer (stock, Hiveon), cgminer (L3+) and LuxOS write it, plus the
X19 `devs` pseudo-device and the LuxOS `events` extension.

Layout (README quirk 8): `STATS[0]` is a version header, `STATS[1]` the data. Chains are
numbered by the firmware (S9: 6-8 of 16 slots; X19: 1-3 of 4). A slot is a board when its
`chain_acnN` (chips found) is above zero. X19 packs four sensors per board as dash strings
(`temp_pcbN`, `temp_chipN`); older firmware has one board (`tempN`) and one chip (`temp2_N`)
reading per chain.

Per-chain `chain_rateN` is not the same window everywhere, checked on the captures:
- stock bmminer and Hiveon: the chains add up to `GHS 5s` (S19 Pro 37603.30 + 35536.22 +
  37427.38 = 110566.90 against 110566.89), so it is the short window;
- LuxOS: they add up to `GHS av` (18910.28 + 18939.95 + 19067.67 = 56917.90 against
  56917.91, while `GHS 5s` is 59756.06), so on LuxOS it is the average and goes there.
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
    MinerState,
)
from hashfarm.fleet.sources.cgminer import ghs_scale, section, summary_hashrates
from hashfarm.fleet.sources.values import GH, MH, dash_temps, hashrate_hs, opt_float, opt_int

__all__ = ["parse_bmminer_devs", "parse_luxos_events", "parse_stats"]

_CHAIN = re.compile(r"^chain_acn(\d+)$")
_FAN = re.compile(r"^fan(\d+)$")
_FIRMWARE_WORDS = ("Hiveon",)  # words some firmwares append to `Type`, not part of the model
_SANE_C = (1.0, 150.0)  # a reading outside this on a board that hashes is a broken sensor


def _model(header: Mapping[str, Any]) -> str | None:
    kind = header.get("Type")
    if not kind:
        return None
    model = str(kind).split("\n")[0].strip()  # "Antminer S9\nV1.3.58": the rest is a revision
    for word in _FIRMWARE_WORDS:
        model = model.replace(word, "").strip()
    return model


def _scale(data: Mapping[str, Any], model: str | None) -> int:
    unit = data.get("rate_unit")
    if unit is None:
        return ghs_scale(model)
    scales = {"GH": GH, "MH": MH}
    if not isinstance(unit, str) or unit not in scales:
        raise ReplyError(f"stats: unknown rate_unit {unit!r}")
    return scales[unit]


def _temps(data: Mapping[str, Any], slot: int) -> tuple[dict[str, float], dict[str, float]]:
    """(board readings, chip readings) for one chain, keyed by the firmware's key name.
    `tempN` is the PCB and `temp2_N` the chip: on the S19 Pro capture `temp1` 73 and
    `temp2_1` 78 are the first values of `temp_pcb1` "73-..." and `temp_chip1` "78-..."."""
    board: dict[str, float] = {}
    chip: dict[str, float] = {}
    if f"temp_pcb{slot}" in data:  # X19: four sensors per string
        for i, t in enumerate(dash_temps(data[f"temp_pcb{slot}"], f"temp_pcb{slot}")):
            board[f"temp_pcb{slot}[{i}]"] = t
        for i, t in enumerate(dash_temps(data.get(f"temp_chip{slot}"), f"temp_chip{slot}")):
            chip[f"temp_chip{slot}[{i}]"] = t
        return board, chip
    for key, into in ((f"temp{slot}", board), (f"temp2_{slot}", chip)):
        value = opt_float(data, key)
        if value is not None:
            into[key] = value
    return board, chip


def _sane(readings: dict[str, float]) -> tuple[tuple[float, ...], tuple[str, ...]]:
    low, high = _SANE_C
    good = tuple(t for t in readings.values() if low <= t <= high)
    bad = tuple(f"{k}={v:g}" for k, v in readings.items() if not low <= v <= high)
    return good, bad


def _board(data: Mapping[str, Any], slot: int, scale: int, luxos: bool) -> Hashboard:
    chips = opt_int(data, f"chain_acn{slot}") or 0
    if chips == 0:
        return Hashboard(slot=slot, present=False)
    rate = hashrate_hs(data, f"chain_rate{slot}", scale)
    ideal = hashrate_hs(data, f"chain_rateideal{slot}", scale) or None
    chip_map = str(data.get(f"chain_acs{slot}", ""))
    board_temps, chip_temps = _temps(data, slot)
    board_ok, board_bad = _sane(board_temps)
    chip_ok, chip_bad = _sane(chip_temps)
    return Hashboard(
        slot=slot,
        present=True,
        hashrate=Hashrates(
            five_sec_hs=None if luxos else rate,
            average_hs=rate if luxos else None,
            nominal_hs=ideal,
        ),
        chips_working=chip_map.count("o") if chip_map.strip() else chips,
        chips_expected=None,
        board_temps_c=board_ok,
        chip_temps_c=chip_ok,
        hardware_errors=opt_int(data, f"chain_hw{slot}"),
        bad_sensors=board_bad + chip_bad,
    )


def parse_stats(reply: Mapping[str, Any], model: str | None, backend: str) -> MachineSnapshot:
    """`stats` of bmminer/cgminer/LuxOS Antminers (backend "luxos" reads chain rates as the
    average, see the module docstring)."""
    rows = section(reply, "STATS", "stats")
    if len(rows) < 2:
        raise ReplyError(f"stats: expected a header and a data object, got {len(rows)}")
    header, data = rows[0], rows[1]
    model = _model(header) or model
    scale = _scale(data, model)
    slots = sorted(int(m.group(1)) for k in data if (m := _CHAIN.match(k)))
    boards = tuple(_board(data, s, scale, backend == "luxos") for s in slots)
    present = [b for b in boards if b.present]
    fans = tuple(
        Fan(slot=int(m.group(1)), rpm=rpm)
        for k in data
        if (m := _FAN.match(k)) and (rpm := opt_int(data, k) or 0) > 0
    )
    # Every chip 'x' and every chain at 0: the firmware stopped hashing (sleep, overheat).
    hashing = any(
        (b.hashrate.five_sec_hs or b.hashrate.average_hs or 0) > 0 and b.chips_working != 0
        for b in present
    )
    rates = summary_hashrates(data, model)
    return MachineSnapshot(
        backend=backend,
        model=model,
        firmware=str(header.get("Miner")) if header.get("Miner") else None,
        state=MinerState.MINING if hashing else MinerState.STOPPED,
        uptime_s=opt_int(data, "Elapsed"),
        hashrate=Hashrates(
            five_sec_hs=rates.five_sec_hs,
            average_hs=rates.average_hs,
            nominal_hs=hashrate_hs(data, "total_rateideal", scale) or None,
        ),
        boards=boards,
        fans=fans,
        fans_expected=opt_int(data, "fan_num"),
        bad_sensors=(),
        hardware_errors=sum(b.hardware_errors or 0 for b in present) if present else None,
    )


def parse_bmminer_devs(
    reply: Mapping[str, Any], model: str | None, backend: str
) -> MachineSnapshot:
    """X19 `devs` has one pseudo-device `BTM_SOC` whose `MHS 5s` is 0.0 and `Tenperature` 0.0
    while the machine hashes: placeholders, not readings. Only its uptime is used."""
    rows = section(reply, "DEVS", "devs")
    if not rows:
        raise ReplyError("devs: empty DEVS list")
    row = rows[0]
    if row.get("Name") != "BTM_SOC":
        raise ReplyError(f"devs: expected the BTM_SOC pseudo-device, got {row.get('Name')!r}")
    return MachineSnapshot(backend=backend, uptime_s=opt_int(row, "Device Elapsed"))


def _event_category(code: str, target: str) -> ErrorCategory:
    if target == "BOARD":
        return ErrorCategory.HASHBOARD
    if any(word in code for word in ("TEMP", "SENSOR")):
        return ErrorCategory.SENSOR
    if any(word in code for word in ("PSU", "POWER", "NOPIC", "VOLT")):
        return ErrorCategory.POWER
    return ErrorCategory.OTHER


def parse_luxos_events(
    reply: Mapping[str, Any], model: str | None, backend: str
) -> MachineSnapshot:
    """LuxOS `events`: the firmware's own fault list (`NOPIC_PROTECTION`, ...)."""
    errors = []
    for row in section(reply, "EVENTS", "events"):
        code, target = str(row.get("Code", "")), str(row.get("Target", ""))
        errors.append(
            MachineError(
                category=_event_category(code, target),
                message=str(row.get("Description", "")),
                code=code or None,
                board=opt_int(row, "ID") if target == "BOARD" else None,
                at=str(row["CreatedAt"]) if "CreatedAt" in row else None,
            )
        )
    return MachineSnapshot(backend=backend, errors=tuple(errors))
