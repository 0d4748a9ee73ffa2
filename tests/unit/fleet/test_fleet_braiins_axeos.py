"""Braiins OS (bosminer API and REST) and Bitaxe AxeOS captures parsed to the model."""

from __future__ import annotations

import pytest

from hashfarm.fleet.errors import ReplyError
from hashfarm.fleet.model import ErrorCategory, Fan, PowerSource
from hashfarm.fleet.sources import BACKENDS, read
from hashfarm.fleet.sources.axeos import best_difficulty

MH, GH = 10**6, 10**9


def test_bosminer_summary_mhs(snapshot):
    s = snapshot("bosminer", "summary", "antminer-s9-braiins-os-plus-summary.json")
    # "MHS 5s": 15740915.842676325 MH/s × 10^6 = 15,740,915,842,676.325 -> 15,740,915,842,676
    assert s.hashrate.five_sec_hs == 15_740_915_842_676
    assert s.hashrate.one_min_hs == 13_967_276_988_002  # 13967276.98800245 MH/s, rounded
    assert s.hashrate.fifteen_min_hs == 14_199_249_521_458  # 14199249.521457672
    assert s.hashrate.average_hs == 11_988_299_650_652  # MHS av 11988299.650652435
    assert s.uptime_s == 3680
    assert s.hardware_errors == 186


def test_bosminer_temps_chip_zero_is_absent(snapshot):
    s = snapshot("bosminer", "temps", "antminer-s9-braiins-os-plus-temps.json")
    assert [(b.slot, b.board_temps_c, b.chip_temps_c) for b in s.boards] == [
        (6, (75.0,), ()),
        (7, (63.0,), ()),
        (8, (70.0,), ()),
    ]  # "Chip": 0.0 means bosminer does not measure it, not a broken sensor
    assert all(b.bad_sensors == () for b in s.boards)


def test_bosminer_fans_all_slots(snapshot):
    s = snapshot("bosminer", "fans", "antminer-s9-braiins-os-plus-fans.json")
    assert s.fans == (Fan(0, 2820), Fan(1, 3780), Fan(2, 0), Fan(3, 0))
    assert s.fans_expected is None  # an S9 has 2: a hardware fact, see test_fleet_faults


def test_braiins_rest_stats_unit_tagged(snapshot):
    name = "braiins-os-25.07-s19xp-rest-miner-stats.json"
    s = snapshot("braiins-rest", "/api/v1/miner/stats", name)
    # {"gigahash_per_second": 141463.56540072063} × 10^9 = 141,463,565,400,720.63 -> ...721
    assert s.hashrate.five_sec_hs == 141_463_565_400_721
    assert s.hashrate.one_min_hs == 144_009_075_694_463  # 144009.07569446342 GH/s
    assert s.hashrate.fifteen_min_hs == 142_751_901_250_959  # 142751.90125095937
    assert s.hashrate.average_hs == 138_207_052_945_347  # since_restart 138207.05294534727
    assert s.hashrate.nominal_hs == 142_876_598_290_866  # nominal 142876.598290866
    assert (s.power_w, s.power_source) == (3137, PowerSource.REPORTED)  # {"watt": 3137}


def test_braiins_rest_unknown_unit_is_an_error():
    raw = b'{"miner_stats":{"real_hashrate":{"last_5s":{"furlong_per_second":1}}}}'
    with pytest.raises(ReplyError, match="unknown hashrate unit 'furlong_per_second'"):
        read(BACKENDS["braiins-rest"], {"/api/v1/miner/stats": raw})


def test_braiins_rest_errors_categorised(snapshot):
    s = snapshot(
        "braiins-rest", "/api/v1/miner/errors", "braiins-os-26.04-s21pro-rest-miner-errors.json"
    )
    assert len(s.errors) == 129
    sensors = [e for e in s.errors if e.category is ErrorCategory.SENSOR]
    assert {e.sensor for e in sensors} == {
        "hb1.1", "hb1.4", "hb1.8", "hb2.1", "hb2.4", "hb2.8", "hb3.1", "hb3.4", "hb3.8",
    }  # fmt: skip
    assert {e.board for e in sensors} == {1, 2, 3}
    power = [e for e in s.errors if e.category is ErrorCategory.POWER]
    assert [e.code for e in power] == ["V2", "V2"]  # overcurrent / short circuit
    boards = [e for e in s.errors if e.category is ErrorCategory.HASHBOARD]
    assert {(e.code, e.board) for e in boards} == {("H1", 1), (None, 1)}
    assert s.errors[0].at == "2026-03-20T21:27:28.454727Z"


def test_bitaxe_system_info(snapshot):
    s = snapshot("axeos", "/api/system/info", "bitaxe-supra-axeos-system-info.json")
    assert s.model == "Bitaxe Supra (BM1368)"  # ASICModel BM1368
    assert s.firmware == "v2.4.5-3-gb5d1e36-dirty"
    assert s.hashrate.five_sec_hs == 0  # captured 4 s after boot
    assert s.uptime_s == 4
    assert (s.power_w, s.power_source) == (2.65000009536743, PowerSource.REPORTED)
    assert s.fans == (Fan(0, 3517),)
    assert s.boards[0].chip_temps_c == (27,)  # temp; vrTemp 0 is not a reading
    assert [(p.url, p.active) for p in s.pools] == [
        ("stratum+tcp://btc.example.pool:3333", True),
        ("stratum+tcp://btc2.example.pool:3333", False),
    ]
    # sharesAccepted/sharesRejected count the running session: the live pool's verdicts
    assert [(p.accepted, p.rejected) for p in s.pools] == [(0, 0), (None, None)]


def test_bitaxe_best_difficulty_string_or_number(capture):
    import json

    info = json.loads(capture("bitaxe-supra-axeos-system-info.json"))
    assert best_difficulty(info) == 483_000  # "483k"
    assert best_difficulty({"bestDiff": 483000}) == 483_000  # ESP-Miner PR #1202: a number
    with pytest.raises(ReplyError, match="bestDiff: unknown suffix"):
        best_difficulty({"bestDiff": "12q"})
