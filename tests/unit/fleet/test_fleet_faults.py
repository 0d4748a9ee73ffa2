"""Faults from the model: every fault capture (bold in the fixtures README) raises its fault,
no healthy capture raises any, and each threshold moves the verdict on real data."""

from __future__ import annotations

from dataclasses import replace

import pytest

from hashfarm.fleet import FaultKind, FaultThresholds, derive_faults, enrich
from hashfarm.fleet.model import Fan, Hashrates, MinerState, PowerSource
from hashfarm.fleet.sources import BACKENDS, read

K = FaultKind
S19PRO, S9 = "Antminer S19 Pro", "Antminer S9"

CASES = [
    # backend, command, capture, model hint (for replies that do not name it), faults
    ("bmminer", "summary", "antminer-s19pro-bmminer-summary.json", S19PRO, set()),
    ("bmminer", "stats", "antminer-s19pro-bmminer-stats.json", None, set()),
    ("bmminer", "devs", "antminer-s19pro-bmminer-devs.json", S19PRO, set()),
    ("bmminer", "pools", "antminer-s19pro-bmminer-pools.json", S19PRO, set()),
    ("bmminer", "version", "antminer-s19pro-bmminer-version.json", None, set()),
    (
        "bmminer", "stats", "antminer-s19pro-bmminer-stats-overheating.json", None,
        {K.OVERHEATING, K.NOT_HASHING},
    ),
    (
        "bmminer", "stats", "antminer-s19-bmminer-stats-sleeping.json", None,
        {K.MISSING_BOARD, K.NOT_HASHING},
    ),
    ("bmminer", "stats", "antminer-s9-hiveon-bmminer-stats.raw", None, set()),
    ("bmminer", "stats", "antminer-s9-bmminer-stats-bad-temps.raw", None, {K.BAD_SENSOR}),
    ("bmminer", "stats", "antminer-l3plus-cgminer-stats.raw", None, set()),
    ("bosminer", "summary", "antminer-s9-braiins-os-plus-summary.json", S9, set()),
    ("bosminer", "temps", "antminer-s9-braiins-os-plus-temps.json", S9, set()),
    ("bosminer", "fans", "antminer-s9-braiins-os-plus-fans.json", S9, set()),
    ("btminer", "summary", "whatsminer-btminer-summary.json", None, set()),
    ("btminer", "devs", "whatsminer-btminer-devs.json", None, set()),
    ("btminer", "get_version", "whatsminer-btminer-get-version.json", None, set()),
    ("btminer", "summary", "whatsminer-m20s-btminer-summary.raw", "Whatsminer M20S", set()),
    ("btminer", "stats", "whatsminer-m20s-btminer-stats.json", "Whatsminer M20S", set()),
    ("btminer-v3", "get.device.info", "whatsminer-m60s-btminer-v3-get-device-info.json", None,
     set()),
    ("avalon", "stats", "avalon-1246-cgminer-stats.json", "AvalonMiner 1246", set()),
    ("avalon", "stats", "avalon-q-cgminer-stats-idle.json", "Avalon Q", {K.IDLE}),
    ("avalon", "estats", "avalon-1566-cgminer-estats.json", "Avalon A1566", set()),
    ("avalon", "devs", "avalon-1566-cgminer-devs.json", "Avalon A1566", {K.BAD_SENSOR}),
    ("avalon", "pools+summary+stats", "avalon-10xx-cgminer-pools+summary+stats.raw", None,
     set()),
    ("luxos", "stats", "luxos-s19kpro-stats.json", None, set()),
    ("luxos", "pools", "luxos-s19kpro-pools-dead.json", "Antminer S19k Pro", {K.DEAD_POOL}),
    ("luxos", "events", "luxos-events-nopic-protection.json", None, {K.FIRMWARE_ERROR}),
    (
        "braiins-rest", "/api/v1/miner/errors", "braiins-os-26.04-s21pro-rest-miner-errors.json",
        "Antminer S21 Pro", {K.BAD_SENSOR, K.FIRMWARE_ERROR},
    ),
    ("braiins-rest", "/api/v1/miner/stats", "braiins-os-25.07-s19xp-rest-miner-stats.json",
     "Antminer S19 XP", set()),
    ("axeos", "/api/system/info", "bitaxe-supra-axeos-system-info.json", None, set()),
]  # fmt: skip


def _enriched(snapshot, backend, command, name, model=None):
    return enrich(snapshot(backend, command, name, model))


@pytest.mark.parametrize(("backend", "command", "name", "model", "expected"), CASES)
def test_fault_captures_raise_their_fault_and_healthy_ones_none(
    snapshot, backend, command, name, model, expected
):
    faults = derive_faults(_enriched(snapshot, backend, command, name, model))
    assert {f.kind for f in faults} == expected, faults


def test_every_capture_is_covered(capture):
    from realdata import shared_path

    files = {p.name for p in shared_path("fixtures/asic-api").iterdir() if p.name != "README.md"}
    assert files == {c[2] for c in CASES}


def test_fault_details(snapshot):
    hot = derive_faults(
        _enriched(snapshot, "bmminer", "stats", "antminer-s19pro-bmminer-stats-overheating.json")
    )
    assert [(f.detail, f.board) for f in hot if f.kind is K.OVERHEATING] == [("chip 97 °C", 3)]
    asleep = derive_faults(
        _enriched(snapshot, "bmminer", "stats", "antminer-s19-bmminer-stats-sleeping.json")
    )
    missing = [f.detail for f in asleep if f.kind is K.MISSING_BOARD]
    assert missing == ["2 of 3 boards (empty slots: 1)"]  # not slot 4: an X19 has 3 of 4
    pools = derive_faults(_enriched(snapshot, "luxos", "pools", "luxos-s19kpro-pools-dead.json"))
    assert [f.detail.split()[1] for f in pools] == ["1", "3"]
    bad = derive_faults(
        _enriched(snapshot, "bmminer", "stats", "antminer-s9-bmminer-stats-bad-temps.raw")
    )
    assert [(f.detail, f.board) for f in bad] == [("temp7=0, temp2_7=-83", 7)]


def test_braiins_error_log_is_deduplicated(snapshot):
    faults = derive_faults(
        _enriched(
            snapshot, "braiins-rest", "/api/v1/miner/errors",
            "braiins-os-26.04-s21pro-rest-miner-errors.json",
        )
    )  # fmt: skip
    sensors = [f for f in faults if f.kind is K.BAD_SENSOR]
    assert len(sensors) == 9  # 9 sensors in 129 log lines: one fault each
    codes = {f.detail for f in faults if f.kind is K.FIRMWARE_ERROR}
    assert {"power: V2", "hashboard: H1"} <= codes


def test_whole_s19pro_merged_and_enriched(capture):
    replies = {
        cmd: capture(f"antminer-s19pro-bmminer-{cmd}.json")
        for cmd in ("summary", "stats", "pools", "version", "devs")
    }
    s = enrich(read(BACKENDS["bmminer"], replies))
    assert s.model == S19PRO
    assert s.api_version == "3.1"
    assert s.live_pool is not None
    assert s.hashrate.average_hs == 111_834_630_000_000  # stats (first in the map) wins
    assert s.boards_expected == 3
    assert s.fans_expected == 4
    assert [b.chips_expected for b in s.present_boards] == [114, 114, 114]
    # no reported power: 110,566.89 GH/s = 110.56689 TH/s × 29.5 J/TH (catalog) = 3261.72 W
    assert (s.power_w, s.power_source) == (3261.7, PowerSource.DERIVED)
    assert derive_faults(s) == ()


def test_dead_fan(snapshot):
    s = _enriched(snapshot, "bmminer", "stats", "antminer-s19pro-bmminer-stats.json")
    broken = replace(s, fans=(Fan(1, 6000), Fan(2, 5880), Fan(3, 0), Fan(4, 5040)))
    (fault,) = derive_faults(broken)
    assert (fault.kind, fault.detail) == (K.DEAD_FAN, "3 of 4 fans spin (fan 3 at 0 rpm)")
    # bosminer lists 4 slots on an S9 with 2 fans: 2 spinning is healthy, 1 is not
    s9 = _enriched(snapshot, "bosminer", "fans", "antminer-s9-braiins-os-plus-fans.json", S9)
    assert derive_faults(s9) == ()
    one_left = replace(s9, fans=(Fan(0, 2820), Fan(1, 0), Fan(2, 0), Fan(3, 0)))
    assert [f.kind for f in derive_faults(one_left)] == [K.DEAD_FAN]


def test_idle_silences_fans_that_stop_on_purpose(snapshot):
    q = _enriched(snapshot, "avalon", "stats", "avalon-q-cgminer-stats-idle.json", "Avalon Q")
    assert [f.kind for f in derive_faults(q)] == [K.IDLE]
    mining = replace(q, state=MinerState.MINING)  # same four stopped fans, but hashing
    assert K.DEAD_FAN in {f.kind for f in derive_faults(mining)}


def test_low_hashrate_threshold_on_real_numbers(snapshot):
    s9 = _enriched(snapshot, "bmminer", "stats", "antminer-s9-bmminer-stats-bad-temps.raw")
    # 13,883.81 / 13,862.52 GH/s = 1.0015 of nominal: healthy at 80 %, low at 101 %
    assert K.LOW_HASHRATE not in {f.kind for f in derive_faults(s9)}
    strict = derive_faults(s9, FaultThresholds(hashrate_min_ratio=1.01))
    assert K.LOW_HASHRATE in {f.kind for f in strict}
    halved = replace(s9, hashrate=replace(s9.hashrate, five_sec_hs=6_931_260_000_000))
    low = [f for f in derive_faults(halved) if f.kind is K.LOW_HASHRATE]
    assert low[0].detail.startswith("50% of nominal")


def test_warmup_delays_hashrate_faults(snapshot):
    avalon = _enriched(
        snapshot, "avalon", "pools+summary+stats", "avalon-10xx-cgminer-pools+summary+stats.raw"
    )
    assert avalon.uptime_s == 157
    assert avalon.hashrate.live_hs == 0
    assert derive_faults(avalon) == ()  # default warm-up 900 s
    early = derive_faults(avalon, FaultThresholds(warmup_s=60))
    assert [f.kind for f in early] == [K.LOW_HASHRATE]


def test_temperature_thresholds_on_real_numbers(snapshot):
    wm = _enriched(snapshot, "btminer", "summary", "whatsminer-btminer-summary.json")
    assert derive_faults(wm) == ()  # Chip Temp Max 92.5 under the 95 °C default
    hot = derive_faults(wm, FaultThresholds(chip_temp_max_c=92.5))
    assert [(f.kind, f.detail) for f in hot] == [(K.OVERHEATING, "chip 92.5 °C")]


def test_no_live_pool(snapshot):
    s = _enriched(snapshot, "luxos", "pools", "luxos-s19kpro-pools-dead.json")
    all_dead = replace(s, pools=tuple(replace(p, alive=False, active=False) for p in s.pools))
    kinds = [f.kind for f in derive_faults(all_dead)]
    assert kinds.count(K.DEAD_POOL) == 4
    assert K.NO_LIVE_POOL in kinds


def test_unknown_values_raise_nothing():
    from hashfarm.fleet.model import MachineSnapshot

    assert derive_faults(MachineSnapshot(backend="bmminer", hashrate=Hashrates())) == ()


def test_no_derived_power_for_a_machine_that_does_not_hash(snapshot):
    # J/TH × 0 TH/s would claim 0 W for a stopped S19 Pro whose fans still run at 6000 rpm
    hot = _enriched(snapshot, "bmminer", "stats", "antminer-s19pro-bmminer-stats-overheating.json")
    assert hot.power_w is None
    ok = snapshot("bmminer", "stats", "antminer-s19pro-bmminer-stats.json")
    assert enrich(ok).power_source is PowerSource.DERIVED
    asleep = replace(ok, state=MinerState.IDLE)  # the firmware says idle: no estimate either
    assert enrich(asleep).power_w is None


@pytest.mark.parametrize(
    "bad",
    [
        {"chip_temp_max_c": -5},
        {"board_temp_max_c": 0},
        {"fan_min_rpm": -1},
        {"hashrate_min_ratio": 0},
        {"hashrate_min_ratio": 80},  # a percentage where a ratio belongs
        {"warmup_s": -1},
    ],
)
def test_thresholds_out_of_range_name_the_key(bad):
    from hashfarm.errors import ConfigError

    (key,) = bad
    with pytest.raises(ConfigError, match=f"fleet.faults.{key}: "):
        FaultThresholds(**bad)


def test_dead_board_among_hashing_ones(snapshot):
    s = _enriched(snapshot, "bmminer", "stats", "antminer-s19pro-bmminer-stats.json")
    one, two, three, empty = s.boards
    dead = replace(two, hashrate=replace(two.hashrate, five_sec_hs=0), chips_working=0)
    faults = derive_faults(replace(s, boards=(one, dead, three, empty)))
    assert [(f.kind, f.board) for f in faults] == [(K.DEAD_BOARD, 2)]
    # a board whose chips all stopped answering, even before its rate drops
    silent = replace(two, chips_working=0)
    assert [f.kind for f in derive_faults(replace(s, boards=(one, silent, three, empty)))] == [
        K.DEAD_BOARD
    ]
