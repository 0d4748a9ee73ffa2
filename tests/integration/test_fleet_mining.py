"""The scanner, poller and store over simulated machines that mine for real through the
project's pool on the regtest node (one machine per profile, hashfarm.miner's Stratum client
capped at a few H/s each): the scan finds every one, two poll rounds store what each machine
mined (live hashrate near its nominal, its own worker on the live pool, the pool's accepted
count rising), no alert is raised; then one machine's pool goes away and its alerts are
exactly the simulator's expected faults, the others untouched."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from fleet_replay import free_port, free_prefix
from hashfarm.cli.fleet_sim import stratum_sources
from hashfarm.fleet.alerts import AlertEngine, AlertPolicy, AlertService
from hashfarm.fleet.poller import Machine, Poller, PollSettings
from hashfarm.fleet.scan import ScanSettings, scan
from hashfarm.fleet.simulate import SimFault, SimulatedFarm
from hashfarm.fleet.store import FleetSql, open_fleet_store
from hashfarm.miner.settings import PoolURL
from nodes import RegtestNode, bcoin_address
from unit.pool.harness import MINER_SCRIPTS, pool_settings, running_pool, wait_for

pytestmark = pytest.mark.node

RATE_HS = 20.0  # real hashes per second per machine (on regtest ~every other hash is a share)


async def test_poller_sees_the_farm_mine_through_the_pool(
    regtest_node: RegtestNode, tmp_path: Path
) -> None:
    address = bcoin_address(MINER_SCRIPTS[7])
    prefix = free_prefix()
    cg_port, http_port = free_port(f"{prefix}.1"), free_port(f"{prefix}.1")
    settings = pool_settings(regtest_node.rpc_url, regtest_node.api_key, tmp_path)
    store = await open_fleet_store(f"sqlite:///{tmp_path / 'fleet.db'}")
    async with running_pool(settings, regtest_node.rpc()) as (pool, recorder):
        url = PoolURL("127.0.0.1", pool.stratum_port)
        farm = SimulatedFarm(7, base_address=f"{prefix}.1", cgminer_port=cg_port,
                             http_port=http_port, hash_sources=stratum_sources(url, RATE_HS),
                             pool_url=str(url), pool_user=f"{address}.fleet")  # fmt: skip
        async with farm:
            sims = {f"{m.address}:{m.port}": m for m in farm.machines}

            def accepted(worker: str) -> int:
                return sum(1 for s in recorder.shares if s.worker == worker and s.accepted)

            await wait_for(lambda: all(accepted(m.state.pool_user) >= 3 for m in sims.values()),
                           60, "3 accepted shares per machine")  # fmt: skip
            await wait_for(lambda: all(m.uptime_s >= 86_406 for m in sims.values()), 10,
                           "a 5 s hashrate window")  # fmt: skip

            result = await scan(f"{prefix}.0/28", ScanSettings(cgminer_port=cg_port,
                                                               http_port=http_port))  # fmt: skip
            assert sorted(f.address for f in result.found) == sorted(sims)
            machines = [Machine(f.host, f.port, f.backend, f.model or sims[f.address].profile.model)
                        for f in result.found]  # fmt: skip
            engine = AlertEngine(AlertPolicy(raise_after=1))
            poller = Poller(machines, PollSettings(timeout_s=5),
                            sinks=[store, AlertService(engine, recorder=store)])  # fmt: skip
            first = await poller.poll_round()
            await asyncio.sleep(2)
            second = await poller.poll_round()
            for r in (first, second):
                assert r.errors == 0
            for s in second.samples:
                sim = sims[s.machine.id]
                assert s.snapshot is not None
                live = s.snapshot.hashrate.live_hs or 0
                nominal = sim.profile.nominal_hs
                assert 0.5 * nominal < live < 1.3 * nominal, (s.machine.id, live, nominal)
                if s.snapshot.pools:  # AxeOS names the pool but not the worker's verdicts
                    pool_row = s.snapshot.live_pool
                    assert pool_row is not None
                    assert pool_row.user == sim.state.pool_user
            assert engine.active() == []  # mining healthy: nothing raised

            def pool_accepted(r) -> int:  # type: ignore[no-untyped-def]
                return sum((s.snapshot.live_pool.accepted or 0) for s in r.samples
                           if s.snapshot and s.snapshot.live_pool)  # fmt: skip

            assert pool_accepted(second) > pool_accepted(first) > 0  # the pool's verdicts rise

            stored = await store.call(FleetSql.machines)
            assert len(stored) == 7
            assert all(m["live_hs"] > 0 and m["error"] is None for m in stored)
            bm = next(m for m in stored if m["backend"] == "bmminer")
            assert bm["pools_alive"] == 1
            history = await store.call(lambda sql: sql.history(bm["id"], 0, 0))
            assert len(history) == 2

            down = farm.machines[0]
            down.inject(SimFault.POOL_DOWN)
            await poller.poll_round()
            down_id = f"{down.address}:{down.port}"
            got = {(a.machine_id, a.kind) for a in engine.active()}
            assert got == {(down_id, str(k)) for k in down.expected_faults()}
            await poller.close()
    await store.close()
