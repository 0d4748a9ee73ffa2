"""Whatsminer btminer: the cgminer-style `summary`/`devs`/`stats`, the btminer-native
`get_version`, and API v3 `get.device.info`.

Units (README quirk 7): `MHS *` and `HS RT` are MH/s, but `Factory GHS` is GH/s; `Power`
is W. `Firmware Version` arrives with single quotes inside the string (`"'20210322.22.REL'"`,
and `\\'` escapes on older firmware, repaired in repair.py). API v3 sends numbers as strings.
"""

from __future__ import annotations

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
from hashfarm.fleet.sources.cgminer import check_status, section, summary_hashrates
from hashfarm.fleet.sources.values import GH, hashrate_hs, obj, opt_float, opt_int

__all__ = ["parse_devs", "parse_get_version", "parse_stats", "parse_summary", "parse_v3_device"]

_SM = re.compile(r"^SM(\d+)$")
_MAX_BOARDS = 16  # the most slots any firmware lists (bmminer's 16 chains)
_V3_STATE = {"true": MinerState.MINING, "false": MinerState.STOPPED}


def _firmware(value: Any) -> str | None:
    return str(value).strip().strip("'") if value else None


def _fans(row: Mapping[str, Any]) -> tuple[Fan, ...]:
    fans = []
    for slot, key in enumerate(("Fan Speed In", "Fan Speed Out")):
        rpm = opt_int(row, key)
        if rpm is not None:
            fans.append(Fan(slot=slot, rpm=rpm))
    return tuple(fans)


def parse_summary(reply: Mapping[str, Any], model: str | None, backend: str) -> MachineSnapshot:
    """`summary`: windows in MH/s, `Factory GHS` (GH/s) as nominal, power, temperatures,
    the intake/exhaust fans (both expected), uptime."""
    rows = section(reply, "SUMMARY", "summary")
    if not rows:
        raise ReplyError("summary: empty SUMMARY list")
    row = rows[0]
    rates = summary_hashrates(row, model)
    power = opt_float(row, "Power")
    chip_max = opt_float(row, "Chip Temp Max")
    board = opt_float(row, "Temperature")
    return MachineSnapshot(
        backend=backend,
        firmware=_firmware(row.get("Firmware Version")),
        uptime_s=opt_int(row, "Elapsed"),
        hashrate=Hashrates(
            five_sec_hs=rates.five_sec_hs,
            one_min_hs=rates.one_min_hs,
            fifteen_min_hs=rates.fifteen_min_hs,
            average_hs=rates.average_hs,
            nominal_hs=hashrate_hs(row, "Factory GHS", GH),  # GH/s, unlike every MHS key
        ),
        fans=_fans(row),
        fans_expected=2,  # btminer reports exactly an intake and an exhaust fan
        chip_temps_c=(chip_max,) if chip_max is not None else (),
        board_temps_c=(board,) if board is not None else (),
        power_w=power,
        power_source=PowerSource.REPORTED if power is not None else None,
        hardware_errors=opt_int(row, "Hardware Errors"),
    )


def parse_devs(reply: Mapping[str, Any], model: str | None, backend: str) -> MachineSnapshot:
    """`devs`: one row per hashboard (`Slot`), MH/s windows, chip temperatures, PCB serial."""
    boards = []
    for row in section(reply, "DEVS", "devs"):
        chip_temps = tuple(
            t
            for key in ("Chip Temp Min", "Chip Temp Avg", "Chip Temp Max")
            if (t := opt_float(row, key)) is not None
        )
        board_temp = opt_float(row, "Temperature")
        boards.append(
            Hashboard(
                slot=opt_int(row, "Slot") or opt_int(row, "ASC") or 0,
                present=True,
                hashrate=summary_hashrates(row, model),
                chips_working=opt_int(row, "Effective Chips"),
                board_temps_c=(board_temp,) if board_temp is not None else (),
                chip_temps_c=chip_temps,
                hardware_errors=opt_int(row, "Hardware Errors"),
                serial=str(row["PCB SN"]) if row.get("PCB SN") else None,
            )
        )
    return MachineSnapshot(backend=backend, boards=tuple(boards))


def parse_stats(reply: Mapping[str, Any], model: str | None, backend: str) -> MachineSnapshot:
    """Old btminer `stats`: `SM0`-`SM2` per board (chip count, `temp_now_max`), then `POOLn`
    blocks (ignored: `pools` is the source for pools). No hashrate here."""
    boards = []
    for row in section(reply, "STATS", "stats"):
        m = _SM.match(str(row.get("ID", "")))
        if not m:
            continue
        temp = opt_float(row, "temp_now_max")
        boards.append(
            Hashboard(
                slot=int(m.group(1)),
                present=True,
                chips_expected=opt_int(row, "chip_num"),
                chip_temps_c=(temp,) if temp is not None else (),
            )
        )
    return MachineSnapshot(backend=backend, boards=tuple(boards))


def parse_get_version(reply: Mapping[str, Any], model: str | None, backend: str) -> MachineSnapshot:
    """btminer-native `get_version`: `STATUS` is the string "S" and `Msg` an object."""
    check_status(reply, "get_version")
    msg = obj(reply.get("Msg"), "get_version: Msg")
    return MachineSnapshot(
        backend=backend,
        firmware=_firmware(msg.get("fw_ver")),
        api_version=str(msg["api_ver"]) if "api_ver" in msg else None,
    )


def parse_v3_device(reply: Mapping[str, Any], model: str | None, backend: str) -> MachineSnapshot:
    """API v3 `get.device.info`: model, firmware, board count and PCB serials, PSU fan,
    whether it works. Numbers are strings (`"board-num": "3"`). `detect-hash-rate`
    (`"61434:53890:65727"`) is not read: no source states its unit or window."""
    check_status(reply, "get.device.info")
    msg = obj(reply.get("msg"), "get.device.info: msg")
    miner = obj(msg.get("miner", {}), "get.device.info: msg.miner")
    system = obj(msg.get("system", {}), "get.device.info: msg.system")
    count = opt_int(miner, "board-num") or 0
    if not 0 <= count <= _MAX_BOARDS:
        raise ReplyError(f"get.device.info: board-num {count} is not a board count")
    boards = tuple(
        Hashboard(slot=i, present=True, serial=str(sn) if (sn := miner.get(f"pcbsn{i}")) else None)
        for i in range(count)
    )
    working = miner.get("working")
    if working not in ("true", "false", None):
        raise ReplyError(f"get.device.info: working is {working!r}, not 'true'/'false'")
    return MachineSnapshot(
        backend=backend,
        model=str(miner["type"]) if miner.get("type") else None,
        firmware=str(system["fwversion"]) if system.get("fwversion") else None,
        api_version=str(system["api"]) if system.get("api") else None,
        state=None if working is None else _V3_STATE[str(working)],
        boards=boards,
    )
