"""A simulated farm of 200 machines end to end (API only, no mining): the scanner finds all
200 in their /24, the poller stores every sample, scripted faults raise exactly the alerts
the simulator says they must within one poll, and a hung API and garbage on port 4028 get a
clear error while every other machine's sample arrives in the same round."""

from __future__ import annotations

import collections

from fleet_replay import free_port, free_prefix
from hashfarm.fleet.alerts import AlertEngine, AlertPolicy, AlertService
from hashfarm.fleet.faults import FaultKind
from hashfarm.fleet.poller import Machine, Poller, PollSettings, machine_of
from hashfarm.fleet.scan import ScanSettings, scan
from hashfarm.fleet.simulate import SimulatedFarm, parse_fault_script
from hashfarm.fleet.store import open_fleet_store

COUNT = 200
SCRIPT = """
# machine i runs profile i mod 7: s19pro, s9, luxos, whatsminer, avalon, bosminer, bitaxe
0 7 fan_stop              # S19 Pro
0 15 board_drop           # S9
0 16 overheat             # LuxOS
0 8 pool_down             # S9 (bmminer): dead pool, no live pool, not hashing
0 24 pool_down            # Whatsminer
0 25 board_drop           # Avalon (multi-command)
0 33 fan_stop             # bosminer
0 34 fan_stop             # Bitaxe, over HTTP
0 14 api_hang             # S19 Pro
0 22 api_garbage          # S9
"""


async def test_farm_scan_poll_store_alerts(tmp_path) -> None:
    prefix = free_prefix()
    cg_port, http_port = free_port(f"{prefix}.1"), free_port(f"{prefix}.1")
    store = await open_fleet_store(f"sqlite:///{tmp_path / 'fleet.db'}")
    async with SimulatedFarm(COUNT, base_address=f"{prefix}.1", cgminer_port=cg_port,
                             http_port=http_port) as farm:  # fmt: skip
        result = await scan(f"{prefix}.0/24", ScanSettings(cgminer_port=cg_port,
                                                           http_port=http_port))  # fmt: skip
        # every machine found, each with its own backend and (where replies name it) model
        assert len(result.found) == COUNT
        assert result.errors == ()
        assert result.dead == 254 - COUNT
        sims = {m.address: m for m in farm.machines}
        for found in result.found:
            sim = sims[found.host]
            assert (found.backend, found.port) == (sim.profile.backend, sim.port)
            assert found.model in (sim.profile.model, None)
        unnamed = collections.Counter(f.backend for f in result.found if f.model is None)
        assert unnamed == {"btminer": 29}  # btminer replies do not name the model
        # the operator's inventory supplies what the scan could not read
        machines = [machine_of(f) if f.model else
                    Machine(f.host, f.port, f.backend, sims[f.host].profile.model)
                    for f in result.found]  # fmt: skip

        engine = AlertEngine(AlertPolicy(raise_after=1, clear_after=1))
        alerts = AlertService(engine, recorder=store)
        poller = Poller(machines, PollSettings(timeout_s=1.0), sinks=[store, alerts])
        first = await poller.poll_round()
        assert first.errors == 0
        assert all(s.faults == () for s in first.samples)  # a healthy farm raises nothing
        assert engine.active() == []

        for step in parse_fault_script(SCRIPT):
            farm.apply(step)
        faulty = await poller.poll_round()

        by_id = {m.id: sims[m.host] for m in machines}
        want = {(mid, str(k)) for mid, sim in by_id.items() for k in sim.expected_faults()}
        hang_sim, garbage_sim = farm.machines[14], farm.machines[22]
        errors = {f"{hang_sim.address}:{hang_sim.port}": "unreachable",
                  f"{garbage_sim.address}:{garbage_sim.port}": "bad_reply"}  # fmt: skip
        want |= set(errors.items())
        got = {(a.machine_id, a.kind) for a in engine.active()}
        assert got == want  # exactly the expected alerts, within one poll
        kinds = collections.Counter(kind for _, kind in got)
        assert kinds[FaultKind.DEAD_FAN] == 3
        assert kinds[FaultKind.MISSING_BOARD] == 2
        assert kinds[FaultKind.OVERHEATING] == 1
        assert kinds[FaultKind.NOT_HASHING] == 1
        assert kinds[FaultKind.NO_LIVE_POOL] == 2

        # the hung and the garbage API: a clear error each, nothing else held up
        samples = {s.machine.id: s for s in faulty.samples}
        hung, garbage = samples[next(iter(errors))], samples[list(errors)[1]]
        assert hung.error is not None
        assert "no complete" in hung.error
        assert garbage.error is not None
        assert garbage.error.startswith("bad_reply: ")
        assert "not JSON" in garbage.error
        assert faulty.errors == 2
        others = [s for s in faulty.samples if s.machine.id not in errors]
        assert len(others) == COUNT - 2
        assert all(s.ok for s in others)  # every other machine answered in the same round

        for step in parse_fault_script("0 * clear"):
            farm.apply(step)
        await poller.poll_round()
        assert engine.active() == []  # clear_after=1: everything cleared
        await poller.close()

    rows = await store.call(lambda sql: sql.q("SELECT COUNT(*), SUM(ok) FROM fleet_samples"))
    assert rows == [(3 * COUNT, 3 * COUNT - 2)]
    open_alerts = await store.call(lambda sql: sql.alerts(active_only=True, limit=1000))
    assert open_alerts == []
    history = await store.call(lambda sql: sql.alerts(active_only=False, limit=1000))
    assert {(a.machine_id, a.kind) for a in history} == want
    await store.close()
