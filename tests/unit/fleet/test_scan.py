"""The scanner: `identify` on every capture that names its firmware, and real scans of a
loopback range where replay machines answer with the captured bytes, next to a hung API, a
garbage API and addresses where nothing listens."""

from __future__ import annotations

import json
import time

import pytest

from fleet_replay import ReplayFarm, avalon1246, bitaxe, capture, luxos, s19pro, whatsminer
from hashfarm.errors import ConfigError
from hashfarm.fleet.scan import ScanSettings, hosts_of, identify, scan
from hashfarm.fleet.sources.repair import decode_reply


@pytest.mark.parametrize(
    ("name", "command", "backend"),
    [
        ("antminer-s19pro-bmminer-version.json", "version", "bmminer"),
        ("antminer-s19pro-bmminer-stats.json", "stats", "bmminer"),
        ("antminer-s9-hiveon-bmminer-stats.raw", "stats", "bmminer"),
        ("antminer-l3plus-cgminer-stats.raw", "stats", "bmminer"),  # CGMiner + Type Antminer
        ("luxos-s19kpro-stats.json", "stats", "luxos"),
        ("avalon-1246-cgminer-stats.json", "stats", "avalon"),
        ("avalon-q-cgminer-stats-idle.json", "stats", "avalon"),
        ("avalon-1566-cgminer-estats.json", "stats", "avalon"),
        ("whatsminer-btminer-get-version.json", "get_version", "btminer"),
        ("whatsminer-btminer-summary.json", "summary", "btminer"),
        ("whatsminer-m20s-btminer-stats.json", "stats", "btminer"),
        ("whatsminer-m60s-btminer-v3-get-device-info.json", "get.device.info", "btminer-v3"),
        ("antminer-s9-braiins-os-plus-summary.json", "summary", "bosminer"),
        ("bitaxe-supra-axeos-system-info.json", "/api/system/info", "axeos"),
        ("braiins-os-25.07-s19xp-rest-miner-stats.json", "/api/v1/miner/stats", "braiins-rest"),
    ],
)
def test_identify_each_capture(name: str, command: str, backend: str) -> None:
    data = decode_reply(capture(name), command=command).data
    assert identify(command, data) == backend


def test_identify_does_not_guess() -> None:
    # A summary with no firmware marker (stock cgminer) and an error status name nothing.
    assert identify("summary", json.loads(capture("antminer-s19pro-bmminer-summary.json"))) is None
    assert identify("version", {"STATUS": [{"STATUS": "E", "Code": 14}]}) is None


def test_hosts_of() -> None:
    assert len(hosts_of("10.0.0.0/20")) == 4094
    assert hosts_of("10.0.0.7") == ["10.0.0.7"]
    with pytest.raises(ConfigError, match="not an address range"):
        hosts_of("10.0.0.0/33")
    with pytest.raises(ConfigError, match="at most 65536"):
        hosts_of("10.0.0.0/8")


async def test_scan_finds_each_kind_and_names_each_failure() -> None:
    async with ReplayFarm() as farm:
        await farm.add(1, "cgminer", s19pro())
        await farm.add(2, "cgminer", avalon1246())  # no `version`: identified from `stats`
        await farm.add(3, "cgminer", whatsminer())  # btminer: `get_version`
        await farm.add(4, "cgminer", luxos())
        await farm.add(5, "http", bitaxe())
        await farm.add(6, "cgminer", {}, behaviour="garbage")
        hung = await farm.add(7, "cgminer", {}, behaviour="hang")
        await farm.add(8, "cgminer", {"summary": capture("antminer-s19pro-bmminer-summary.json")})
        await farm.add(9, "http", {"/api/system/info": b"<html>router login</html>"})
        await farm.add(10, "http", {}, behaviour="hang")
        stats = capture("braiins-os-25.07-s19xp-rest-miner-stats.json")
        await farm.add(11, "http", {"/api/v1/miner/stats": stats})  # AxeOS path: 404
        settings = ScanSettings(
            cgminer_port=farm.cgminer_port,
            http_port=farm.http_port,
            probe_timeout_s=0.5,
            host_timeout_s=3,
        )
        started = time.monotonic()
        result = await scan(f"{farm.prefix}.0/28", settings)
        took = time.monotonic() - started

    by_host = {f.host.rsplit(".", 1)[1]: f for f in result.found}
    assert sorted(by_host) == ["1", "11", "2", "3", "4", "5"]
    assert (by_host["11"].backend, by_host["11"].port) == ("braiins-rest", farm.http_port)
    assert (by_host["1"].backend, by_host["1"].model, by_host["1"].firmware) == (
        "bmminer", "Antminer S19 Pro", "49.0.1.3")  # fmt: skip
    assert by_host["1"].api_version == "3.1"
    assert (by_host["2"].backend, by_host["2"].model) == ("avalon", "Avalon 1246")
    assert by_host["2"].firmware == "1246-83-21072802_4ec6bb0_211fc46"
    assert (by_host["3"].backend, by_host["3"].firmware) == ("btminer", "20210322.22.REL")
    assert (by_host["4"].backend, by_host["4"].model) == ("luxos", "Antminer S19k Pro")
    assert by_host["5"].port == farm.http_port
    assert (by_host["5"].backend, by_host["5"].model) == ("axeos", "Bitaxe Supra (BM1368)")

    errors = {e.host.rsplit(".", 1)[1]: e.reason for e in result.errors}
    assert sorted(errors) == ["10", "6", "7", "8"]
    assert "/api/system/info: no complete reply within 0.5 s" in errors["10"]
    assert result.other == 1  # .9: a web page, not a miner: counted, not an error
    assert "version: not JSON" in errors["6"]
    assert "version: no complete reply within 0.5 s" in errors["7"]
    assert hung.requests == ["version"]  # a hung API is asked once, not four times
    assert "summary: no known firmware answers like this" in errors["8"]
    assert result.scanned == 14  # a /28 has 14 usable addresses
    assert result.dead == 14 - 11
    assert took < 3  # the hung host cost its probe timeout, not the host limit


async def test_scan_deadline_reports_unfinished_hosts() -> None:
    async with ReplayFarm() as farm:
        for i in range(1, 5):
            await farm.add(i, "cgminer", {}, behaviour="hang")
        settings = ScanSettings(cgminer_port=farm.cgminer_port, http_port=0, concurrency=2,
                                probe_timeout_s=5, total_timeout_s=0.5)  # fmt: skip
        result = await scan(f"{farm.prefix}.0/29", settings)
    assert [e.reason for e in result.errors] == ["scan deadline of 0.5 s reached"] * 2
    assert result.scanned == 2
    assert result.not_reached == 4  # .3 .4 .5 .6 were never taken
    assert result.found == ()
