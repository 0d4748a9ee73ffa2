"""Simulated machines over real sockets on loopback, read by the project's own transports
(`cgminer_request`, `poll_cgminer`, `http_get`) and parsers: the numbers are the simulated
state's, injected faults come back as exactly their fault kinds, a hung API or garbage is a
clear error that stops no other machine, and hostile clients do not hurt a machine."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from hashfarm.errors import ConfigError
from hashfarm.fleet import derive_faults, enrich
from hashfarm.fleet.errors import CommandError, MachineUnreachable, ReplyError
from hashfarm.fleet.model import MachineSnapshot
from hashfarm.fleet.simulate import (
    MAX_CONNECTIONS,
    PROFILES,
    ScriptStep,
    SimFault,
    SimulatedFarm,
    SimulatedMachine,
    farm_addresses,
    parse_fault_script,
)
from hashfarm.fleet.sources import BACKENDS, read
from hashfarm.fleet.sources.transport import cgminer_request, http_get, poll_cgminer


def random_base() -> str:
    """A /24 of loopback of its own, so parallel runs never share an address."""
    return f"127.{random.randint(2, 250)}.{random.randint(0, 255)}.1"


@pytest.fixture
async def farm() -> AsyncIterator[SimulatedFarm]:
    """One machine per profile, ephemeral ports."""
    async with SimulatedFarm(
        len(PROFILES), base_address=random_base(), cgminer_port=0, http_port=0
    ) as started:
        yield started


async def poll(machine: SimulatedMachine, timeout_s: float = 2.0) -> MachineSnapshot:
    """What a poller does: every command of the machine's backend, parsed and enriched."""
    p = machine.profile
    backend = BACKENDS[p.backend]
    if p.transport == "http":
        async with aiohttp.ClientSession() as session:
            base = f"http://{machine.address}:{machine.port}"
            replies = {c: await http_get(session, base, c, timeout_s=timeout_s) for c in p.commands}
        return enrich(read(backend, replies, model=p.model))
    snap = await poll_cgminer(
        backend, machine.address, p.commands, port=machine.port, model=p.model, timeout_s=timeout_s
    )
    return enrich(snap)


async def test_every_profile_answers_over_its_socket_with_its_state(farm: SimulatedFarm) -> None:
    assert [m.profile.name for m in farm.machines] == list(PROFILES)
    for machine in farm.machines:
        snap = await poll(machine)
        reading = machine.reading()
        assert snap.hashrate.live_hs == reading.five_sec_hs, machine.profile.name
        assert snap.model == machine.profile.model
        assert abs((snap.uptime_s or 0) - reading.uptime_s) <= 2
        assert derive_faults(snap) == (), machine.profile.name
        assert machine.requests == len(machine.profile.commands)
    assert farm.machine_at(farm.machines[3].address) is farm.machines[3]
    assert farm.machine_at("127.0.0.9") is None


async def test_injected_faults_come_back_as_their_fault_kinds(farm: SimulatedFarm) -> None:
    faults = [
        SimFault.BOARD_DROP,
        SimFault.FAN_STOP,
        SimFault.OVERHEAT,
        SimFault.POOL_DOWN,
        SimFault.API_HANG,
        SimFault.API_GARBAGE,
        SimFault.FAN_STOP,
    ]
    for machine, fault in zip(farm.machines, faults, strict=True):
        machine.inject(fault)
    started = time.monotonic()
    results = await asyncio.gather(
        *(poll(m, timeout_s=0.5) for m in farm.machines), return_exceptions=True
    )
    assert time.monotonic() - started < 3  # the hung machine held only its own poll
    for machine, result in zip(farm.machines, results, strict=True):
        error = machine.expected_error()
        if error is not None:
            assert isinstance(result, error), (machine.profile.name, result)
            continue
        assert isinstance(result, MachineSnapshot), (machine.profile.name, result)
        kinds = {f.kind for f in derive_faults(result)}
        assert kinds == machine.expected_faults(), machine.profile.name
        assert kinds
    hung, garbage = farm.machines[4], farm.machines[5]
    with pytest.raises(MachineUnreachable, match=rf"{hung.address}:\d+ summary: no complete"):
        await cgminer_request(hung.address, "summary", port=hung.port, timeout_s=0.2)
    with pytest.raises(ReplyError, match="not JSON"):
        await poll(garbage)
    for machine in farm.machines:
        machine.clear()
    for machine in farm.machines:
        assert derive_faults(await poll(machine)) == (), machine.profile.name


async def test_machines_sit_on_the_real_ports_of_their_addresses() -> None:
    base = random_base()
    async with SimulatedFarm(3, models=["antminer-s19pro"], base_address=base) as farm:
        for machine in farm.machines:
            assert machine.port == 4028
            reply = await cgminer_request(machine.address, "version")  # the default port
            assert b'"Type":"Antminer S19 Pro"' in reply
            assert reply.endswith(b"\x00")
        with pytest.raises(ConfigError, match=rf"cannot listen on {base}:4028"):
            async with SimulatedFarm(1, base_address=base):
                pass
        assert (await poll(farm.machines[0])).hashrate.live_hs


def test_addresses_skip_network_and_broadcast_and_stay_on_loopback() -> None:
    assert farm_addresses("127.0.1.254", 3) == ["127.0.1.254", "127.0.2.1", "127.0.2.2"]
    assert len(set(farm_addresses("127.0.1.1", 5000))) == 5000
    with pytest.raises(ConfigError, match=r"leave 127\.0\.0\.0/8"):
        farm_addresses("127.255.255.250", 10)
    with pytest.raises(ConfigError, match="not an IPv4 address"):
        farm_addresses("localhost", 1)
    with pytest.raises(ConfigError, match="unknown s21; known: antminer-s19pro"):
        SimulatedFarm(1, models=["s21"])


def test_fault_script_lines() -> None:
    steps = parse_fault_script(
        """
        # seconds machine fault
        30 * pool_down
        0 3 fan_stop slot=2
        10 127.0.1.5 board_drop
        60 3 clear fan_stop
        90 * clear
        """
    )
    assert steps == [
        ScriptStep(0.0, "3", SimFault.FAN_STOP, slot=2),
        ScriptStep(10.0, "127.0.1.5", SimFault.BOARD_DROP),
        ScriptStep(30.0, "*", SimFault.POOL_DOWN),
        ScriptStep(60.0, "3", SimFault.FAN_STOP, clear=True),
        ScriptStep(90.0, "*", None, clear=True),
    ]
    with pytest.raises(ConfigError, match=r"fault script line 2: .*'fan_melts'"):
        parse_fault_script("0 1 fan_stop\n5 1 fan_melts\n")
    with pytest.raises(ConfigError, match="line 1: unknown option 'board=2'"):
        parse_fault_script("0 1 fan_stop board=2")
    with pytest.raises(ConfigError, match="line 1: expected AT MACHINE FAULT"):
        parse_fault_script("10 pool_down")


async def test_fault_script_plays_at_its_times(farm: SimulatedFarm) -> None:
    steps = parse_fault_script("0 0 fan_stop\n0.2 * overheat\n0.4 0 clear\n")
    played: list[tuple[float, ScriptStep]] = []
    begin = time.monotonic()
    task = asyncio.create_task(
        farm.run_script(steps, lambda s: played.append((time.monotonic() - begin, s)))
    )
    await asyncio.sleep(0.1)
    first = farm.machines[0]
    assert set(first.state.faults) == {SimFault.FAN_STOP}
    await task
    assert [round(t, 1) for t, _ in played] == [0.0, 0.2, 0.4]
    assert first.state.faults == {}
    assert all(SimFault.OVERHEAT in m.state.faults for m in farm.machines[1:])
    with pytest.raises(ConfigError, match=r"no machine '127\.0\.0\.2'"):
        farm.apply(ScriptStep(0, "127.0.0.2", SimFault.OVERHEAT))


async def test_hostile_clients_cost_one_connection_each(farm: SimulatedFarm) -> None:
    s19, axe = farm.machines[0], farm.machines[-1]
    # connect and close at once; junk; a command that does not exist; an oversized request
    _, writer = await asyncio.open_connection(s19.address, s19.port)
    writer.close()
    for junk in (b"\xff\xfe not json", b'{"command": 5}', b"x" * 200_000):
        reader, writer = await asyncio.open_connection(s19.address, s19.port)
        writer.write(junk)
        await writer.drain()
        try:
            reply = await reader.read()
        except ConnectionResetError:  # answered and closed with our junk unread: a reset
            reply = b""
        writer.close()
        assert reply == b"" or b'"Msg":"Invalid command"' in reply
    reply = await cgminer_request(s19.address, "estats", port=s19.port)
    with pytest.raises(CommandError, match="Invalid command"):
        read(BACKENDS["bmminer"], {"stats": reply})
    async with aiohttp.ClientSession() as session:
        with pytest.raises(CommandError, match="404"):
            await http_get(session, f"http://{axe.address}:{axe.port}", "/api/nothing")
    assert derive_faults(await poll(s19)) == ()  # still answers
    assert derive_faults(await poll(axe)) == ()


async def test_a_thousand_machines_api_only_are_cheap() -> None:
    began = time.process_time()
    async with SimulatedFarm(1000, base_address=random_base(), cgminer_port=0, http_port=0) as farm:
        cpu_start = time.process_time() - began
        sample = random.Random(7).sample(farm.machines, 20)
        snaps = await asyncio.gather(*(poll(m) for m in sample))
    assert all(derive_faults(s) == () for s in snaps)
    assert cpu_start < 10  # generous: about 0.1-0.2 ms of CPU per machine measured


async def test_a_hung_api_lets_go_when_the_client_gives_up_and_connections_are_capped(
    farm: SimulatedFarm,
) -> None:
    machine = farm.machines[0]
    machine.inject(SimFault.API_HANG)
    for _ in range(3):
        with pytest.raises(MachineUnreachable):
            await cgminer_request(machine.address, "summary", port=machine.port, timeout_s=0.1)
    await asyncio.sleep(0.05)
    assert machine.open_connections == 0  # each hung request ended when the poller closed
    held = [await asyncio.open_connection(machine.address, machine.port) for _ in range(70)]
    await asyncio.sleep(0.1)
    assert machine.open_connections == MAX_CONNECTIONS
    refused = 0
    for reader, _ in held[MAX_CONNECTIONS:]:
        refused += await asyncio.wait_for(reader.read(), 1) == b""  # closed at once
    assert refused == 70 - MAX_CONNECTIONS
    for _, writer in held:
        writer.close()
    await asyncio.sleep(0.05)
    assert machine.open_connections == 0
    machine.clear()
    assert derive_faults(await poll(machine)) == ()


async def test_http_machine_faults_come_back_as_the_same_errors(farm: SimulatedFarm) -> None:
    axe = farm.machines[-1]
    assert axe.profile.transport == "http"
    axe.inject(SimFault.API_GARBAGE)
    with pytest.raises(ReplyError, match="not JSON"):
        await poll(axe)
    axe.clear()
    axe.inject(SimFault.API_HANG)
    with pytest.raises(MachineUnreachable, match="no complete reply"):
        await poll(axe, timeout_s=0.2)
    axe.clear()
    assert derive_faults(await poll(axe)) == ()
