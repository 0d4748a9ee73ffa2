"""The bytes a simulated machine sends: each firmware's reply shapes, filled from a `Reading`.

Pure: `render(reading, command) -> bytes`. The shapes (key names and spellings, their order,
strings vs numbers, units, slot numbering) follow the real captures described in
../shared/fixtures/asic-api/README.md, written out here from that description rather than
loaded from the files: the captures stay where they are (their licence notes; several rows
are GPL-3.0), and the simulator runs on a clone without ../shared. A test compares each
rendered shape with the capture's when ../shared is present (test_simulate_replies.py).

Wire quirks kept on purpose, as real machines send them:
- cgminer's C-string NUL after every TCP reply (README quirk 1);
- the old S9 bmminer `stats` with no comma between its two objects (`}{`, quirk 2);
- the Whatsminer M20S `Firmware Version` with `\\'` escapes, which strict JSON refuses (3);
- X19 dash-string temperatures, `chain_rateN` strings, `""` (stock) / `"0"` (LuxOS) for an
  empty slot, `GHS 5s` as a string on the S9 (6, 8);
- the Avalon `MM ID0` blob and the multi-command reply keyed by command, each a one-element
  list, not in request order (4, 10).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from hashfarm.fleet.sim_state import Reading

__all__ = ["GARBAGE", "UnknownCommand", "render"]

GARBAGE = b"\x16\x03\x01\x00\xa5<html>500 Internal Server Error</html>\xff\xfe"  # not JSON
_GH, _MH = 10**9, 10**6
_COMPILED = "Tue Dec  6 16:12:30 CST 2022"


class UnknownCommand(LookupError):
    """A command this firmware does not have (the server answers cgminer's `Invalid command`)."""


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def _ghs(hs: int) -> float:
    return round(hs / _GH, 2)


def _mhs(hs: int) -> float:
    return round(hs / _MH, 2)


def _status(r: Reading, code: int, msg: str, description: str) -> list[dict[str, Any]]:
    return [{"STATUS": "S", "When": r.when, "Code": code, "Msg": msg, "Description": description}]


def _envelope(r: Reading, key: str, rows: list[dict[str, Any]], code: int, msg: str) -> str:
    description = _DESCRIPTION[r.profile.backend]
    return _dumps({"STATUS": _status(r, code, msg, description), key: rows, "id": 1})


_DESCRIPTION = {
    "bmminer": "cgminer 1.0.0",
    "luxos": "LUXminer 2025.4.8.220305-57b389c7",
    "btminer": "cgminer 4.9.2",
    "avalon": "cgminer 4.11.1",
    "bosminer": "BOSminer+ 0.2.0-36c56a9363",
}


def _dash(temps: tuple[float, ...]) -> str:
    return "-".join(f"{t:g}" for t in temps) if temps else "0-0-0-0"


# -- Antminer: bmminer (X19 and S9) and LuxOS ------------------------------------------------


def _antminer_stats(r: Reading) -> str:
    p = r.profile
    luxos, old = p.backend == "luxos", p.slot_count == 16
    boards = {b.slot: b for b in r.boards}
    slots = range(1, p.slot_count + 1)
    header: dict[str, Any] = (
        {"CompileTime": _COMPILED, "Miner": p.firmware, "Type": p.model}
        if luxos
        else {"BMMiner": "2.0.0" if old else "1.0.0", "Miner": p.firmware,
              "CompileTime": _COMPILED, "Type": p.model}
    )  # fmt: skip
    five = f"{_ghs(r.five_sec_hs):.2f}" if old else _ghs(r.five_sec_hs)  # S9: a string
    data: dict[str, Any] = {
        "STATS": 0, "ID": "BC50" if old else "BTM_SOC0", "Elapsed": r.uptime_s, "Calls": 0,
        "Wait": 0, "Max": 0, "Min": 99999999, "GHS 5s": five, "GHS av": _ghs(r.average_hs),
    }  # fmt: skip
    if not old:
        data["rate_30m"] = _ghs(r.fifteen_min_hs)
        data["Mode"] = 2
    data["miner_count"] = len(r.present_boards)
    data["frequency"] = "550" if old else 525
    fan_rpm = dict(r.fans)
    fan_slots = range(1, 9) if old else p.fan_slots
    data["fan_num"] = len(p.fan_slots)
    for slot in fan_slots:
        data[f"fan{slot}"] = fan_rpm.get(slot, 0)
    data["temp_num"] = len(p.board_slots)
    for slot in slots if old else p.board_slots:
        b = boards.get(slot)
        ok = b is not None and b.present
        data[f"temp{slot}"] = b.board_temps_c[0] if b and ok else 0
        data[f"temp2_{slot}"] = b.chip_temps_c[0] if b and ok else 0
    if not old:
        for kind, attr in (("pcb", "board_temps_c"), ("chip", "chip_temps_c")):
            for slot in slots:
                b = boards.get(slot)
                data[f"temp_{kind}{slot}"] = _dash(getattr(b, attr) if b else ())
    data["total_rateideal"] = _ghs(r.nominal_hs)
    if not old:
        data["rate_unit"] = "GH"
    data["total_acn"] = sum(b.chips for b in r.boards)
    data["no_matching_work"] = r.hardware_errors
    per_board_rate = {b.slot: b.average_hs if luxos else b.rate_hs for b in r.boards}
    for key, value in (
        ("chain_acn", lambda b: b.chips if b else 0),
        ("chain_acs", lambda b: _chip_map(b.chips) if b and b.present else ""),
        ("chain_hw", lambda b: b.hardware_errors if b else 0),
        ("chain_rate", lambda b: _chain_rate(b, per_board_rate, luxos)),
    ):
        for slot in slots:
            data[f"{key}{slot}"] = value(boards.get(slot))
    data["miner_version"] = p.firmware
    if old:  # old bmminer writes its two STATS objects with no comma between them
        stats = f"[{_dumps(header)}{_dumps(data)}]"
        status = _dumps(_status(r, 70, "BMMiner stats", "bmminer 1.0.0"))
        return f'{{"STATUS":{status},"STATS":{stats},"id":1}}'
    return _envelope(r, "STATS", [header, data], 70, "LUXminer stats" if luxos else "CGMiner stats")


def _chip_map(chips: int) -> str:
    """`" ooo ooo ... oo"`: one `o` per chip that answers (`x` would be a dead chip)."""
    groups = ["ooo"] * (chips // 3) + (["o" * (chips % 3)] if chips % 3 else [])
    return " " + " ".join(groups)


def _chain_rate(b: Any, rates: dict[int, int], luxos: bool) -> str:
    if b is None or not b.present:
        return "0" if luxos else ""
    return f"{_ghs(rates[b.slot]):.2f}"


def _cgminer_summary(r: Reading) -> str:
    p = r.profile
    row: dict[str, Any] = {"Elapsed": r.uptime_s}
    if p.backend in ("bmminer", "luxos"):
        row |= {"GHS 5s": _ghs(r.five_sec_hs), "GHS av": _ghs(r.average_hs),
                "GHS 30m": _ghs(r.fifteen_min_hs)}  # fmt: skip
    else:  # bosminer, Avalon: MH/s
        row |= {"MHS av": _mhs(r.average_hs), "MHS 5s": _mhs(r.five_sec_hs),
                "MHS 1m": _mhs(r.one_min_hs), "MHS 15m": _mhs(r.fifteen_min_hs)}  # fmt: skip
    row |= {"Found Blocks": 0, "Accepted": r.pool.accepted, "Rejected": r.pool.rejected,
            "Hardware Errors": r.hardware_errors}  # fmt: skip
    return _envelope(r, "SUMMARY", [row], 11, "Summary")


def _cgminer_pools(r: Reading) -> str:
    pool = r.pool
    row = {
        "POOL": 0, "URL": pool.url, "Status": "Alive" if pool.alive else "Dead", "Priority": 0,
        "Quota": 1, "Long Poll": "N", "Accepted": pool.accepted, "Rejected": pool.rejected,
        "User": pool.user, "Last Share Time": "0:00:03" if pool.alive else "0",
        "Diff": "1", "Has Stratum": True, "Stratum Active": pool.alive,
        "Stratum URL": pool.url.split("//")[-1].rsplit(":", 1)[0] if pool.alive else "",
    }  # fmt: skip
    if r.profile.backend == "luxos":  # LuxOS spells it "Long Pool" and groups its pools
        row = {("Long Pool" if k == "Long Poll" else k): v for k, v in row.items()}
        row["GROUP"] = 0
    return _envelope(r, "POOLS", [row], 7, "1 Pool(s)")


def _cgminer_version(r: Reading) -> str:
    p = r.profile
    family = _FAMILY[p.backend]  # the first key names the miner program, as on bmminer
    row = {family[0]: family[1], "API": "3.1", "Miner": p.firmware, "CompileTime": _COMPILED,
           "Type": p.model}  # fmt: skip
    return _envelope(r, "VERSION", [row], 22, "CGMiner versions")


# Only the bmminer row is captured (antminer-s19pro-bmminer-version.json); the others follow
# the STATUS Description each firmware's captures carry.
_FAMILY = {
    "bmminer": ("BMMiner", "1.0.0"),
    "luxos": ("LUXminer", "2025.4.8.220305"),
    "avalon": ("CGMiner", "4.11.1"),
    "bosminer": ("BOSminer+", "0.2.0-36c56a9363"),
}


def _luxos_events(r: Reading) -> str:
    return _envelope(r, "EVENTS", [], 0, "0 Event(s)")


# -- Whatsminer btminer ----------------------------------------------------------------------


def _btminer_summary(r: Reading) -> str:
    fans = dict(r.fans)
    chip_max = max((t for b in r.present_boards for t in b.chip_temps_c), default=0.0)
    row: dict[str, Any] = {
        "Elapsed": r.uptime_s, "MHS av": _mhs(r.average_hs), "MHS 5s": _mhs(r.five_sec_hs),
        "MHS 1m": _mhs(r.one_min_hs), "MHS 15m": _mhs(r.fifteen_min_hs), "Found Blocks": 0,
        "Accepted": r.pool.accepted, "Rejected": r.pool.rejected,
        "Hardware Errors": r.hardware_errors,
        "Temperature": max((b.board_temps_c[0] for b in r.present_boards), default=0.0),
        "Fan Speed In": fans[0], "Fan Speed Out": fans[1], "Power": r.power_w,
        "Uptime": r.uptime_s, "Firmware Version": "@FIRMWARE@",
        "Factory GHS": r.nominal_hs // _GH, "Chip Temp Max": chip_max,
    }  # fmt: skip
    text = _envelope(r, "SUMMARY", [row], 11, "Summary")
    # The M20S writes \' inside the string, which strict JSON refuses (README quirk 3).
    return text.replace('"@FIRMWARE@"', f"\"\\'{r.profile.firmware}\\'\"")


def _btminer_devs(r: Reading) -> str:
    rows = [
        {
            "ASC": i,
            "Name": "SM",
            "ID": i,
            "Slot": b.slot,
            "Enabled": "Y",
            "Status": "Alive",
            "Temperature": b.board_temps_c[0],
            "Chip Temp Min": b.chip_temps_c[1],
            "Chip Temp Max": b.chip_temps_c[0],
            "Chip Temp Avg": b.chip_temps_c[2],
            "MHS av": _mhs(b.average_hs),
            "MHS 5s": _mhs(b.rate_hs),
            "MHS 1m": _mhs(b.rate_hs),
            "MHS 15m": _mhs(b.rate_hs),
            "Hardware Errors": b.hardware_errors,
            "Effective Chips": b.chips,
            "PCB SN": f"SIM{r.profile.model[-4:]}{b.slot:02d}",
        }
        for i, b in enumerate(r.present_boards)
    ]
    return _envelope(r, "DEVS", rows, 9, f"{len(rows)} ASC(s)")


def _btminer_get_version(r: Reading) -> str:
    msg = {"api_ver": "whatsminer v1.4.0", "fw_ver": r.profile.firmware}
    reply = {"STATUS": "S", "When": r.when, "Code": 131, "Msg": msg,
             "Description": "whatsminer v1.4.0"}  # fmt: skip
    return _dumps(reply)


# -- Avalon ----------------------------------------------------------------------------------


def _avalon_blob(r: Reading) -> str:
    boards = r.present_boards
    fans = " ".join(f"Fan{slot}[{rpm}]" for slot, rpm in r.fans)
    mghs = " ".join(f"{_ghs(b.average_hs):.2f}" for b in boards)
    tmax = " ".join(f"{b.chip_temps_c[0]:g}" for b in boards)
    hottest = max((b.chip_temps_c[0] for b in boards), default=0)
    return (
        f"Ver[{r.profile.firmware}] DNA[0201000000000000] "
        f"SYSTEMSTATU[Work: In Work, Hash Board: {len(boards)} ] Elapsed[{r.uptime_s}] "
        f"HW[{r.hardware_errors}] TMax[{hottest:g}] {fans} "
        f"PS[0 1214 1316 242 3189 1320 {round(r.power_w or 0)}] "
        f"GHSspd[{_ghs(r.five_sec_hs):.2f}] GHSmm[{_ghs(r.nominal_hs):.2f}] "
        f"GHSavg[{_ghs(r.average_hs):.2f}] MGHS[{mghs}] MTmax[{tmax}]"
    )


def _avalon_stats(r: Reading) -> str:
    row = {"STATS": 0, "ID": "AVA100", "Elapsed": r.uptime_s, "Calls": 0, "MM Count": 1,
           "MM ID0": _avalon_blob(r)}  # fmt: skip
    return _envelope(r, "STATS", [row], 70, "CGMiner stats")


# -- Braiins OS (bosminer) -------------------------------------------------------------------


def _bosminer_temps(r: Reading) -> str:
    rows = [
        {"Board": b.board_temps_c[0], "Chip": 0.0, "ID": b.slot, "TEMP": i}
        for i, b in enumerate(r.present_boards)
    ]
    return _envelope(r, "TEMPS", rows, 201, f"{len(rows)} Temp(s)")


def _bosminer_fans(r: Reading) -> str:
    rpm = dict(r.fans)
    rows = [{"FAN": i, "ID": i, "RPM": rpm.get(i, 0), "Speed": 40} for i in range(4)]
    return _envelope(r, "FANS", rows, 202, "4 Fan(s)")


# -- Bitaxe AxeOS (HTTP) ---------------------------------------------------------------------


def _axeos_info(r: Reading) -> str:
    host, _, port = r.pool.url.split("//")[-1].rpartition(":")
    board = r.boards[0]
    return json.dumps(
        {
            "power": r.power_w, "voltage": 5175, "current": 2400.0,
            "temp": board.chip_temps_c[0], "vrTemp": board.board_temps_c[0],
            "hashRate": _ghs(r.five_sec_hs), "bestDiff": "483k", "bestSessionDiff": "0",
            "stratumDiff": 1, "isUsingFallbackStratum": 0,
            "sharesAccepted": r.pool.accepted, "sharesRejected": r.pool.rejected,
            "uptimeSeconds": r.uptime_s, "asicCount": 1, "smallCoreCount": 1276,
            "ASICModel": "BM1368", "stratumURL": host, "stratumPort": int(port or 3333),
            "stratumUser": r.pool.user, "version": r.profile.firmware, "boardVersion": "401",
            "fanspeed": 35, "fanrpm": dict(r.fans)[0],
        },
        indent=2,
    )  # fmt: skip


_RENDERERS: dict[str, dict[str, Callable[[Reading], str]]] = {
    "bmminer": {"stats": _antminer_stats, "summary": _cgminer_summary, "pools": _cgminer_pools,
                "version": _cgminer_version},
    "luxos": {"stats": _antminer_stats, "summary": _cgminer_summary, "pools": _cgminer_pools,
              "version": _cgminer_version, "events": _luxos_events},
    "btminer": {"summary": _btminer_summary, "devs": _btminer_devs, "pools": _cgminer_pools,
                "get_version": _btminer_get_version},
    "avalon": {"stats": _avalon_stats, "estats": _avalon_stats, "summary": _cgminer_summary,
               "pools": _cgminer_pools, "version": _cgminer_version},
    "bosminer": {"summary": _cgminer_summary, "temps": _bosminer_temps, "fans": _bosminer_fans,
                 "pools": _cgminer_pools, "version": _cgminer_version},
    "axeos": {"/api/system/info": _axeos_info},
}  # fmt: skip


def _multi(r: Reading, commands: list[str], table: dict[str, Callable[[Reading], str]]) -> str:
    """cgminer API 3.1: keyed by command, each value a one-element list, in the order the
    firmware keeps (sorted here, as the Avalon capture's order is not the request's)."""
    parts = [f'"{c}":[{table[c](r)}]' for c in sorted(set(commands))]
    return "{" + ",".join(parts) + ',"id":1}'


def render(reading: Reading, command: str) -> bytes:
    """The reply body for `command` (a cgminer command, `a+b` where the firmware takes
    multi-commands, or an HTTP path). cgminer replies end with NUL; HTTP bodies do not.
    Raises UnknownCommand for a command the firmware does not have."""
    p = reading.profile
    table = _RENDERERS[p.backend]
    parts = command.split("+")
    if any(c not in table for c in parts) or (len(parts) > 1 and p.backend != "avalon"):
        raise UnknownCommand(command)
    text = table[command](reading) if len(parts) == 1 else _multi(reading, parts, table)
    return text.encode() + (b"\x00" if p.transport == "cgminer-rpc" else b"")


def invalid_command(reading: Reading, command: str) -> bytes:
    """cgminer's answer to a command it does not know (STATUS E, Code 14)."""
    status = [{"STATUS": "E", "When": reading.when, "Code": 14, "Msg": "Invalid command",
               "Description": _DESCRIPTION.get(reading.profile.backend, "cgminer")}]  # fmt: skip
    return _dumps({"STATUS": status, "id": 1}).encode() + b"\x00"
