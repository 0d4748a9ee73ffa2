"""The pool pages of a pool that has seen nothing yet, and a browser turned away from the live
stream: real app (`api.server.make_app`) on a real socket over real statistics and a real
SQLite ledger, in Debian's chromium (skipped with the reason when it is missing)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from browser import WebPage, get_json
from hashfarm.api import web as dashboard
from hashfarm.api.readmodel import PoolInfo, ReadModel
from hashfarm.api.server import make_app
from hashfarm.pool.bans import BanList
from hashfarm.pool.settings import BanSettings
from hashfarm.pool.stats import PoolStats
from hashfarm.pool.storage.sqlite import SQLiteLedger


class IdlePool:
    """A pool before its first template: no session, no job (what `Pool` shows then)."""

    def __init__(self) -> None:
        self.bans = BanList(BanSettings())

    def sessions(self) -> list[Any]:
        return []

    def current_job(self) -> None:
        return None


@pytest.fixture
async def idle(tmp_path: Path) -> AsyncIterator[tuple[str, web.Application]]:
    ledger = SQLiteLedger(tmp_path / "pool.sqlite3")
    await ledger.start()
    model = ReadModel(PoolInfo("regtest", "solo", 3333, time.time()), IdlePool(), PoolStats(),
                      ledger)  # fmt: skip
    app = make_app(model)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", app
    finally:
        await runner.cleanup()
        await ledger.close()


async def test_an_idle_pool_says_plainly_what_is_not_there_yet(
    idle: tuple[str, web.Application], web_page: WebPage
) -> None:
    base, _ = idle
    page = await web_page.open(base + "/")
    assert "No block found yet." in await web_page.text("#pool-blocks")
    assert "No worker has sent a share yet." in await web_page.text("#pool-workers")
    assert await page.locator("#stat-height").count() == 0  # no template: no tip shown
    assert (await get_json(base + "/api/pool"))["shares"]["accepted"] == 0
    assert await web_page.text("#stat-accepted [data-value]") == "0"
    await page.wait_for_selector("#hashrate-chart[data-loaded]")
    shown = int(await page.get_attribute("#hashrate-chart", "data-points"))
    if shown < 2:  # the feed samples every 10 s: a fresh pool has one point or none
        assert "history starts when the pool starts" in await web_page.text("#hashrate-chart")
    points = (await get_json(base + "/api/pool/hashrate?range=1h"))["points"]
    assert {h for _, h in points} <= {0.0}
    assert await web_page.axe() == []
    await web_page.screenshot("pool-idle")
    page = await web_page.open(base + "/blocks")
    assert "No block found yet." in await web_page.text("main")
    page = await web_page.open(base + "/miner/bcrt1qnobody")
    assert "no job from the node yet" in await web_page.text("#odds-h + *")
    assert await web_page.axe() == []
    await web_page.screenshot("miner-idle")


async def test_a_browser_turned_away_by_the_live_bound_says_so(
    idle: tuple[str, web.Application], web_page: WebPage
) -> None:
    base, app = idle
    app[dashboard.SITE_KEY].hub.max_clients = 0  # full: every stream is refused
    web_page.allow(r"status of 503|HTTP 503|EventSource")
    page = await web_page.open(base + "/", wait_live=False)
    await page.wait_for_selector('#live-status[data-state="off"]', timeout=10_000)
    assert "server busy" in await web_page.text("#live-status")
    assert app[dashboard.SITE_KEY].hub.counters.refused >= 1
    assert await web_page.text("#stat-accepted [data-value]") == "0"  # the page still works


async def test_an_alert_appears_on_an_open_page_without_a_reload(
    idle: tuple[str, web.Application], web_page: WebPage
) -> None:
    base, app = idle
    page = await web_page.open(base + "/blocks")
    await page.evaluate("window.sameDocument = true")  # gone if the page reloaded
    app[dashboard.SITE_KEY].hub.publish(
        "alert", {"level": "warning", "message": "machine 10.0.0.7 stopped hashing"}
    )
    item = page.locator('#live-log li[data-event="alert"]')
    await item.wait_for(timeout=10_000)
    assert "Alert: machine 10.0.0.7 stopped hashing" in await item.inner_text()
    assert await page.evaluate("window.sameDocument === true")  # no reload
    await web_page.screenshot("alert")
