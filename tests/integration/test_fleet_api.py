"""The fleet API over real HTTP: replay machines on loopback polled into a real SQLite fleet
store with alerts, then /api/fleet/machines[/{id}], /api/fleet/alerts and the fleet's
Prometheus page read back from an aiohttp server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from fleet_replay import ReplayFarm, capture, s19pro
from hashfarm.api.fleet import make_fleet_app
from hashfarm.api.readmodel import ReadModel
from hashfarm.api.server import make_app
from hashfarm.fleet.alerts import AlertEngine, AlertPolicy, AlertService
from hashfarm.fleet.poller import Machine, Poller, PollSettings
from hashfarm.fleet.store import FleetStore, open_fleet_store
from hashfarm.pool.stats import PoolStats

T0 = 1_700_002_800.0


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


@pytest.fixture
async def polled(tmp_path) -> AsyncIterator[tuple[FleetStore, dict[str, str]]]:
    """Three machines polled twice: healthy, overheating, hung."""
    store = await open_fleet_store(f"sqlite:///{tmp_path / 'fleet.db'}")
    async with ReplayFarm() as farm:
        await farm.add(1, "cgminer", s19pro())
        hot = s19pro() | {"stats": capture("antminer-s19pro-bmminer-stats-overheating.json")}
        await farm.add(2, "cgminer", hot)
        await farm.add(3, "cgminer", {}, behaviour="hang")
        machines = [Machine(f"{farm.prefix}.{i}", farm.cgminer_port, "bmminer") for i in (1, 2, 3)]
        alerts = AlertService(AlertEngine(AlertPolicy(raise_after=2)), recorder=store)
        clock = iter([T0, T0 + 30])
        poller = Poller(machines, PollSettings(timeout_s=0.3), sinks=[store, alerts],
                        clock=lambda: next(clock))  # fmt: skip
        await poller.poll_round()
        await poller.poll_round()
        await poller.close()
    ids = {name: m.id for name, m in zip(("good", "hot", "hung"), machines, strict=True)}
    yield store, ids
    await store.close()


async def test_fleet_routes(polled) -> None:
    store, ids = polled
    runner, base = await serve(make_fleet_app(store, clock=lambda: T0 + 60))
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/api/fleet/machines") as resp:
                assert resp.status == 200
                machines = (await resp.json())["machines"]
            # worst first: the hung one (no reply), then the hot one (faults), then healthy
            assert [m["id"] for m in machines] == [ids["hung"], ids["hot"], ids["good"]]
            hung, hot, good = machines
            assert hung["ok"] is False
            assert "no complete" in hung["error"]
            assert "overheating" in hot["faults"]
            assert good["faults"] == []
            assert good["live_hs"] == 110_566_890_000_000
            assert good["model"] == "Antminer S19 Pro"

            async with http.get(f"{base}/api/fleet/machines/{ids['hot']}") as resp:
                assert resp.status == 200
                doc = await resp.json()
            assert [h["at"] for h in doc["history"]] == [T0, T0 + 30]
            assert [b["slot"] for b in doc["boards"] if b["present"]] == [1, 2, 3]
            kinds = {a["kind"] for a in doc["alerts"]}
            assert "overheating" in kinds  # severe: raised on the first poll

            async with http.get(f"{base}/api/fleet/machines/{ids['good']}?history=10") as resp:
                assert [h["at"] for h in (await resp.json())["history"]] == []  # 60 s ago

            async with http.get(f"{base}/api/fleet/alerts") as resp:
                alerts = (await resp.json())["alerts"]
            assert {(a["machine_id"], a["kind"]) for a in alerts} >= {
                (ids["hot"], "overheating"), (ids["hung"], "unreachable")}  # fmt: skip
            assert all(a["machine_id"] != ids["good"] for a in alerts)
            assert alerts[0]["severity"] == "critical"

            for path, status, said in [
                ("/api/fleet/machines/10.9.9.9:4028", 404, "no machine '10.9.9.9:4028'"),
                (f"/api/fleet/machines/{ids['good']}?resolution=60", 400, "resolution must be"),
                (f"/api/fleet/machines/{ids['good']}?history=²", 400, "history must be"),
                ("/api/fleet/machines?sort=x", 400, "unknown query parameter 'sort'"),
                ("/api/fleet/alerts?limit=0", 400, "limit must be an integer from 1"),
            ]:
                async with http.get(base + path) as resp:
                    assert resp.status == status, path
                    assert said in (await resp.json())["error"]

            async with http.get(f"{base}/metrics") as resp:
                assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                text = await resp.text()
    finally:
        await runner.cleanup()
    good_id, hot_id = ids["good"], ids["hot"]
    assert (f'hashfarm_fleet_machine_up{{machine="{good_id}",backend="bmminer",'
            'model="Antminer S19 Pro"} 1') in text  # fmt: skip
    assert f'hashfarm_fleet_machine_hashrate_hps{{machine="{good_id}"}} 110566890000000' in text
    assert f'hashfarm_fleet_board_chip_temp_max_celsius{{machine="{hot_id}",board="3"}} 97' in text
    assert f'hashfarm_fleet_board_present{{machine="{good_id}",board="4"}} 0' in text
    assert 'hashfarm_fleet_alerts_active{severity="critical"}' in text
    assert f'hashfarm_fleet_machine_hashrate_hps{{machine="{ids["hung"]}"}}' not in text


async def test_pool_api_serves_the_fleet_routes_when_given_a_store(polled) -> None:
    store, _ids = polled
    model = ReadModel(None, None, PoolStats(), None)  # type: ignore[arg-type]  # not read here
    runner, base = await serve(make_app(model, fleet_store=store))
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/api/fleet/machines") as resp:
                assert resp.status == 200
                assert len((await resp.json())["machines"]) == 3
            async with http.get(f"{base}/metrics/fleet") as resp:
                assert "hashfarm_fleet_machine_up" in await resp.text()
    finally:
        await runner.cleanup()


async def test_a_store_that_cannot_be_read_is_a_503(tmp_path) -> None:
    store = await open_fleet_store(f"sqlite:///{tmp_path / 'gone.db'}")
    await store.call(lambda sql: sql.conn.close())  # the database goes away under the API
    runner, base = await serve(make_fleet_app(store))
    try:
        async with aiohttp.ClientSession() as http:
            for path in ("/api/fleet/machines", "/api/fleet/alerts", "/metrics"):
                async with http.get(base + path) as resp:
                    assert resp.status == 503, path
                    assert "cannot be read right now" in (await resp.json())["error"]
    finally:
        await runner.cleanup()
        store._thread.shutdown()
