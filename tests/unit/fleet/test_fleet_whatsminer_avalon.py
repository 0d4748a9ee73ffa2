"""Whatsminer (btminer, API v3) and Avalon captures parsed to the model, numbers by hand."""

from __future__ import annotations

import pytest

from hashfarm.fleet.errors import ReplyError
from hashfarm.fleet.model import Fan, MinerState, PowerSource
from hashfarm.fleet.sources.avalon import parse_blob

MH, GH = 10**6, 10**9


def test_whatsminer_summary_mhs_and_factory_ghs(snapshot):
    s = snapshot("btminer", "summary", "whatsminer-btminer-summary.json")
    # "MHS 5s": 70668114.52 MH/s -> × 10^6 = 70,668,114,520,000 H/s (70.7 TH/s)
    assert s.hashrate.five_sec_hs == 70_668_114_520_000
    assert s.hashrate.one_min_hs == 67_439_352_490_000  # MHS 1m 67439352.49
    assert s.hashrate.fifteen_min_hs == 67_681_620_180_000  # MHS 15m 67681620.18
    assert s.hashrate.average_hs == 67_753_251_190_000  # MHS av 67753251.19
    # "Factory GHS": 68796 is GH/s, not MH/s: × 10^9 = 68,796,000,000,000 H/s (68.8 TH/s)
    assert s.hashrate.nominal_hs == 68_796 * GH
    assert (s.power_w, s.power_source) == (3417, PowerSource.REPORTED)  # "Power": 3417 W
    assert s.firmware == "20210322.22.REL"  # sent as "'20210322.22.REL'"
    assert s.fans == (Fan(0, 6450), Fan(1, 6480))  # Fan Speed In / Out
    assert s.chip_temps_c == (92.5,)  # Chip Temp Max
    assert s.board_temps_c == (71.5,)  # Temperature
    assert s.uptime_s == 10154  # Elapsed (the miner process), not the system's Uptime 10792


def test_whatsminer_devs_boards(snapshot):
    s = snapshot("btminer", "devs", "whatsminer-btminer-devs.json")
    assert [b.slot for b in s.boards] == [0, 1, 2]
    b0 = s.boards[0]
    assert b0.hashrate.five_sec_hs == 20_053_438_740_000  # MHS 5s 20053438.74
    assert b0.hashrate.one_min_hs == 22_103_789_840_000  # MHS 1m 22103789.84
    assert b0.hashrate.average_hs == 22_650_215_070_000  # MHS av 22650215.07
    assert b0.chips_working == 105  # Effective Chips
    assert b0.chip_temps_c == (71.0, 83.33, 90.0)  # Chip Temp Min / Avg / Max
    assert b0.board_temps_c == (70.0,)
    assert b0.serial == "H5M14S69129A17K10095"
    assert [b.hardware_errors for b in s.boards] == [15, 47, 7]


def test_whatsminer_get_version_native_envelope(snapshot):
    s = snapshot("btminer", "get_version", "whatsminer-btminer-get-version.json")
    assert (s.firmware, s.api_version) == ("20210322.22.REL", "whatsminer v1.4.0")


def test_whatsminer_m20s_summary_after_escape_repair(snapshot):
    s = snapshot("btminer", "summary", "whatsminer-m20s-btminer-summary.raw")
    assert s.repairs == ("summary: backslash-quote-escape",)
    assert s.firmware == "20200917.22.REL"
    assert s.hashrate.five_sec_hs == 64_143_777_950_000  # MHS 5s 64143777.95
    assert s.hashrate.nominal_hs == 67_051 * GH  # Factory GHS 67051
    assert s.power_w == 3491


def test_whatsminer_m20s_stats_boards(snapshot):
    s = snapshot("btminer", "stats", "whatsminer-m20s-btminer-stats.json")
    assert [(b.slot, b.chips_expected, b.chip_temps_c) for b in s.boards] == [
        (0, 105, (75.0,)),
        (1, 105, (73.0,)),
        (2, 105, (72.5,)),
    ]  # SM0-SM2 chip_num / temp_now_max; the POOL0/POOL1 rows are not boards


def test_whatsminer_v3_device_info_strings(snapshot):
    s = snapshot("btminer-v3", "get.device.info", "whatsminer-m60s-btminer-v3-get-device-info.json")
    assert (s.model, s.firmware, s.api_version) == ("M60S_VK40", "20251209.16.Rel2", "3.0.2")
    assert s.state is MinerState.MINING  # "working": "true"
    assert [b.serial for b in s.boards] == [
        "BKM3CSE1404807K42757",
        "BKM3CSE1404812K43675",
        "BKM3CSE1404807K42762",
    ]  # "board-num": "3" (a string)
    assert s.hashrate.live_hs is None  # detect-hash-rate has no documented unit: not read


def test_blob_parser_bracket_matching():
    items = parse_blob(
        "'STATS':{Ver[Q-1] SYSTEMSTATU[Work: In Idle, Hash Board: 1] MGHS[1.5 2.5] "
        "ATAOPTS0[--freq 1:2 --v 3 ] Nonce Mask[25]}"
    )
    assert items == {
        "Ver": "Q-1",
        "SYSTEMSTATU": "Work: In Idle, Hash Board: 1",
        "MGHS": "1.5 2.5",
        "ATAOPTS0": "--freq 1:2 --v 3",
        "Nonce Mask": "25",
    }
    with pytest.raises(ReplyError, match="unclosed"):
        parse_blob("Ver[1 Fan1[2")


def test_avalon_1246_stats(snapshot):
    s = snapshot("avalon", "stats", "avalon-1246-cgminer-stats.json", model="AvalonMiner 1246")
    assert s.state is MinerState.MINING  # SYSTEMSTATU[Work: In Work, Hash Board: 3 ]
    assert s.hashrate.five_sec_hs == 81_072_680_000_000  # GHSspd[81072.68] GH/s
    assert s.hashrate.average_hs == 79_656_630_000_000  # GHSavg[79656.63]
    assert s.hashrate.nominal_hs == 83_923_040_000_000  # GHSmm[83923.04]
    # MGHS[26907.01 26025.06 26724.56] sums to GHSavg: per-board averages, not current
    assert [b.hashrate.average_hs for b in s.boards] == [
        26_907_010_000_000,
        26_025_060_000_000,
        26_724_560_000_000,
    ]
    assert sum(b.hashrate.average_hs or 0 for b in s.boards) == s.hashrate.average_hs
    assert all(b.hashrate.live_hs is None for b in s.boards)
    assert [b.chip_temps_c for b in s.boards] == [(77,), (77,), (76,)]  # MTmax
    assert [f.rpm for f in s.fans] == [5344, 5392, 5349, 5309]  # Fan1..Fan4
    assert s.power_w == 3504  # PS[0 1214 1316 242 3189 1320 3504]: PS[6]
    assert s.uptime_s == 24684
    assert s.hardware_errors == 2735


def test_avalon_1566_estats_wallpower(snapshot):
    s = snapshot("avalon", "estats", "avalon-1566-cgminer-estats.json", model="Avalon A1566")
    assert s.hashrate.five_sec_hs == 199_241_070_000_000  # GHSspd[199241.07]
    assert s.hashrate.nominal_hs == 201_920_420_000_000  # GHSmm[201920.42]
    assert [b.hashrate.average_hs for b in s.boards] == [
        59_459_520_000_000,
        61_407_830_000_000,
        63_139_660_000_000,
    ]
    assert (s.power_w, s.power_source) == (3731, PowerSource.REPORTED)  # WALLPOWER[3731]
    assert [b.chip_temps_c for b in s.boards] == [(77,), (78,), (77,)]
    assert s.fans == (Fan(1, 4275), Fan(2, 4282))


def test_avalon_1566_devs_sentinel_temperature(snapshot):
    s = snapshot("avalon", "devs", "avalon-1566-cgminer-devs.json", model="Avalon A1566")
    assert s.board_temps_c == ()  # -273.0 is cgminer's "no reading"
    assert s.bad_sensors == ("Temperature=-273",)
    assert s.hashrate.five_sec_hs is None  # there is MHS 30s, and it has no slot
    assert s.hashrate.one_min_hs == 197_266_944_160_000  # MHS 1m 197266944.16
    assert s.hashrate.fifteen_min_hs == 124_648_835_180_000  # MHS 15m 124648835.18
    assert s.hashrate.average_hs == 192_796_247_360_000  # MHS av 192796247.36


def test_avalon_q_idle(snapshot):
    s = snapshot("avalon", "stats", "avalon-q-cgminer-stats-idle.json", model="Avalon Q")
    assert s.state is MinerState.IDLE  # SYSTEMSTATU[Work: In Idle, Hash Board: 1]
    assert s.hashrate.five_sec_hs == 0  # GHSspd[0.00]
    assert s.hashrate.average_hs == 44_499_410_000_000  # GHSavg[44499.41], kept apart
    assert s.firmware == "Q-25052801_14a19a2"  # the blob sits inside 'STATS':{...}
    assert [f.rpm for f in s.fans] == [0, 0, 0, 0]


def test_avalon_10xx_multi_command(snapshot):
    s = snapshot("avalon", "pools+summary+stats", "avalon-10xx-cgminer-pools+summary+stats.raw")
    assert s.repairs == ("pools+summary+stats: bare-nan-or-inf",)
    # stats comes first in the avalon map: GHSavg[25174.76]; the summary's `nan` MHS av is
    # None (test_fleet_repair), never 0
    assert s.hashrate.average_hs == 25_174_760_000_000
    assert s.hashrate.one_min_hs == 0  # summary MHS 1m: 0
    assert s.hashrate.nominal_hs == 37_470_980_000_000  # GHSmm[37470.98]
    assert s.power_w is None  # PS[0 0 0 0 0 0], POW_I2C[FAILED]: no reading
    assert [p.url for p in s.pools if p.active] == ["stratum+tcp://sha256.mining-dutch.nl:9996"]
    assert len(s.boards) == 2
    assert [b.chip_temps_c for b in s.boards] == [(61,), (64,)]
