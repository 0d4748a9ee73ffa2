"""The poller against replay machines on loopback (the captured bytes over real sockets):
samples with faults, a hung and a garbage API next to healthy machines, commands limited to
what each backend has, and the period kept on an injected clock."""

from __future__ import annotations

import logging

import pytest

from fleet_replay import ReplayFarm, bitaxe, capture, luxos, s19pro
from hashfarm.errors import ConfigError
from hashfarm.fleet.faults import FaultKind
from hashfarm.fleet.poller import (
    Machine,
    Poller,
    PollSettings,
    Round,
    Sample,
    commands_for,
    machine_of,
)
from hashfarm.fleet.scan import Found
from hashfarm.fleet.sources import BACKENDS


def test_commands_respect_capabilities() -> None:
    assert commands_for(BACKENDS["bmminer"]) == ("stats", "summary", "pools")
    # bmminer has no `estats`, `events` or multi-command: they are dropped, never sent
    wanted = ("stats", "estats", "events", "summary+pools")
    assert commands_for(BACKENDS["bmminer"], wanted) == ("stats",)
    assert commands_for(BACKENDS["avalon"], ("summary+pools",)) == ("summary+pools",)
    assert commands_for(BACKENDS["axeos"]) == ("/api/system/info",)


def test_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"fleet\.poll\.timeout_s"):
        PollSettings(interval_s=10, timeout_s=20)
    with pytest.raises(ConfigError, match="unknown backend 'cgminer-x'"):
        Machine("10.0.0.1", 4028, "cgminer-x")


async def test_round_samples_faults_and_errors_without_delaying_the_healthy() -> None:
    async with ReplayFarm() as farm:
        port = farm.cgminer_port
        good = await farm.add(1, "cgminer", s19pro())
        await farm.add(2, "cgminer", luxos())
        await farm.add(3, "cgminer", {}, behaviour="hang")
        await farm.add(4, "cgminer", s19pro(), behaviour="garbage")
        await farm.add(5, "http", bitaxe())
        machines = [
            machine_of(Found(f"{farm.prefix}.1", port, "bmminer", "Antminer S19 Pro", None)),
            Machine(f"{farm.prefix}.2", port, "luxos", commands=("stats", "pools", "events")),
            Machine(f"{farm.prefix}.3", port, "bmminer"),
            Machine(f"{farm.prefix}.4", port, "bmminer"),
            Machine(f"{farm.prefix}.5", farm.http_port, "axeos"),
        ]
        rounds: list[Round] = []

        async def keep(r: Round) -> None:
            rounds.append(r)

        poller = Poller(machines, PollSettings(timeout_s=0.5), sinks=[keep], clock=lambda: 1e9)
        result = await poller.poll_round()
        await poller.close()

    assert rounds == [result]
    s = {x.machine.host.rsplit(".", 1)[1]: x for x in result.samples}
    assert result.at == 1e9
    assert all(x.at == 1e9 for x in result.samples)
    assert good.requests == ["stats", "summary", "pools"]
    assert s["1"].ok
    assert s["1"].faults == ()
    assert s["1"].snapshot is not None
    assert s["1"].snapshot.hashrate.five_sec_hs == 110_566_890_000_000
    assert s["1"].snapshot.boards_expected == 3  # enriched
    # LuxOS: `events` is a LuxOS command, but this replay lacks it: cgminer's Invalid command
    assert s["2"].error is not None
    assert "command_error" in s["2"].error
    assert "[14] Invalid command" in s["2"].error
    assert s["3"].error is not None
    assert s["3"].error.startswith(f"unreachable: {farm.prefix}.3:{port}")
    assert "no complete" in s["3"].error
    assert s["4"].error is not None
    assert s["4"].error.startswith("bad_reply: ")
    assert "stats: not JSON" in s["4"].error
    assert s["5"].ok
    assert s["5"].snapshot is not None
    assert s["5"].snapshot.model == "Bitaxe Supra (BM1368)"
    assert result.errors == 3
    # the healthy machines' samples were not held back by the hung one
    assert s["1"].latency_s < s["3"].latency_s
    assert s["5"].latency_s < s["3"].latency_s


async def test_fault_capture_raises_its_fault_over_the_wire() -> None:
    async with ReplayFarm() as farm:
        replies = luxos()
        del replies["stats"]  # pools only: the dead pools are the point
        await farm.add(1, "cgminer", replies)
        hot = s19pro() | {"stats": capture("antminer-s19pro-bmminer-stats-overheating.json")}
        await farm.add(2, "cgminer", hot)
        machines = [Machine(f"{farm.prefix}.1", farm.cgminer_port, "luxos", commands=("pools",)),
                    Machine(f"{farm.prefix}.2", farm.cgminer_port, "bmminer")]  # fmt: skip
        poller = Poller(machines, PollSettings(timeout_s=2))
        result = await poller.poll_round()
        await poller.close()
    kinds = [{f.kind for f in x.faults} for x in result.samples]
    by_host = dict(zip([x.machine.host for x in result.samples], kinds, strict=True))
    assert by_host[f"{farm.prefix}.1"] == {FaultKind.DEAD_POOL}
    assert FaultKind.OVERHEATING in by_host[f"{farm.prefix}.2"]


async def test_run_keeps_the_period_on_an_injected_clock(caplog) -> None:
    now = [1000.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    seen: list[float] = []

    async def slow_sink(r: Round) -> None:
        seen.append(r.at)
        now[0] += 70 if len(seen) == 2 else 1  # the second round overruns two periods

    async def broken_sink(r: Round) -> None:
        raise RuntimeError("disk full")

    poller = Poller([], PollSettings(interval_s=30, timeout_s=5), sinks=[slow_sink, broken_sink],
                    clock=lambda: now[0], sleep=sleep)  # fmt: skip
    with caplog.at_level(logging.ERROR, "hashfarm.fleet.poller"):
        await poller.run(rounds=4)
    assert seen == [1000.0, 1030.0, 1120.0, 1150.0]  # 1060 and 1090 were skipped, not bunched
    assert slept == [29.0, 20.0, 29.0]
    assert caplog.text.count("a sink failed") == 4  # logged each time, polling went on


async def test_an_unreachable_machine_is_retried_with_backoff() -> None:
    async with ReplayFarm() as farm:
        hung = await farm.add(1, "cgminer", s19pro(), behaviour="hang")
        good = await farm.add(2, "cgminer", s19pro())
        machines = [Machine(f"{farm.prefix}.{i}", farm.cgminer_port, "bmminer") for i in (1, 2)]
        poller = Poller(machines, PollSettings(timeout_s=0.2, backoff_rounds_max=4))
        rounds = [await poller.poll_round() for _ in range(8)]
        # asked in rounds 0, 1, 3, 7 (1, 2, 4 rounds apart), skipped in between
        assert len(hung.requests) == 4
        assert len(good.requests) == 8 * 3  # the healthy machine: every round, 3 commands
        hung_id = machines[0].id

        def of_hung(r: Round) -> Sample:
            return next(x for x in r.samples if x.machine.id == hung_id)

        skipped = of_hung(rounds[5])
        assert skipped.error is not None
        assert skipped.error.startswith(f"unreachable: {farm.prefix}.1:{farm.cgminer_port}")
        assert skipped.error.endswith("(no answer 3 times in a row: next try in 2 round(s))")
        assert skipped.latency_s == 0.0
        hung.behaviour = "reply"  # it comes back: seen at the next try (capped at 4 rounds)
        rounds = [await poller.poll_round() for _ in range(4)]
        await poller.close()
    assert [of_hung(r).ok for r in rounds] == [False, False, False, True]
    assert of_hung(rounds[3]).snapshot is not None
