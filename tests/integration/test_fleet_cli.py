"""`hashfarm fleet scan | watch | status` against a simulated farm of 14 machines served from a
thread on loopback, with a real webhook receiver: the scan fills the store's inventory,
`watch` polls it twice (the default hysteresis raises a dead fan and a garbage API on the
second poll) and posts the alerts, `status` shows the machines worst first."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from click.testing import CliRunner

from fleet_replay import free_port, free_prefix
from hashfarm.cli.main import cli
from hashfarm.fleet.simulate import SimulatedFarm

COUNT = 14


class FarmThread:
    """The farm and a webhook receiver on their own event loop in a thread."""

    def __init__(self, prefix: str, cg_port: int, http_port: int) -> None:
        self.farm = SimulatedFarm(COUNT, base_address=f"{prefix}.1", cgminer_port=cg_port,
                                  http_port=http_port)  # fmt: skip
        self.posts: list[dict[str, Any]] = []
        self.fetched: list[str] = []
        self.hook_port = free_port("127.0.0.1")
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self.main(),))

    async def main(self) -> None:
        async def hook(request: web.Request) -> web.Response:
            self.posts.append(await request.json())
            return web.Response(status=204)

        app = web.Application()
        app.router.add_post("/hook", hook)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.hook_port).start()
        self.stop = asyncio.Event()
        async with self.farm:
            self.ready.set()
            await self.stop.wait()
        await runner.cleanup()

    async def fetch(self, url: str) -> None:
        """GET `url` until it answers 200 (the CLI's API comes up while `watch` runs)."""
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(url) as resp:
                        if resp.status == 200:
                            self.fetched.append(await resp.text())
                            return
                await asyncio.sleep(0.05)

    def call(self, fn: Any, *args: Any) -> None:
        done = threading.Event()
        self.loop.call_soon_threadsafe(lambda: (fn(*args), done.set()))
        assert done.wait(10)


@pytest.fixture
def farm() -> Iterator[tuple[FarmThread, str, int, int]]:
    prefix = free_prefix()
    cg_port, http_port = free_port(f"{prefix}.1"), free_port(f"{prefix}.1")
    thread = FarmThread(prefix, cg_port, http_port)
    thread.thread.start()
    assert thread.ready.wait(30)
    yield thread, prefix, cg_port, http_port
    thread.loop.call_soon_threadsafe(thread.stop.set)
    thread.thread.join(30)


def run(*args: str) -> str:
    # a wide terminal, so the tables' cells are not cut
    result = CliRunner(env={"COLUMNS": "250"}).invoke(cli, ["fleet", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_scan_watch_status(farm, tmp_path) -> None:
    thread, prefix, cg_port, http_port = farm
    store = f"sqlite:///{tmp_path / 'fleet.db'}"
    ports = ["--port", str(cg_port), "--http-port", str(http_port)]
    found = json.loads(run("scan", f"{prefix}.0/28", *ports, "--store", store, "--json"))
    assert len(found["found"]) == COUNT
    assert found["dead"] == 0
    assert {f["backend"] for f in found["found"]} == {
        "bmminer", "luxos", "btminer", "avalon", "bosminer", "axeos"}  # fmt: skip
    table = run("scan", f"{prefix}.0/29", *ports)  # the table form, first 6 addresses
    assert "Antminer S19 Pro" in table
    assert "6 addresses in" in table

    fan, garbage = thread.farm.machines[0], thread.farm.machines[7]
    thread.call(fan.inject, "fan_stop")
    thread.call(garbage.inject, "api_garbage")
    hook = f"http://127.0.0.1:{thread.hook_port}/hook"
    api_port = free_port("127.0.0.1")
    metrics = f"http://127.0.0.1:{api_port}/metrics"
    thread.loop.call_soon_threadsafe(lambda: thread.loop.create_task(thread.fetch(metrics)))
    config = tmp_path / "fleet.toml"
    config.write_text(f'store = "{store}"\n[poll]\ninterval_s = 1\ntimeout_s = 1\n')
    shown = run("watch", "--config", str(config), "--rounds", "2", "--webhook", hook,
                "--api-port", str(api_port))  # fmt: skip
    [page] = thread.fetched  # the API served the fleet's metrics while watch ran
    assert "hashfarm_fleet_machine_up{" in page
    assert "dead_fan" in shown
    assert f"{garbage.address}:{garbage.port}" in shown
    posted = {(p["alert"]["machine_id"], p["alert"]["kind"]) for p in thread.posts}
    assert posted == {(f"{fan.address}:{fan.port}", "dead_fan"),
                      (f"{garbage.address}:{garbage.port}", "bad_reply")}  # fmt: skip

    # a second run takes the open alerts back: no second page while they stay wrong
    run("watch", "--store", store, "--interval", "1", "--timeout", "1", "--rounds", "1",
        "--webhook", hook)  # fmt: skip
    assert len(thread.posts) == 2

    status = json.loads(run("status", "--store", store, "--json"))
    ids = [m["id"] for m in status["machines"]]
    assert ids[:2] == [f"{garbage.address}:{garbage.port}", f"{fan.address}:{fan.port}"]
    assert "not JSON" in status["machines"][0]["error"]
    assert status["machines"][1]["faults"] == "dead_fan"
    assert sorted(a["kind"] for a in status["alerts"]) == ["bad_reply", "dead_fan"]
    text = run("status", "--store", store)
    assert "14 machines" in text
    assert "dead_fan" in text

    thread.call(fan.clear)  # fixed: the alert clears and says so once
    run("watch", "--store", store, "--interval", "1", "--timeout", "1", "--rounds", "1",
        "--clear-after", "1", "--webhook", hook)  # fmt: skip
    assert [(p["event"], p["alert"]["kind"]) for p in thread.posts[2:]] == [
        ("cleared", "dead_fan")]  # fmt: skip


def test_errors_are_one_line(tmp_path) -> None:
    result = CliRunner().invoke(cli, ["fleet", "status", "--store", f"sqlite:///{tmp_path}/x.db"])
    assert result.exit_code == 1
    assert "no fleet store at" in result.output
    assert not (tmp_path / "x.db").exists()  # status never creates an empty store
    result = CliRunner().invoke(cli, ["fleet", "scan", "10.0.0.0/33"])
    assert result.exit_code == 1
    assert "is not an address range" in result.output
    result = CliRunner().invoke(cli, ["fleet", "status", "--store", "mysql://x"])
    assert result.exit_code == 1
    assert "sqlite:///PATH or postgresql" in result.output
    result = CliRunner().invoke(cli, ["fleet", "watch", "--interval", "5", "--timeout", "9"])
    assert result.exit_code == 1
    assert "fleet.poll.timeout_s: 9.0 is out of range (at most interval_s, 5)" in result.output
