"""The simulator's replies, without sockets: fed through the project's real parsers
(`backends.read`, `hardware.enrich`, `faults.derive_faults`) they give back the simulated
state's numbers; each injected fault raises exactly its expected kinds and a healthy machine
none; the wire quirks are there; and every rendered shape uses only the keys (and value
types) of the real capture it imitates, checked against ../shared when it is present."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from hashfarm.fleet import derive_faults, enrich
from hashfarm.fleet.errors import CommandError
from hashfarm.fleet.faults import FaultKind
from hashfarm.fleet.model import MachineSnapshot
from hashfarm.fleet.sim_replies import UnknownCommand, invalid_command, render
from hashfarm.fleet.sim_state import PROFILES, MachineState, Reading, SimFault, quantise
from hashfarm.fleet.sources import BACKENDS, decode_reply, read
from hashfarm.fleet.sources.avalon import parse_blob

UPTIME = 86_400
WHEN = 1_764_720_000
DATA_FAULTS = [f for f in SimFault if f not in (SimFault.API_HANG, SimFault.API_GARBAGE)]


def reading_of(name: str, index: int = 0, *faults: SimFault) -> tuple[MachineState, Reading]:
    state = MachineState(PROFILES[name], index)
    for fault in faults:
        state.inject(fault)
    return state, state.reading(state.nominal_hashing(UPTIME), UPTIME, WHEN)


def parsed(reading: Reading) -> MachineSnapshot:
    p = reading.profile
    replies = {c: render(reading, c) for c in p.commands}
    return enrich(read(BACKENDS[p.backend], replies, model=p.model))


@pytest.mark.parametrize("name", list(PROFILES))
def test_healthy_machine_parses_to_its_state_and_raises_no_fault(name: str) -> None:
    _, r = reading_of(name, index=1)  # index 1: 1 % under nominal
    snap = parsed(r)
    assert derive_faults(snap) == ()
    assert snap.hashrate.live_hs == r.five_sec_hs
    assert snap.uptime_s == UPTIME
    assert snap.model == r.profile.model
    present = [b.slot for b in snap.boards if b.present]
    assert len(present) == len(r.profile.board_slots)
    spinning = {f.slot: f.rpm for f in snap.fans if f.rpm > 0}
    assert sorted(spinning.values()) == sorted(rpm for _, rpm in r.fans)
    if r.profile.backend != "axeos":  # AxeOS reports no pool health (always "configured")
        [pool] = snap.pools
        assert (pool.alive, pool.active, pool.url) == (True, True, r.pool.url)
        assert (pool.accepted, pool.rejected) == (UPTIME // 30, 0)


def test_s19pro_numbers_by_hand() -> None:
    # index 1: 110 TH/s less 1 % = 108.9 TH/s; 3 boards of 36.3 TH/s, on the 10 MH/s step
    _, r = reading_of("antminer-s19pro", index=1)
    assert [b.rate_hs for b in r.present_boards] == [36_300_000_000_000] * 3
    snap = parsed(r)
    assert snap.hashrate.five_sec_hs == 108_900_000_000_000
    assert snap.hashrate.nominal_hs == 110_000_000_000_000  # total_rateideal 110000.00 GH
    assert [b.hashrate.five_sec_hs for b in snap.boards if b.present] == [36_300_000_000_000] * 3
    assert [b.chips_working for b in snap.boards] == [114, 114, 114, None]
    assert snap.boards[0].chip_temps_c == (71.0, 51.0, 69.0, 70.0)  # temp_chip1 "71-51-69-70"
    assert [f.rpm for f in snap.fans] == [5880, 5940, 6000, 6060]
    assert snap.power_w == round(108.9 * 29.5, 1)  # no reported power: catalog J/TH x TH/s


def test_whatsminer_and_avalon_numbers_by_hand() -> None:
    _, r = reading_of("whatsminer-m20s", index=2)  # 68 TH/s less 2 % = 66.64 TH/s
    snap = parsed(r)
    # 3 boards of 22.21333 TH/s on the 10 MH/s step: MHS 5s is their sum, 22213330 MH/s x 3
    assert [b.hashrate.five_sec_hs for b in snap.boards] == [22_213_330_000_000] * 3
    assert snap.hashrate.five_sec_hs == 66_639_990_000_000
    assert snap.hashrate.one_min_hs == 66_640_000_000_000  # the machine's own 1 min figure
    assert snap.hashrate.nominal_hs == 68_000_000_000_000  # Factory GHS 68000
    assert snap.power_w == round(3360 * 0.98, 1)  # reported, W
    assert snap.firmware == "20200917.22.REL"  # from "\'20200917.22.REL\'" after the repair
    _, r = reading_of("avalon-1246", index=0)
    snap = parsed(r)
    assert snap.hashrate.five_sec_hs == 90_000_000_000_000  # GHSspd[90000.00]
    assert [b.hashrate.average_hs for b in snap.boards] == [30_000_000_000_000] * 3  # MGHS


@pytest.mark.parametrize("fault", DATA_FAULTS)
@pytest.mark.parametrize("name", list(PROFILES))
def test_each_fault_raises_exactly_its_expected_kinds(name: str, fault: SimFault) -> None:
    if fault is SimFault.BOARD_DROP and len(PROFILES[name].board_slots) == 1:
        with pytest.raises(ValueError, match="one board"):
            reading_of(name, 0, fault)
        return
    state, r = reading_of(name, 0, fault)
    kinds = {f.kind for f in derive_faults(parsed(r))}
    assert kinds == state.expected_faults()
    assert kinds  # every fault is seen by the parsers
    main = {
        SimFault.BOARD_DROP: FaultKind.MISSING_BOARD,
        SimFault.FAN_STOP: FaultKind.DEAD_FAN,
        SimFault.OVERHEAT: FaultKind.OVERHEATING,
    }
    if fault in main:
        assert main[fault] in kinds
    elif r.profile.backend != "axeos":
        assert {FaultKind.DEAD_POOL, FaultKind.NO_LIVE_POOL} <= kinds


def test_faults_name_the_slot_and_clear() -> None:
    state = MachineState(PROFILES["antminer-s19pro"], 0)
    state.inject(SimFault.BOARD_DROP, slot=2)
    state.inject(SimFault.FAN_STOP, slot=3)
    r = state.reading(state.nominal_hashing(UPTIME), UPTIME, WHEN)
    faults = derive_faults(parsed(r))
    details = {f.kind: f.detail for f in faults}
    assert details[FaultKind.MISSING_BOARD] == "2 of 3 boards (empty slots: 2)"
    assert details[FaultKind.DEAD_FAN] == "3 of 4 fans spin"  # bmminer omits a 0 rpm fan
    with pytest.raises(ValueError, match="no board in slot 4"):
        state.inject(SimFault.BOARD_DROP, slot=4)
    state.clear(SimFault.BOARD_DROP)
    state.clear(SimFault.FAN_STOP)
    r = state.reading(state.nominal_hashing(UPTIME), UPTIME, WHEN)
    assert derive_faults(parsed(r)) == ()


def test_wire_quirks_of_the_real_firmwares() -> None:
    _, s19 = reading_of("antminer-s19pro")
    raw = render(s19, "stats")
    assert raw.endswith(b"}\x00")
    assert raw.count(b"\x00") == 1
    _, s9 = reading_of("antminer-s9")
    assert decode_reply(render(s9, "stats")).repairs == ("missing-comma-between-objects",)
    assert b'"GHS 5s":"' in render(s9, "stats")  # a string on the S9
    _, m20s = reading_of("whatsminer-m20s")
    assert decode_reply(render(m20s, "summary")).repairs == ("backslash-quote-escape",)
    _, lux = reading_of("luxos-s19kpro")
    stats = decode_reply(render(lux, "stats")).data["STATS"][1]
    assert (stats["chain_rate4"], stats["chain_acs4"]) == ("0", "")  # LuxOS empty slot
    _, axe = reading_of("bitaxe-supra")
    assert not render(axe, "/api/system/info").endswith(b"\x00")  # HTTP: no NUL


def test_multi_command_only_where_the_firmware_takes_it() -> None:
    _, avalon = reading_of("avalon-1246")
    data = decode_reply(render(avalon, "summary+pools+stats")).data
    assert set(data) == {"summary", "pools", "stats", "id"}
    assert all(isinstance(data[k], list) and len(data[k]) == 1 for k in ("summary", "stats"))
    _, s19 = reading_of("antminer-s19pro")
    with pytest.raises(UnknownCommand):
        render(s19, "summary+pools")
    with pytest.raises(UnknownCommand):
        render(s19, "estats")
    reply = invalid_command(s19, "estats")
    with pytest.raises(CommandError, match="Invalid command"):
        read(BACKENDS["bmminer"], {"summary": reply})


def test_hashrates_sit_on_the_quantum() -> None:
    assert quantise(36_666_666_666_666.6) == 36_666_670_000_000
    assert quantise(22_213_333_333_333.3) == 22_213_330_000_000
    assert quantise(0.8 * 110e12) == 88_000_000_000_000  # not a hair under 80 %
    assert quantise(-5) == 0


# -- shape parity with the captures (../shared) ---------------------------------------------

CAPTURES = [  # profile, command, capture, how to pick the rows compared
    ("antminer-s19pro", "stats", "antminer-s19pro-bmminer-stats.json", "STATS"),
    ("antminer-s19pro", "summary", "antminer-s19pro-bmminer-summary.json", "SUMMARY"),
    ("antminer-s19pro", "pools", "antminer-s19pro-bmminer-pools.json", "POOLS"),
    ("antminer-s19pro", "version", "antminer-s19pro-bmminer-version.json", "VERSION"),
    ("antminer-s9", "stats", "antminer-s9-hiveon-bmminer-stats.raw", "STATS"),
    ("luxos-s19kpro", "stats", "luxos-s19kpro-stats.json", "STATS"),
    ("luxos-s19kpro", "pools", "luxos-s19kpro-pools-dead.json", "POOLS"),
    ("whatsminer-m20s", "summary", "whatsminer-btminer-summary.json", "SUMMARY"),
    ("whatsminer-m20s", "devs", "whatsminer-btminer-devs.json", "DEVS"),
    ("whatsminer-m20s", "get_version", "whatsminer-btminer-get-version.json", None),
    ("avalon-1246", "stats", "avalon-1246-cgminer-stats.json", "STATS"),
    ("bosminer-s9", "summary", "antminer-s9-braiins-os-plus-summary.json", "SUMMARY"),
    ("bosminer-s9", "temps", "antminer-s9-braiins-os-plus-temps.json", "TEMPS"),
    ("bosminer-s9", "fans", "antminer-s9-braiins-os-plus-fans.json", "FANS"),
    ("bitaxe-supra", "/api/system/info", "bitaxe-supra-axeos-system-info.json", None),
]


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def _rows(data: Mapping[str, Any], key: str | None) -> list[Mapping[str, Any]]:
    return [data] if key is None else list(data[key])


def _shape(rows: list[Mapping[str, Any]]) -> dict[str, str]:
    shape = {k: _kind(v) for row in rows for k, v in row.items()}
    for row in rows:  # an Avalon MM ID blob: compare its items too
        for key, value in row.items():
            if key.startswith("MM ID"):
                shape |= {f"{key}:{k}": "blob" for k in parse_blob(str(value))}
    return shape


@pytest.mark.parametrize(("name", "command", "capture_name", "key"), CAPTURES)
def test_rendered_shape_uses_the_capture_keys_and_types(
    capture: Callable[[str], bytes], name: str, command: str, capture_name: str, key: str | None
) -> None:
    real = _shape(_rows(decode_reply(capture(capture_name)).data, key))
    _, r = reading_of(name)
    ours = _shape(_rows(decode_reply(render(r, command)).data, key))
    unknown = sorted(set(ours) - set(real))
    assert not unknown, f"keys the real {capture_name} does not have: {unknown}"
    types = {k: (ours[k], real[k]) for k in ours if ours[k] != real[k]}
    assert not types, f"value types that differ from {capture_name}: {types}"


def test_capture_parity_covers_every_profile() -> None:
    assert {name for name, *_ in CAPTURES} == set(PROFILES)
    assert json.dumps(sorted(PROFILES))  # profile names are plain strings for --models


@pytest.mark.parametrize("name", [n for n, p in PROFILES.items() if p.transport == "cgminer-rpc"])
def test_a_scanner_can_tell_the_firmwares_apart(name: str) -> None:
    """`version` names the model and the miner program (first key); btminer refuses it
    (cgminer's Invalid command) and answers its own `get_version` instead."""
    _, r = reading_of(name)
    if r.profile.backend == "btminer":
        with pytest.raises(UnknownCommand):
            render(r, "version")
        reply = decode_reply(render(r, "get_version")).data
        assert (reply["STATUS"], reply["Msg"]["fw_ver"]) == ("S", r.profile.firmware)
        return
    snap = read(BACKENDS[r.profile.backend], {"version": render(r, "version")})
    assert snap.model == r.profile.model
    row = decode_reply(render(r, "version")).data["VERSION"][0]
    programs = {"bmminer": "BMMiner", "luxos": "LUXminer", "avalon": "CGMiner"}
    assert next(iter(row)) == programs.get(r.profile.backend, "BOSminer+")
