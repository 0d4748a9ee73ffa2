"""A farm of 200 simulated machines (every profile) that mine for real through the project's
pool on the regtest node (hashfarm.miner's Stratum client, 2 H/s each): the scanner finds all
200, two poll rounds store every machine's sample with a live pool and its hashrate, each
machine's own worker has shares the pool accepted and that count rises between the rounds;
then scripted faults (board drop, fan stop, pool down, hung API, garbage on 4028) on a few
machines raise exactly the expected alerts in the next poll while every other machine's
sample arrives in that same round."""

from __future__ import annotations

import asyncio
import collections
import time
from pathlib import Path

import pytest

from fleet_replay import free_port, free_prefix
from hashfarm.cli.fleet_sim import stratum_sources
from hashfarm.fleet.alerts import AlertEngine, AlertPolicy, AlertService
from hashfarm.fleet.faults import FaultKind
from hashfarm.fleet.poller import Machine, Poller, PollSettings
from hashfarm.fleet.scan import ScanSettings, scan
from hashfarm.fleet.simulate import SimulatedFarm, parse_fault_script
from hashfarm.fleet.store import FleetSql, open_fleet_store
from hashfarm.miner.settings import PoolURL
from nodes import RegtestNode, bcoin_address
from unit.pool.harness import MINER_SCRIPTS, pool_settings, running_pool, wait_for

pytestmark = [pytest.mark.node, pytest.mark.slow]

COUNT = 200
RATE_HS = 2.0  # real H/s per machine: under 2 H/s the 5 s window holds too few hashes
WINDOW_S = 6  # the miners' 5 s hashrate window, plus a second
SCRIPT = """
# machine i runs profile i mod 7: s19pro, s9, luxos, whatsminer, avalon, bosminer, bitaxe
0 15 board_drop           # S9
0 25 board_drop           # Avalon (multi-command)
0 7 fan_stop              # S19 Pro
0 33 fan_stop             # bosminer
0 34 fan_stop             # Bitaxe, over HTTP
0 8 pool_down             # S9 (bmminer): its Stratum connection closes
0 24 pool_down            # Whatsminer
0 27 pool_down            # Bitaxe: no pool health, its one board at 0
0 14 api_hang             # S19 Pro
0 22 api_garbage          # S9
"""


# This module's own node (conftest's module_node): 200 machines mine many blocks, which would
# make the session node taller for every test after this one (regtest halves the subsidy
# every 150 blocks).
@pytest.fixture(scope="module")
def regtest_node(module_node: RegtestNode) -> RegtestNode:
    return module_node


async def test_farm_of_200_mines_through_the_pool(
    regtest_node: RegtestNode, tmp_path: Path
) -> None:
    begin_cpu, begin = time.process_time(), time.monotonic()
    address = bcoin_address(MINER_SCRIPTS[6])
    prefix = free_prefix()
    cg_port, http_port = free_port(f"{prefix}.1"), free_port(f"{prefix}.1")
    settings = pool_settings(regtest_node.rpc_url, regtest_node.api_key, tmp_path)
    store = await open_fleet_store(f"sqlite:///{tmp_path / 'fleet.db'}")
    async with running_pool(settings, regtest_node.rpc()) as (pool, recorder):
        url = PoolURL("127.0.0.1", pool.stratum_port)
        farm = SimulatedFarm(COUNT, base_address=f"{prefix}.1", cgminer_port=cg_port,
                             http_port=http_port, hash_sources=stratum_sources(url, RATE_HS),
                             pool_url=str(url), pool_user=f"{address}.farm")  # fmt: skip
        async with farm:
            sims = {f"{m.address}:{m.port}": m for m in farm.machines}
            assert len({m.state.pool_user for m in farm.machines}) == COUNT  # a worker each

            def accepted_by_worker() -> collections.Counter[str]:
                return collections.Counter(s.worker for s in recorder.shares if s.accepted)

            def all_accepted(n: int) -> bool:
                got = accepted_by_worker()
                return all(got[m.state.pool_user] >= n for m in farm.machines)

            await wait_for(lambda: all_accepted(2), 60, "2 accepted shares per machine")
            await wait_for(lambda: all(m.uptime_s >= 86_400 + WINDOW_S for m in sims.values()),
                           15, "a full 5 s hashrate window")  # fmt: skip

            result = await scan(f"{prefix}.0/24", ScanSettings(cgminer_port=cg_port,
                                                               http_port=http_port))  # fmt: skip
            assert len(result.found) == COUNT
            assert sorted(f.address for f in result.found) == sorted(sims)
            assert result.errors == ()
            machines = [Machine(f.host, f.port, f.backend, f.model or sims[f.address].profile.model)
                        for f in result.found]  # fmt: skip
            engine = AlertEngine(AlertPolicy(raise_after=1))
            poller = Poller(machines, PollSettings(timeout_s=3.0),
                            sinks=[store, AlertService(engine, recorder=store)])  # fmt: skip

            first = await poller.poll_round()
            pool_first = accepted_by_worker()
            assert first.errors == 0
            on_first = {s.machine.id: s.snapshot.live_pool.accepted for s in first.samples
                        if s.snapshot and s.snapshot.live_pool}  # fmt: skip
            assert len(on_first) == COUNT  # every machine shows its live pool
            # at 2 H/s a machine gets ~1 share/s: wait (bounded) until each has one more than
            # both its first poll and the pool's count then (the pool records a share before
            # the machine reads its `true`, so it may already be ahead of the machine's count)
            await wait_for(lambda: all(m.reading().pool.accepted
                                       > max(on_first[i] or 0, pool_first[m.state.pool_user])
                                       for i, m in sims.items()),
                           30, "one more accepted share per machine")  # fmt: skip
            second = await poller.poll_round()
            pool_second = accepted_by_worker()
            for r in (first, second):
                assert r.errors == 0
                assert len(r.samples) == COUNT
                for s in r.samples:
                    sim = sims[s.machine.id]
                    assert s.snapshot is not None
                    live = s.snapshot.hashrate.live_hs or 0
                    nominal = sim.profile.nominal_hs
                    assert 0.5 * nominal < live < 1.3 * nominal, (s.machine.id, live, nominal)
                    pool_row = s.snapshot.live_pool
                    assert pool_row is not None
                    assert pool_row.user == sim.state.pool_user  # its own worker
                    assert pool_row.url == str(url)
            for s in second.samples:  # the machine's own count of the pool's verdicts rises
                after = s.snapshot.live_pool.accepted if s.snapshot and s.snapshot.live_pool else 0
                assert 0 < (on_first[s.machine.id] or 0) < (after or 0), s.machine.id
            for m in farm.machines:  # and the pool's own record of each machine's worker
                user = m.state.pool_user
                assert 0 < pool_first[user] < pool_second[user], (user, pool_first[user])
            assert engine.active() == []  # a healthy mining farm raises nothing

            stored = await store.call(FleetSql.machines)
            assert len(stored) == COUNT
            assert all(m["live_hs"] > 0 and m["error"] is None for m in stored)
            assert all(m["pools_alive"] == 1 for m in stored if m["backend"] != "axeos")

            steps = parse_fault_script(SCRIPT)
            for step in steps:
                farm.apply(step)
            # a dropped board shows in the machine's 5 s hashrate once that window has passed
            await asyncio.sleep(WINDOW_S)
            faulty = await poller.poll_round()

            faulted = {farm.machines[int(s.target)] for s in steps}
            want = {(f"{m.address}:{m.port}", str(k)) for m in faulted
                    for k in m.expected_faults()}  # fmt: skip
            hang_sim, garbage_sim = farm.machines[14], farm.machines[22]
            hang_id = f"{hang_sim.address}:{hang_sim.port}"
            garbage_id = f"{garbage_sim.address}:{garbage_sim.port}"
            want |= {(hang_id, "unreachable"), (garbage_id, "bad_reply")}
            got = {(a.machine_id, a.kind) for a in engine.active()}
            assert got == want  # exactly the expected alerts, within one poll
            kinds = collections.Counter(kind for _, kind in got)
            assert kinds[FaultKind.MISSING_BOARD] == 2
            assert kinds[FaultKind.LOW_HASHRATE] == 3  # 2 dropped boards, the Whatsminer
            assert kinds[FaultKind.DEAD_FAN] == 3
            assert kinds[FaultKind.NO_LIVE_POOL] == 2
            assert kinds[FaultKind.NOT_HASHING] == 1
            assert kinds[FaultKind.DEAD_BOARD] == 2  # the Whatsminer's and the Bitaxe's

            samples = {s.machine.id: s for s in faulty.samples}
            hung, garbage = samples[hang_id].error or "", samples[garbage_id].error or ""
            assert "no complete" in hung, hung  # a clear error each
            assert garbage.startswith("bad_reply: "), garbage
            assert "not JSON" in garbage, garbage
            assert faulty.errors == 2
            others = [s for s in faulty.samples if s.machine.id not in (hang_id, garbage_id)]
            assert len(others) == COUNT - 2
            assert all(s.ok for s in others)  # every other machine answered in the same round
            healthy = [s for s in others if sims[s.machine.id] not in faulted]
            assert all(s.faults == () for s in healthy)
            assert all((s.snapshot.hashrate.live_hs or 0) > 0 for s in healthy if s.snapshot)
            await poller.close()
    rows = await store.call(lambda sql: sql.q("SELECT COUNT(*), SUM(ok) FROM fleet_samples"))
    assert rows == [(3 * COUNT, 3 * COUNT - 2)]
    await store.close()
    print(f"farm of {COUNT}: {time.monotonic() - begin:.1f} s wall, "
          f"{time.process_time() - begin_cpu:.1f} s CPU in the test process")  # fmt: skip
