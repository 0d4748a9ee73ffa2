"""Simulated machines mining for real through the project's pool on the regtest node.

Three machines (three firmwares), each hashing with hashfarm.miner's Stratum client capped
at a few H/s: the pool accepts their shares under each machine's own worker name, each
machine's `pools` reply counts the verdicts its miner really got, and its hashrate is what
it really hashed times its stated scale. Then the pool goes away for one machine: it says
so (dead pool), its Stratum session ends, and it mines again once the fault clears. Last
the real pool stops: every machine reports its pool dead.
"""

from __future__ import annotations

import asyncio
import random
import signal
import sys
from collections import Counter
from pathlib import Path

import pytest

from hashfarm.cli.fleet_sim import StratumHashSource, stratum_sources
from hashfarm.fleet import derive_faults, enrich
from hashfarm.fleet.faults import FaultKind
from hashfarm.fleet.model import MachineSnapshot
from hashfarm.fleet.simulate import SimFault, SimulatedFarm, SimulatedMachine
from hashfarm.fleet.sources import BACKENDS
from hashfarm.fleet.sources.transport import poll_cgminer
from hashfarm.miner.settings import PoolURL
from nodes import RegtestNode, bcoin_address
from unit.pool.harness import MINER_SCRIPTS, pool_settings, running_pool, wait_for

pytestmark = pytest.mark.node

HASHFARM = Path(sys.executable).parent / "hashfarm"
RATE_HS = 20.0  # real hashes per second per machine (on regtest ~every other hash is a share)


async def poll(machine: SimulatedMachine) -> MachineSnapshot:
    p = machine.profile
    snap = await poll_cgminer(
        BACKENDS[p.backend], machine.address, p.commands, port=machine.port, model=p.model
    )
    return enrich(snap)


def source(machine: SimulatedMachine) -> StratumHashSource:
    assert isinstance(machine.source, StratumHashSource)
    return machine.source


async def test_simulated_machines_mine_through_the_pool(
    regtest_node: RegtestNode, tmp_path: Path
) -> None:
    address = bcoin_address(MINER_SCRIPTS[5])
    settings = pool_settings(regtest_node.rpc_url, regtest_node.api_key, tmp_path)
    async with running_pool(settings, regtest_node.rpc()) as (pool, recorder):
        url = PoolURL("127.0.0.1", pool.stratum_port)
        farm = SimulatedFarm(
            3,
            models=["antminer-s19pro", "whatsminer-m20s", "avalon-1246"],
            base_address=f"127.{random.randint(2, 250)}.{random.randint(0, 255)}.1",
            cgminer_port=0,
            hash_sources=stratum_sources(url, RATE_HS),
            pool_url=str(url),
            pool_user=f"{address}.sim",
        )
        async with farm:
            machines = farm.machines
            assert [m.state.pool_user for m in machines] == [f"{address}.sim{i}" for i in range(3)]

            def accepted_by_pool(m: SimulatedMachine) -> int:
                return sum(
                    1 for s in recorder.shares if s.worker == m.state.pool_user and s.accepted
                )

            await wait_for(
                lambda: all(source(m).stats.accepted >= 5 for m in machines), 60, "5 shares each"
            )
            await wait_for(lambda: all(m.uptime_s >= 86_406 for m in machines), 10, "a 5 s window")
            for m in machines:
                before = source(m).stats.accepted
                snap = await poll(m)
                after = source(m).stats.accepted
                [pool_row] = snap.pools
                assert pool_row.alive
                assert pool_row.active
                assert pool_row.user == m.state.pool_user
                assert before <= (pool_row.accepted or 0) <= after  # the miner's real verdicts
                assert accepted_by_pool(m) >= before  # and the pool recorded each of them
                real = source(m).hashing().five_sec_hs
                assert m.scale == m.profile.nominal_hs / RATE_HS
                live = snap.hashrate.live_hs or 0
                # what it really hashed, scaled: near the cap over the last 5 s
                assert 0.5 * m.profile.nominal_hs < live < 1.3 * m.profile.nominal_hs, (live, real)
                assert derive_faults(snap) == ()
            assert source(machines[0]).stats.hardware_errors == 0

            # the pool goes away for machine 0: it reports it, and its session ends
            first = machines[0]
            first.inject(SimFault.POOL_DOWN)
            assert first.source is None
            snap = await poll(first)
            assert {f.kind for f in derive_faults(snap)} == first.expected_faults()
            assert FaultKind.DEAD_POOL in first.expected_faults()

            def workers() -> set[str]:
                return {w for session in pool.sessions() for w in session.workers}

            await wait_for(lambda: first.state.pool_user not in workers(), 10, "session closed")
            stalled = accepted_by_pool(first)
            others = accepted_by_pool(machines[1])
            await wait_for(lambda: accepted_by_pool(machines[1]) > others + 2, 30, "others mine")
            assert accepted_by_pool(first) == stalled
            first.clear()
            await wait_for(lambda: accepted_by_pool(first) > stalled + 2, 30, "mining again")
            snap = await poll(first)
            assert snap.pools[0].alive
            assert (snap.pools[0].accepted or 0) >= stalled  # verdicts before the outage kept

            # the real pool goes away (its Stratum server stops): every machine says so
            await pool.server.stop()
            await wait_for(
                lambda: not any(source(m).stats.connected for m in machines), 10, "disconnected"
            )
            for m in machines:
                snap = await poll(m)
                assert not snap.pools[0].alive
                kinds = {f.kind for f in derive_faults(snap)}
                assert {FaultKind.DEAD_POOL, FaultKind.NO_LIVE_POOL} <= kinds


async def test_the_cli_farm_mines_through_the_pool(
    regtest_node: RegtestNode, tmp_path: Path
) -> None:
    address = bcoin_address(MINER_SCRIPTS[6])
    base = f"127.{random.randint(2, 250)}.{random.randint(0, 255)}.1"
    settings = pool_settings(regtest_node.rpc_url, regtest_node.api_key, tmp_path)
    async with running_pool(settings, regtest_node.rpc()) as (pool, recorder):
        process = await asyncio.create_subprocess_exec(
            str(HASHFARM), "fleet", "simulate", "--count", "2", "--base-address", base,
            "--models", "bosminer-s9", "--pool", f"stratum+tcp://127.0.0.1:{pool.stratum_port}",
            "--user", f"{address}.cli", "--real-hashrate", "10",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        assert process.stdout is not None
        try:
            workers = {f"{address}.cli0", f"{address}.cli1"}

            def accepted() -> dict[str, int]:
                return Counter(s.worker for s in recorder.shares if s.accepted)

            await wait_for(lambda: all(accepted()[w] >= 3 for w in workers), 60, "CLI shares")
            snap = await poll_cgminer(
                BACKENDS["bosminer"], base, ["summary", "pools"], model="Antminer S9"
            )
            assert snap.pools[0].user == f"{address}.cli0"
            assert (snap.pools[0].accepted or 0) >= 1
            process.send_signal(signal.SIGINT)
            out = (await asyncio.wait_for(process.stdout.read(), 15)).decode()
            assert await process.wait() == 0
            assert "bosminer-s9: reports 1.35e+12 x the H/s it really hashes" in out
            assert out.strip().endswith("stopped")
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
