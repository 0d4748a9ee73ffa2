"""Antminer captures (stock bmminer, Hiveon, cgminer L3+, LuxOS) parsed to the model, each
number checked by hand against the file; the unit conversion is written out where it happens."""

from __future__ import annotations

import pytest

from hashfarm.fleet.errors import CommandError, ReplyError
from hashfarm.fleet.model import ErrorCategory, Fan, MinerState
from hashfarm.fleet.sources import BACKENDS, read

GH = 10**9


def test_s19pro_summary(snapshot):
    s = snapshot("bmminer", "summary", "antminer-s19pro-bmminer-summary.json")
    # "GHS 5s": 110566.89 GH/s -> 110,566.89e9 H/s; "GHS av": 111834.85
    assert s.hashrate.five_sec_hs == 110_566_890_000_000
    assert s.hashrate.average_hs == 111_834_850_000_000
    # "GHS 30m" has no slot in the model and must not land in 15 min
    assert s.hashrate.fifteen_min_hs is None
    assert s.hashrate.one_min_hs is None
    assert s.uptime_s == 50474
    assert s.hardware_errors == 562


def test_s19pro_stats_boards_temps_fans(snapshot):
    s = snapshot("bmminer", "stats", "antminer-s19pro-bmminer-stats.json")
    assert s.model == "Antminer S19 Pro"
    assert s.firmware == "49.0.1.3"
    assert s.state is MinerState.MINING
    assert s.hashrate.nominal_hs == 110_000 * GH  # total_rateideal 110000.0, rate_unit GH
    assert [b.slot for b in s.boards] == [1, 2, 3, 4]
    assert [b.present for b in s.boards] == [True, True, True, False]  # chain_acn4: 0
    one, two, three, empty = s.boards
    # chain_rate1 "37603.30" GH/s -> 37,603.30e9 H/s; stock bmminer's chains add up to GHS 5s
    assert one.hashrate.five_sec_hs == 37_603_300_000_000
    assert two.hashrate.five_sec_hs == 35_536_220_000_000
    assert three.hashrate.five_sec_hs == 37_427_380_000_000
    assert one.hashrate.average_hs is None
    assert one.chips_working == 114  # 38 groups of "ooo"
    assert one.chips_expected is None  # a hardware fact: hardware.enrich fills it
    assert one.chip_temps_c == (78, 50, 69, 70)  # temp_chip1 "78-50-69-70"
    assert one.board_temps_c == (73, 45, 64, 65)  # temp_pcb1 "73-45-64-65"
    assert (one.hardware_errors, two.hardware_errors, three.hardware_errors) == (183, 195, 184)
    assert empty.chip_temps_c == ()
    assert empty.hashrate.five_sec_hs is None
    assert s.fans == (Fan(1, 6000), Fan(2, 5880), Fan(3, 5040), Fan(4, 5040))
    assert s.fans_expected == 4  # fan_num
    assert s.chip_temp_max_c == 78
    assert s.power_w is None  # bmminer reports no power; enrich derives it
    assert s.repairs == ()


def test_s19pro_devs_placeholders_are_not_readings(snapshot):
    # BTM_SOC "MHS 5s": 0.0 and "Tenperature": 0.0 while the machine makes 110 TH/s
    s = snapshot("bmminer", "devs", "antminer-s19pro-bmminer-devs.json")
    assert s.hashrate.live_hs is None
    assert s.board_temps_c == ()
    assert s.chip_temps_c == ()
    assert s.uptime_s == 50474


def test_s19pro_pools_and_version(snapshot):
    s = snapshot("bmminer", "pools", "antminer-s19pro-bmminer-pools.json")
    assert [p.index for p in s.pools] == [0, 1, 2]
    assert all(p.alive for p in s.pools)
    assert [p.active for p in s.pools] == [True, False, False]  # "Stratum Active"
    assert s.live_pool is not None
    assert s.live_pool.url == "stratum+tcp://btc.global.luxor.tech:700"
    assert s.live_pool.user == "satokierepair.H04YK"
    assert (s.live_pool.accepted, s.live_pool.rejected) == (4057, 11)
    v = snapshot("bmminer", "version", "antminer-s19pro-bmminer-version.json")
    assert (v.model, v.firmware, v.api_version) == ("Antminer S19 Pro", "49.0.1.3", "3.1")


def test_s19pro_overheating_hashes_nothing_though_average_is_set(snapshot):
    s = snapshot("bmminer", "stats", "antminer-s19pro-bmminer-stats-overheating.json")
    assert s.state is MinerState.STOPPED  # every chip 'x', every chain "0.00"
    assert s.hashrate.five_sec_hs == 0
    assert s.hashrate.average_hs == 737_370_000_000  # GHS av 737.37: an average, kept apart
    assert [b.hashrate.five_sec_hs for b in s.present_boards] == [0, 0, 0]
    assert [b.chips_working for b in s.present_boards] == [0, 0, 0]
    assert s.chip_temp_max_c == 97  # temp_chip3 "80-66-97-87"
    assert s.board_temp_max_c == 92  # temp_pcb3 "75-61-92-82"


def test_s19_sleeping_with_a_board_missing(snapshot):
    s = snapshot("bmminer", "stats", "antminer-s19-bmminer-stats-sleeping.json")
    assert s.model == "Antminer S19"
    assert [b.slot for b in s.present_boards] == [2, 3]  # chain_acn1: 0, chain_rate1: ""
    assert s.state is MinerState.STOPPED
    assert s.hashrate.five_sec_hs == 0
    assert [f.rpm for f in s.fans] == [1560, 1560, 600, 720]


def test_s9_hiveon_invalid_json_string_numbers_and_slots_6_to_8(snapshot):
    s = snapshot("bmminer", "stats", "antminer-s9-hiveon-bmminer-stats.raw")
    assert s.repairs == ("stats: missing-comma-between-objects",)
    assert s.model == "Antminer S9"  # "Antminer S9 Hiveon": the firmware word is not the model
    # "GHS 5s": "11781.40" (a string) GH/s -> 11,781.40e9 H/s
    assert s.hashrate.five_sec_hs == 11_781_400_000_000
    assert s.hashrate.average_hs == 11_609_550_000_000
    assert s.hashrate.nominal_hs == 11_850_300_000_000  # total_rateideal 11850.30
    assert [b.slot for b in s.present_boards] == [6, 7, 8]
    b6 = s.present_boards[0]
    assert b6.hashrate.five_sec_hs == 3_911_640_000_000  # chain_rate6 "3911.64"
    assert b6.hashrate.nominal_hs == 3_950_100_000_000  # chain_rateideal6 3950.10
    assert b6.chips_working == 63
    assert (b6.board_temps_c, b6.chip_temps_c) == ((59,), (74,))  # temp6, temp2_6
    assert s.fans == (Fan(5, 3840), Fan(6, 4920))  # fan5/fan6 of 8 slots
    assert s.uptime_s == 69


def test_s9_bad_temperature_sensor_is_not_a_reading(snapshot):
    s = snapshot("bmminer", "stats", "antminer-s9-bmminer-stats-bad-temps.raw")
    assert s.model == "Antminer S9"  # "Antminer S9\nV1.3.58"
    b6, b7, b8 = s.present_boards
    assert b7.board_temps_c == ()
    assert b7.chip_temps_c == ()
    assert b7.bad_sensors == ("temp7=0", "temp2_7=-83")
    assert (b6.board_temps_c, b6.chip_temps_c) == ((75,), (62,))
    assert (b8.board_temps_c, b8.chip_temps_c) == ((73,), (62,))
    assert b8.hardware_errors == 175165
    assert s.hashrate.five_sec_hs == 13_883_810_000_000  # "13883.81"


def test_l3plus_ghs_keys_are_mhs(snapshot):
    s = snapshot("bmminer", "stats", "antminer-l3plus-cgminer-stats.raw")
    assert s.model == "Antminer L3+"
    # "GHS 5s": "504.56" is MH/s on the L3+: 504.56 × 10^6 = 504,560,000 H/s (Foreman's
    # expectation); read as GH/s it would be 504,560,000,000
    assert s.hashrate.five_sec_hs == 504_560_000
    assert s.hashrate.average_hs == 500_280_000  # "GHS av": 500.28 MH/s
    rates = [b.hashrate.five_sec_hs for b in s.present_boards]
    assert rates == [126_120_000, 125_790_000, 126_060_000, 126_590_000]
    assert sum(rates) == s.hashrate.five_sec_hs  # the chains add up to GHS 5s
    assert [b.hardware_errors for b in s.present_boards] == [0, 0, 153, 0]
    assert s.hashrate.nominal_hs is None  # no total_rateideal, and the catalog has no L3+


def test_luxos_chain_rates_are_the_average(snapshot):
    s = snapshot("luxos", "stats", "luxos-s19kpro-stats.json")
    assert s.model == "Antminer S19k Pro"
    assert s.hashrate.five_sec_hs == 59_756_060_000_000  # GHS 5s 59756.06
    assert s.hashrate.average_hs == 56_917_910_000_000  # GHS av 56917.91
    boards = s.present_boards
    # 18910.28 + 18939.95 + 19067.67 = 56917.90 GH/s: the chains add up to the average,
    # so on LuxOS they go to average_hs and the board's short window stays None
    assert [b.hashrate.average_hs for b in boards] == [
        18_910_280_000_000,
        18_939_950_000_000,
        19_067_670_000_000,
    ]
    assert all(b.hashrate.five_sec_hs is None for b in boards)
    assert [b.slot for b in s.boards if not b.present] == [4]  # chain_rate4 "0", acn 0
    # "total rate" 18972.63 is not the machine total and is not read
    assert s.hashrate.nominal_hs == 61_954_200_000_000  # total_rateideal 61954.2


def test_luxos_pools_split_across_groups_two_dead(snapshot):
    s = snapshot("luxos", "pools", "luxos-s19kpro-pools-dead.json")
    assert [(p.index, p.group, p.status) for p in s.pools] == [
        (0, 0, "Alive"),
        (1, 0, "Dead"),
        (2, 1, "Alive"),
        (3, 1, "Dead"),
    ]
    assert [p.active for p in s.pools] == [True, False, True, False]


def test_luxos_events(snapshot):
    s = snapshot("luxos", "events", "luxos-events-nopic-protection.json")
    nopic, reboot = s.errors
    assert (nopic.code, nopic.category, nopic.board) == (
        "NOPIC_PROTECTION",
        ErrorCategory.POWER,
        None,
    )
    assert nopic.message == "Miner shutdown due to NOPIC protection."
    assert (reboot.code, reboot.category, reboot.board) == (
        "REBOOT_NOT_HASHING",
        ErrorCategory.HASHBOARD,
        0,
    )


def test_access_denied_is_a_command_error():
    raw = (
        b'{"STATUS":[{"STATUS":"E","When":1,"Code":45,'
        b'"Msg":"Access denied to \'pools\' command","Description":"cgminer"}],"id":1}\x00'
    )
    with pytest.raises(CommandError, match=r"pools: .*\[45\] Access denied"):
        read(BACKENDS["bmminer"], {"pools": raw})


def test_wrong_shape_is_a_reply_error(capture):
    # a `summary` reply handed to the `stats` parser: named, not silently empty
    with pytest.raises(ReplyError, match="stats: no STATS list"):
        read(BACKENDS["bmminer"], {"stats": capture("antminer-s19pro-bmminer-summary.json")})


def test_a_string_that_is_not_a_number_is_an_error():
    raw = b'{"STATUS":[{"STATUS":"S"}],"SUMMARY":[{"GHS 5s":"fast","Elapsed":1}],"id":1}'
    with pytest.raises(ReplyError, match="GHS 5s: expected a number"):
        read(BACKENDS["bmminer"], {"summary": raw})
